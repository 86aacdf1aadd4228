"""Evaluating a sentence model on manifest rows: retrieval, alignment, decisions, translation."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from signlab import pose
from signlab.atomic import write_json
from signlab.data.dataset import pad_clips
from signlab.data.features import scan_split
from signlab.data.manifest import Sample
from signlab.data.sentence import even_odd, has_text, sentence_key, variations
from signlab.decoding.beam import beam_search
from signlab.inference.bank import encode_clips
from signlab.inference.engine import InferenceEngine, SentenceBundle
from signlab.metrics import alignment_metrics, bleu, retrieval_metrics, word_error_rate
from signlab.vocab import tokenize_words


@torch.no_grad()
def translate_clips(bundle: SentenceBundle, clips: Sequence[np.ndarray], batch_size: int = 32) -> list[str]:
    """Text for each preprocessed clip: batched, cached beam search with the bundle's decoding options."""
    model, opts, out = bundle.model, bundle.config.decoding, []
    device = next(model.parameters()).device
    for start in range(0, len(clips), batch_size):
        x, lengths = pad_clips(clips[start : start + batch_size], bundle.config.data.seq_len)
        enc = model.encode(torch.from_numpy(x).to(device), torch.from_numpy(lengths).to(device))
        text_limit = torch.full_like(enc.lengths, opts.max_len)  # words are not tied to frames, unlike glosses
        nbest = beam_search(model.decoder, enc.context, enc.padding_mask, text_limit, opts.beam_size, opts.max_len,
                            opts.length_penalty, bonus=opts.length_bonus)
        out += [" ".join(bundle.vocab.decode(h[0].tokens)) if h else "" for h in nbest]
    return out


def normalised(text: str) -> str:
    return " ".join(tokenize_words(text))


def evaluate_sentence_samples(bundle: SentenceBundle, engine: InferenceEngine, samples: Sequence[Sample], split: str,
                              output: str | Path | None = None) -> dict[str, Any]:
    prep, cfg = bundle.prep, bundle.config
    result = scan_split(samples, prep, split, check=has_text)
    clips = result.all_features(prep)
    truths = [sentence_key(s) for s in result.samples]
    keys = {k: i for i, k in enumerate(sorted(set(truths) | set(bundle.bank.sentences.tolist())))}
    emb, seqs = engine.encode(clips)
    retrieval = retrieval_metrics(emb, np.array([keys[t] for t in truths]), bundle.bank.embeddings,
                                  np.array([keys[k] for k in bundle.bank.sentences.tolist()]))
    halves = [even_odd(c) for c in clips]
    a, _ = encode_clips(engine.encoder, [h[0] for h in halves], cfg.data.seq_len, 2, engine.subsampling)
    b, _ = encode_clips(engine.encoder, [h[1] for h in halves], cfg.data.seq_len, 2, engine.subsampling)
    alignment = alignment_metrics(a, b)
    preds = [engine.decide(engine.rank(e, q), e, pose.mean_motion(c, prep.is_pose)) for c, e, q in zip(clips, emb, seqs)]
    accepted = [p.sentence == t for p, t in zip(preds, truths) if p.accepted]
    decisions = {
        "engine_top1": float(np.mean([p.sentence == t for p, t in zip(preds, truths)])),
        "accept_rate": len(accepted) / len(preds),
        "accepted_accuracy": float(np.mean(accepted)) if accepted else None,  # JSON has no NaN
        "reasons": dict(Counter(p.reason for p in preds)),
    }
    hyps = translate_clips(bundle, clips)
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
