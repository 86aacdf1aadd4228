"""Evaluating a sentence model on manifest rows: retrieval, alignment, decisions, translation."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from signlab.atomic import write_json
from signlab.data.dataset import pad_clips
from signlab.data.features import has_text, scan_split
from signlab.data.manifest import Sample
from signlab.data.sentence import even_odd, sentence_key, variations
from signlab.decoding.beam import beam_search
from signlab.errors import SignlabError
from signlab.inference.bank import EncodedClips, encode_clips
from signlab.inference.decision import Prediction
from signlab.inference.engine import InferenceEngine, SentenceBundle
from signlab.metrics import alignment_metrics, bleu, retrieval_metrics, word_error_rate
from signlab.vocab import tokenize_words


@torch.no_grad()
def translate_encoded(bundle: SentenceBundle, enc: EncodedClips, batch_size: int = 32) -> list[str]:
    """Text for each clip of ``enc`` (encoded with ``keep_context``): batched, cached beam search
    from the encoder's context with the bundle's decoding options."""
    if enc.contexts is None:
        raise SignlabError("this encoder.onnx gives no context for the text decoder: run `signlab export RUN` again")
    model, opts, out = bundle.model, bundle.config.decoding, []
    device = next(model.parameters()).device
    for start in range(0, len(enc.contexts), batch_size):
        batch = enc.contexts[start : start + batch_size]
        context, lengths = pad_clips(batch, max(len(c) for c in batch))
        context, lengths = torch.from_numpy(context).to(device), torch.from_numpy(lengths).to(device)
        padding_mask = torch.arange(context.shape[1], device=device)[None] >= lengths[:, None]
        text_limit = torch.full_like(lengths, opts.max_len)  # words are not tied to frames, unlike glosses
        nbest = beam_search(model.decoder, context, padding_mask, text_limit, opts.beam_size, opts.max_len,
                            opts.length_penalty, bonus=opts.length_bonus)
        out += [" ".join(bundle.vocab.decode(h[0].tokens)) if h else "" for h in nbest]
    return out


def normalised(text: str) -> str:
    return " ".join(tokenize_words(text))


def decision_metrics(preds: Sequence[Prediction], truths: Sequence[str], known: np.ndarray) -> dict[str, Any]:
    """What the engine's decisions come to: on clips of phrase-book sentences (``known``), top-1 and
    how many are accepted; over every accepted answer, how many are right (an accepted clip of an
    unknown sentence is wrong); of the unknown clips, how many are refused. None where there is
    nothing to count (JSON has no NaN)."""
    rates = decision_rates(np.array([p.sentence == t for p, t in zip(preds, truths)]), np.array([p.accepted for p in preds]),
                           known)
    return {**rates, "reasons": dict(Counter(p.reason for p in preds))}


def decision_rates(right: np.ndarray, accepted: np.ndarray, known: np.ndarray) -> dict[str, Any]:
    """:func:`decision_metrics` of any decider, from per-clip booleans: its top answer is right,
    it accepted, the clip's sentence is in the phrase book."""

    def mean(x: np.ndarray) -> float | None:
        return float(x.mean()) if len(x) else None

    return {"engine_top1": mean(right[known]), "accept_rate": mean(accepted[known]),
            "accepted_accuracy": mean(right[accepted]), "known_clips": int(known.sum()),
            "unknown_clips": int((~known).sum()), "unknown_rejected": mean(~accepted[~known])}


def evaluate_sentence_samples(bundle: SentenceBundle, engine: InferenceEngine, samples: Sequence[Sample], split: str,
                              output: str | Path | None = None) -> dict[str, Any]:
    """Retrieval (clips of phrase-book sentences), alignment, decisions (:func:`decision_metrics`:
    clips of sentences the bank does not hold must be refused) and translation of every clip."""
    prep, cfg = bundle.prep, bundle.config
    result = scan_split(samples, prep, split, check=has_text)
    clips = result.all_features(prep)
    truths = [sentence_key(s) for s in result.samples]
    phrase_book = set(engine.bank.sentences.tolist())
    known = np.array([t in phrase_book for t in truths])  # the others are sentences the engine must refuse
    keys = {k: i for i, k in enumerate(sorted(set(truths) | phrase_book))}
    enc = engine.encode(clips, keep_context=True)
    retrieval = retrieval_metrics(enc.embeddings[known], np.array([keys[t] for t in truths])[known], engine.bank.embeddings,
                                  np.array([keys[k] for k in engine.bank.sentences.tolist()])) if known.any() else {}
    halves = [even_odd(c) for c in clips]
    a, b = (encode_clips(engine.encoder, [h[i] for h in halves], cfg.data.seq_len, 2, engine.subsampling).embeddings
            for i in (0, 1))
    alignment = alignment_metrics(a, b)
    preds = engine.decide_encoded(clips, enc)
    decisions = decision_metrics(preds, truths, known)
    hyps = translate_encoded(bundle, enc)
    refs = [normalised(s.text) for s in result.samples]
    accept_any = [any(normalised(v) == h for v in variations(s)) for s, h in zip(result.samples, hyps)]
    translation = {"wer": word_error_rate(refs, hyps).wer, "bleu": bleu(refs, hyps), "exact": float(np.mean(accept_any))}
    results = {"split": split, "n": len(result.samples), "excluded": len(result.excluded), "retrieval": retrieval,
               "alignment": alignment, "decisions": decisions, "translation": translation,
               "decoding": cfg.decoding.model_dump()}
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.with_name(output.stem + ".predictions.jsonl").open("w") as f:
            for s, p, h in zip(result.samples, preds, hyps):
                f.write(json.dumps({"id": s.id, "sentence": sentence_key(s), "text": s.text, "retrieved": p.sentence,
                                    "accepted": p.accepted, "reason": p.reason, "confidence": p.confidence,
                                    "translation": h}) + "\n")
        write_json(output, results)
    return results
