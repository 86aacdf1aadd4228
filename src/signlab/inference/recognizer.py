"""Run a trained gloss recogniser: on feature arrays, or over a manifest split with WER."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from signlab.data.dataset import resample_frames
from signlab.data.features import Preprocessor, ScanResult, report_exclusions, scan
from signlab.data.manifest import read_manifests
from signlab.decoding import decode_batch
from signlab.errors import SignlabError
from signlab.inference.bundle import Bundle, load_bundle
from signlab.metrics import blank_counts, clean_phoenix_2014t, word_error_rate
from signlab.training.data import eval_loader


class Recognizer:
    """Raw (T, D) features in, glosses out, with the bundle's own preprocessing."""

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu"):
        self.bundle, self.device = bundle, torch.device(device)
        self.config, self.vocab, self.stats = bundle.config, bundle.vocab, bundle.stats
        self.model = bundle.model.to(self.device).eval()
        self.prep = Preprocessor(self.stats.dim, self.config.data.pose_normalization)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Recognizer:
        return cls(load_bundle(path, device), device)

    def default_method(self) -> str:
        return self.config.decoding.method if self.config.model.type == "hybrid" else "ctc_greedy"

    @torch.no_grad()
    def recognize(self, features: np.ndarray, method: str | None = None) -> list[str]:
        """Glosses for one clip of raw features (as the extractor wrote them)."""
        x = resample_frames(self.prep(np.asarray(features, np.float32), "input"), self.config.data.max_frames)
        x = self.stats.standardize(x, self.prep.present(x))
        hyps, _ = decode_batch(
            self.model, torch.from_numpy(x)[None].to(self.device), torch.tensor([len(x)], device=self.device),
            method or self.default_method(), self.config.decoding.max_len,
        )
        return self.vocab.decode(hyps[0])

    @torch.no_grad()
    def decode_scanned(self, result: ScanResult, method: str, batch_size: int = 32) -> tuple[dict[str, str], int, int]:
        """Hypotheses by sample id for a scanned split, and (blank frames, frames) over it."""
        loader = eval_loader(result, self.prep, self.stats, self.vocab, self.config.data.max_frames, batch_size)
        hyps, blanks, frames = {}, 0, 0
        for batch in loader:
            ids, out = decode_batch(
                self.model, batch["features"].to(self.device), batch["lengths"].to(self.device), method,
                self.config.decoding.max_len,
            )
            b, f = blank_counts(out.ctc_logits, out.lengths)
            blanks, frames = blanks + b, frames + f
            hyps.update({sid: " ".join(self.vocab.decode(h)) for sid, h in zip(batch["ids"], ids)})
        return hyps, blanks, frames


def evaluate(
    run: str | Path,
    manifests: Sequence[str | Path],
    split: str = "test",
    method: str | None = None,
    output: str | Path | None = None,
    batch_size: int = 32,
    phoenix_cleanup: bool | None = None,
    features_dir: str | Path | None = None,
) -> dict[str, Any]:
    """WER of a bundle on one split of a manifest; writes ``output`` and a hypotheses file beside it."""
    recognizer = run if isinstance(run, Recognizer) else Recognizer.load(run)
    samples = [s for s in read_manifests(manifests, features_dir) if s.split == split]
    if not samples:
        raise SignlabError(f"the manifest has no rows with split {split!r}")
    return evaluate_samples(recognizer, samples, split, method, output, batch_size, phoenix_cleanup)


def evaluate_samples(recognizer: Recognizer, samples, split, method=None, output=None, batch_size=32,
                     phoenix_cleanup=None) -> dict[str, Any]:
    method = method or recognizer.default_method()
    cleanup = recognizer.config.decoding.phoenix_cleanup if phoenix_cleanup is None else phoenix_cleanup

    def check(sample, frames):
        return None if sample.glosses else ("no_glosses", f"{sample.where}: the glosses column is empty")

    result = scan(samples, recognizer.prep, check=check, cache_bytes=0, desc=f"scanning {split}")
    report_exclusions(result.excluded, split, len(samples))
    if not result.samples:
        raise SignlabError(f"no usable {split} rows left to evaluate (see the warnings above)")
    hyps, blanks, frames = recognizer.decode_scanned(result, method, batch_size)
    tidy = clean_phoenix_2014t if cleanup else (lambda s: s)
    refs = [tidy(" ".join(s.glosses)) for s in result.samples]
    hyp_list = [tidy(hyps[s.id]) for s in result.samples]
    wer = word_error_rate(refs, hyp_list)
    results = {
        **wer.as_dict(), "blank_ratio": blanks / max(frames, 1), "decoding": method, "split": split,
        "excluded": len(result.excluded), "phoenix_cleanup": cleanup,
    }
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        hyp_path = output.with_name(output.stem + ".hyp.jsonl")
        with hyp_path.open("w") as f:
            for s, ref, hyp in zip(result.samples, refs, hyp_list):
                f.write(json.dumps({"id": s.id, "reference": ref, "hypothesis": hyp,
                                    "wer": word_error_rate([ref], [hyp]).wer}) + "\n")
        results["hypotheses"] = hyp_path.name
        output.write_text(json.dumps(results, indent=1))
    return results
