"""Metrics the field already trusts: WER through jiwer, BLEU through sacrebleu, plus the CTC
blank ratio and the PHOENIX-2014-T gloss clean-up used before scoring that corpus."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import groupby

import jiwer
import torch
from torch import Tensor

from signlab.vocab import BLANK


@dataclass
class WERResult:
    wer: float  # percent
    sub: int
    dele: int
    ins: int
    hits: int
    ref_words: int
    n: int

    def as_dict(self) -> dict[str, float | int]:
        d = asdict(self)
        d["del"] = d.pop("dele")
        return d


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> WERResult:
    """Corpus-level WER (percent) with substitution / deletion / insertion counts."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        return WERResult(0.0, 0, 0, 0, 0, 0, 0)
    out = jiwer.process_words(list(references), list(hypotheses))
    ref_words = out.hits + out.substitutions + out.deletions
    errors = out.substitutions + out.deletions + out.insertions
    return WERResult(100.0 * errors / max(ref_words, 1), out.substitutions, out.deletions, out.insertions, out.hits, ref_words, len(references))


def topk_accuracy(labels: Sequence[str], ranked: Sequence[Sequence[str]], ks: Sequence[int] = (1, 5)) -> dict:
    """Isolated-sign accuracy: the share of clips whose label is among the first k of its ranked
    guesses, for each k, and top-1 accuracy per class with its mean (classes count alike, as
    WLASL and the Kaggle corpora report them)."""
    hits = {k: [label in guesses[:k] for label, guesses in zip(labels, ranked)] for k in ks}
    classes: dict[str, list[bool]] = {}
    for label, hit in zip(labels, hits[ks[0]]):
        classes.setdefault(label, []).append(hit)
    per_class = {c: sum(h) / len(h) for c, h in sorted(classes.items())}
    return {**{f"top{k}": sum(h) / max(len(h), 1) for k, h in hits.items()},
            "mean_class_top1": sum(per_class.values()) / max(len(per_class), 1), "per_class_top1": per_class}


def blank_counts(ctc_logits: Tensor, lengths: Tensor) -> tuple[int, int]:
    """(frames whose best CTC label is blank, valid frames): the CTC-collapse indicator."""
    valid = torch.arange(ctc_logits.size(1), device=lengths.device)[None] < lengths[:, None]
    blanks = (ctc_logits.argmax(-1) == BLANK) & valid
    return int(blanks.sum()), int(valid.sum())


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


# The clean-up of the PHOENIX-2014-T evaluation protocol, applied to hypotheses and references
# alike: drop annotation markers (__ON__, __EMOTION__...), strip loc-/cl- prefixes and
# -PLUSPLUS / RAUM suffixes, join spelled letters with '+', merge immediate repetitions.
_PHOENIX_PATTERNS = [
    (r"__LEFTHAND__|__EPENTHESIS__|__EMOTION__", ""),
    (r"\b__[^_ ]*__\b", ""),
    (r"\bloc-([^ ]*)\b", r"\1"),
    (r"\bcl-([^ ]*)\b", r"\1"),
    (r"\b([^ ]*)-PLUSPLUS\b", r"\1"),
    (r"\b([A-Z][A-Z]*)RAUM\b", r"\1"),
    (r"WIE AUSSEHEN", "WIE-AUSSEHEN"),
    (r"^([A-Z]) ([A-Z][+ ])", r"\1+\2"),
    (r"[ +]([A-Z]) ([A-Z]) ", r" \1+\2 "),
    (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    (r"([ +]SCH) ([A-Z][ +])", r"\1+\2"),
    (r"([ +]NN) ([A-Z][ +])", r"\1+\2"),
    (r"([ +][A-Z]) (NN[ +])", r"\1+\2"),
    (r"([ +][A-Z]) ([A-Z])$", r"\1+\2"),
]
_PHOENIX_RULES = [(re.compile(p), r) for p, r in _PHOENIX_PATTERNS]


def clean_phoenix_2014t(glosses: str) -> str:
    s = glosses.strip()
    for pattern, repl in _PHOENIX_RULES:
        s = pattern.sub(repl, s)
    return " ".join(k for k, _ in groupby(s.split()))


def retrieval_metrics(queries, labels, gallery=None, gallery_labels=None) -> dict[str, float]:
    """Sentence retrieval by cosine similarity of unit embeddings.

    Against ``gallery`` (e.g. the training clips) or, without one, leave-one-out among the
    queries themselves. A query's rank is 1 + the number of gallery clips scoring above its best
    clip of the right sentence; top-1 and MRR average over queries whose sentence is in the
    gallery (``n``); ``pos_sim`` / ``neg_sim`` are mean similarities to right / wrong clips.
    """
    import numpy as np

    q, labels = np.asarray(queries, np.float32), np.asarray(labels)
    leave_one_out = gallery is None
    g = q if leave_one_out else np.asarray(gallery, np.float32)
    g_labels = labels if leave_one_out else np.asarray(gallery_labels)
    sims = q @ g.T
    same = labels[:, None] == g_labels[None, :]
    if leave_one_out:
        np.fill_diagonal(sims, -np.inf)
        np.fill_diagonal(same, False)
    has = same.any(1)
    if not has.any():
        return {"top1": float("nan"), "mrr": float("nan"), "pos_sim": float("nan"), "neg_sim": float("nan"), "n": 0}
    best_right = np.where(same, sims, -np.inf).max(1)
    rank = 1 + (sims > best_right[:, None]).sum(1)
    finite = np.isfinite(sims)
    return {
        "top1": float((rank[has] == 1).mean()),
        "mrr": float((1.0 / rank[has]).mean()),
        "pos_sim": float(sims[same & finite].mean()),
        "neg_sim": float(sims[~same & finite].mean()) if (~same & finite).any() else float("nan"),
        "n": int(has.sum()),
    }


def alignment_metrics(a, b) -> dict[str, float]:
    """How well two views of the same clips (e.g. even and odd frames) find each other, from their
    unit embeddings: instance top-1, mean similarity to the own other view (``pos_sim``) and to
    the most similar other clip (``neg_sim``; 0 with one clip)."""
    import numpy as np

    sims = np.asarray(a, np.float32) @ np.asarray(b, np.float32).T
    n = len(sims)
    off = np.where(np.eye(n, dtype=bool), -np.inf, sims)
    return {"inst_top1": float((sims.argmax(1) == np.arange(n)).mean()), "pos_sim": float(np.diag(sims).mean()),
            "neg_sim": float(off.max(1).mean()) if n > 1 else 0.0}
