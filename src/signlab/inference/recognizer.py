"""Run a trained gloss recogniser: on feature arrays, or over a manifest split with WER."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from signlab.atomic import write_json, write_text
from signlab.config import CTC_METHODS, DecodingConfig, decoding_options
from signlab.data.dataset import eval_loader, pad_clips
from signlab.data.features import (
    Preprocessor,
    ScanResult,
    check_features,
    scan_split,
)
from signlab.data.manifest import Sample, read_manifests
from signlab.decoding import decode_batch
from signlab.decoding.ctc import ctc_label_scores, ctc_segments
from signlab.errors import SignlabError
from signlab.inference.bundle import Bundle, load_bundle
from signlab.metrics import (
    WERResult,
    blank_counts,
    clean_phoenix_2014t,
    topk_accuracy,
    word_error_rate,
)


@dataclass
class Transcript:
    glosses: list[str]  # from the configured decoder
    ctc_segments: list[tuple[str, int, int]]  # (gloss, first input row, last input row) of the greedy CTC output


class Recognizer:
    """Raw (T, D) features in, glosses out, with the bundle's own preprocessing.

    ``decoding`` overrides the bundle's decoding settings: ``method``, ``beam_size``,
    ``ctc_weight``, ``length_penalty``, ``length_bonus``, ``max_len``.
    """

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu", **decoding: Any):
        self.bundle, self.device = bundle, torch.device(device)
        self.config, self.vocab = bundle.config, bundle.vocab
        model = bundle.model
        self.model = model.to(self.device).eval() if isinstance(model, torch.nn.Module) else model  # else ONNX, on CPU
        self.prep = Preprocessor.for_config(self.config)
        self.decoding = decoding_options(self.config, **decoding)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu", backend: str = "torch",
             **decoding: Any) -> Recognizer:
        """The recogniser of a bundle; ``backend="onnx"`` runs its exported graphs (``signlab export``)."""
        return cls(load_bundle(path, device, backend), device, **decoding)

    @torch.no_grad()
    def recognize(self, features: np.ndarray) -> list[str]:
        """Glosses for one clip of raw features (as the extractor wrote them)."""
        return self.transcribe(features).glosses

    def transcribe(self, features: np.ndarray, where: str = "input") -> Transcript:
        """Glosses, and where the CTC head placed each of its own (greedy) glosses in the input.

        Features that are not (T, D) finite numbers of the model's dimension are a
        :class:`~signlab.data.features.FeatureError` naming ``where``, as in the CLI.
        """
        return self.transcribe_prepared([self.prepare(features, where)])[0]

    def prepare(self, features: np.ndarray, where: str = "input") -> np.ndarray:
        """A raw clip checked (:class:`~signlab.data.features.FeatureError` naming ``where``) and
        preprocessed as the bundle's feature kind says."""
        return self.prep(check_features(features, where, self.prep.dim), where)

    @torch.no_grad()
    def transcribe_prepared(self, clips: Sequence[np.ndarray]) -> list[Transcript]:
        """:meth:`transcribe` of prepared clips in one padded batch (one encoder pass, batched decoding)."""
        x, lengths = pad_clips(clips, self.config.data.max_frames)
        hyps, out = decode_batch(self.model, torch.from_numpy(x).to(self.device), torch.from_numpy(lengths).to(self.device),
                                 self.decoding)
        transcripts = []
        for i, (clip, n) in enumerate(zip(clips, lengths.tolist())):
            factor = len(clip) / n * self.model.subsampling  # input rows per encoder frame
            segments = [(self.vocab.tokens[c], int(s * factor), min(len(clip), int(np.ceil((e + 1) * factor))) - 1)
                        for c, s, e in ctc_segments(out.ctc_logits[i], int(out.lengths[i]))]
            transcripts.append(Transcript(self.vocab.decode(hyps[i]), segments))
        return transcripts

    @torch.no_grad()
    def decode_scanned(self, result: ScanResult, batch_size: int = 32,
                       decodings: Sequence[DecodingConfig] | None = None, top_k: int = 0) -> ScannedDecoding:
        """Hypotheses by sample id for a scanned split with each of ``decodings`` (default: this
        recognizer's own); the encoder runs once per batch and every decoder reuses its output.
        ``top_k``: also each clip's ``top_k`` likeliest single glosses (isolated signs)."""
        decodings = list(decodings or [self.decoding])
        loader = eval_loader(result, self.prep, self.vocab, self.config.data.max_frames, batch_size)
        done = ScannedDecoding([{} for _ in decodings], [0.0] * len(decodings))
        for batch in loader:
            x, n = batch["features"].to(self.device), batch["lengths"].to(self.device)
            started = time.perf_counter()
            enc = self.model.encode(x, n)
            done.encode_seconds += time.perf_counter() - started
            for i, opts in enumerate(decodings):
                started = time.perf_counter()
                ids, out = decode_batch(self.model, x, n, opts, enc=enc)
                done.seconds[i] += time.perf_counter() - started
                done.hyps[i].update({sid: " ".join(self.vocab.decode(h)) for sid, h in zip(batch["ids"], ids)})
            b, f = blank_counts(out.ctc_logits, out.lengths)
            done.blanks, done.frames = done.blanks + b, done.frames + f
            if top_k:
                best = ctc_label_scores(out.ctc_logits, out.lengths).topk(min(top_k, len(self.vocab)), -1).indices
                done.top.update({sid: self.vocab.decode(row.tolist()) for sid, row in zip(batch["ids"], best)})
        return done


@dataclass
class ScannedDecoding:
    hyps: list[dict[str, str]]  # per decoding: sample id -> hypothesis
    seconds: list[float]  # per decoding, after the shared encoder pass
    encode_seconds: float = 0.0
    blanks: int = 0  # CTC frames whose best label is blank, and all CTC frames
    frames: int = 0
    top: dict[str, list[str]] = field(default_factory=dict)  # sample id -> likeliest single glosses, best first


# what `signlab evaluate --decode all` and the demo compare: name -> options over the bundle's own
COMPARED_DECODERS = {
    "ctc_greedy": {"method": "ctc_greedy"},
    "ctc_beam (4)": {"method": "ctc_beam", "beam_size": 4},
    "attention (greedy)": {"method": "attention", "beam_size": 1},
    "attention (beam 4)": {"method": "attention", "beam_size": 4},
    "attention (beam 4, bonus 0.5)": {"method": "attention", "beam_size": 4, "length_bonus": 0.5},
    "joint (beam 4, ctc 0.3)": {"method": "joint", "beam_size": 4, "ctc_weight": 0.3},
    "rescore (beam 4, ctc 0.3)": {"method": "rescore", "beam_size": 4, "ctc_weight": 0.3},
}


def evaluate(
    run: str | Path,
    manifests: Sequence[str | Path],
    split: str = "test",
    output: str | Path | None = None,
    batch_size: int = 32,
    phoenix_cleanup: bool | None = None,
    features_dir: str | Path | None = None,
    backend: str = "torch",
    **decoding: Any,
) -> dict[str, Any]:
    """WER of a bundle on one split of a manifest; writes ``output`` and a hypotheses file beside it.

    ``decoding`` overrides the bundle's decoding settings (``method="joint"``, ``beam_size=8``...).
    """
    recognizer = Recognizer.load(run, backend=backend, **decoding)
    samples = [s for s in read_manifests(manifests, features_dir) if s.split == split]
    if not samples:
        raise SignlabError(f"the manifest has no rows with split {split!r}")
    return evaluate_samples(recognizer, samples, split, output, batch_size, phoenix_cleanup)


def evaluate_samples(recognizer: Recognizer, samples: Sequence[Sample] | ScanResult, split: str,
                     output: str | Path | None = None, batch_size: int = 32, phoenix_cleanup: bool | None = None
                     ) -> dict[str, Any]:
    """WER, edit counts and blank ratio of ``recognizer`` on ``samples`` (manifest rows, or the
    :func:`scan_for_wer` of them); see :func:`evaluate`."""
    cleanup = recognizer.config.decoding.phoenix_cleanup if phoenix_cleanup is None else phoenix_cleanup
    result = samples if isinstance(samples, ScanResult) else scan_for_wer(recognizer, samples, split)
    isolated = all(len(s.glosses) == 1 for s in result.samples)
    started = time.perf_counter()
    done = recognizer.decode_scanned(result, batch_size, top_k=5 if isolated else 0)
    seconds = time.perf_counter() - started
    refs, hyp_list, wer = _score(result, done.hyps[0], cleanup)
    results = {
        **wer.as_dict(), "blank_ratio": done.blanks / max(done.frames, 1), "split": split,
        "excluded": len(result.excluded), "phoenix_cleanup": cleanup, "decoding": recognizer.decoding.method,
        "decoding_options": recognizer.decoding.model_dump(), "decode_seconds": round(seconds, 3),
    }
    if isolated:  # one sign a clip (WLASL, Isolated Signs): accuracy, as those corpora report it
        results["isolated"] = topk_accuracy([s.glosses[0] for s in result.samples], [done.top[s.id] for s in result.samples])
    if output is not None:
        output = Path(output)
        hyp_path = output.with_name(output.stem + ".hyp.jsonl")
        write_text(hyp_path, "".join(json.dumps({"id": s.id, "signer": s.signer, "reference": ref, "hypothesis": hyp,
                                                 "wer": word_error_rate([ref], [hyp]).wer}) + "\n"
                                     for s, ref, hyp in zip(result.samples, refs, hyp_list)))
        results["hypotheses"] = hyp_path.name
        write_json(output, results)
    return results


def dev_search_grid(opts: DecodingConfig) -> dict[str, dict[str, Any]]:
    """What :func:`choose_decoding` tries, cheapest first (a tie goes to the cheaper one)."""
    k = opts.beam_size
    grid: dict[str, dict[str, Any]] = {"ctc_greedy": {"method": "ctc_greedy"},
                                       f"ctc_beam ({k})": {"method": "ctc_beam", "beam_size": k},
                                       f"attention (beam {k})": {"method": "attention", "beam_size": k}}
    for bonus in (0.5, 1.0):
        grid[f"attention (beam {k}, bonus {bonus})"] = {"method": "attention", "beam_size": k, "length_bonus": bonus}
    for method in ("joint", "rescore"):
        for w in (0.3, 0.5, 0.7):
            grid[f"{method} (beam {k}, ctc {w})"] = {"method": method, "beam_size": k, "ctc_weight": w}
    return grid


def choose_decoding(recognizer: Recognizer, dev: Sequence[Sample] | ScanResult,
                    batch_size: int = 32) -> tuple[DecodingConfig, dict[str, Any]]:
    """The decoder with the lowest WER on ``dev`` among :func:`dev_search_grid`, and the search's table."""
    grid = dev_search_grid(recognizer.config.decoding)
    search = compare_decoders(recognizer, dev, "dev", grid, batch_size)
    best = min(search["results"], key=lambda r: r["wer"])  # min keeps the first, cheapest, of equals
    search["chosen"] = best["decoder"]
    return decoding_options(recognizer.config, **grid[best["decoder"]]), search


def compare_decoders(recognizer: Recognizer, samples: Sequence[Sample] | ScanResult, split: str,
                     decoders: dict[str, dict[str, Any]] | None = None, batch_size: int = 32) -> dict[str, Any]:
    """WER of each decoder (``name -> options``, default :data:`COMPARED_DECODERS`) on ``samples``
    (as for :func:`evaluate_samples`), reading and encoding every clip once. A CTC-only model gets
    the CTC decoders only."""
    decoders = decoders or COMPARED_DECODERS
    if recognizer.model.decoder is None:
        decoders = {k: v for k, v in decoders.items() if v["method"] in CTC_METHODS}
    options = [decoding_options(recognizer.config, **v) for v in decoders.values()]
    result = samples if isinstance(samples, ScanResult) else scan_for_wer(recognizer, samples, split)
    done = recognizer.decode_scanned(result, batch_size, options)
    rows = []
    for (name, given), hyps, seconds in zip(decoders.items(), done.hyps, done.seconds):
        wer = _score(result, hyps, recognizer.config.decoding.phoenix_cleanup)[2]
        rows.append({"decoder": name, **given, "wer": round(wer.wer, 2), "sub": wer.sub, "del": wer.dele, "ins": wer.ins,
                     "decode_seconds": round(seconds, 3), "clips": wer.n})
    return {"split": split, "clips": len(result.samples), "excluded": len(result.excluded),
            "encode_seconds": round(done.encode_seconds, 3), "results": rows}


def scan_for_wer(recognizer: Recognizer, samples: Sequence[Sample], split: str, report: bool = True) -> ScanResult:
    """The rows of ``samples`` that can be scored (readable, with glosses), read once and kept in
    memory up to ``data.cache_gb`` so decoding does not read them again. ``report=False`` counts
    excluded rows without warning again (training already did)."""

    def check(sample, frames):
        return None if sample.glosses else ("no_glosses", f"{sample.where}: the glosses column is empty")

    return scan_split(samples, recognizer.prep, split, report=report, check=check,
                      cache_bytes=int(recognizer.config.data.cache_gb * 2**30))


def _score(result: ScanResult, hyps: dict[str, str], cleanup: bool) -> tuple[list[str], list[str], WERResult]:
    """References and hypotheses of the scanned rows (PHOENIX clean-up applied to both), and WER."""
    tidy = clean_phoenix_2014t if cleanup else (lambda s: s)
    refs = [tidy(" ".join(s.glosses)) for s in result.samples]
    hyp_list = [tidy(hyps[s.id]) for s in result.samples]
    return refs, hyp_list, word_error_rate(refs, hyp_list)
