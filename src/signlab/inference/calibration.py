"""Choosing the engine's thresholds on held-out clips: the (similarity threshold, margin) pair
that accepts the most clips while keeping accepted answers at least ``target_precision`` correct."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from signlab import pose
from signlab.config import EngineConfig
from signlab.data.features import Preprocessor, ScanResult
from signlab.data.sentence import sentence_key
from signlab.errors import SignlabError
from signlab.inference.engine import InferenceEngine


def calibrate(engine: InferenceEngine, clips: Sequence[np.ndarray], truths: Sequence[str],
              target_precision: float = 0.95) -> tuple[float, float, dict[str, float]]:
    """(sim_threshold, sim_margin) that accept the most validation clips while keeping accepted
    answers at least ``target_precision`` correct (the most precise pair if none reaches it)."""
    if not len(clips):
        raise SignlabError("no validation clips to calibrate the thresholds on")
    embs, seqs = engine.encode(clips)
    rows = []
    for clip, emb, seq, truth in zip(clips, embs, seqs, truths):
        cands = engine.rank(emb, seq)
        p = engine.decide(cands, emb, pose.mean_motion(clip, engine.prep.is_pose), threshold=-1.0, margin=0.0)
        rows.append((cands[0].similarity, p.margin, p.reason != "prototype_disagreement", p.sentence == truth))
    return choose_thresholds(*(np.array(x) for x in zip(*rows)), target_precision=target_precision)


def choose_thresholds(top: np.ndarray, gap: np.ndarray, proto_ok: np.ndarray, right: np.ndarray,
                      target_precision: float = 0.95, grid: int = 256) -> tuple[float, float, dict[str, float]]:
    """The (threshold, margin) pair of :func:`calibrate`, from each clip's top score, margin to
    the next sentence (NaN: never accepted), prototype agreement and correctness.

    Candidate values are the clips' own scores and margins (rounded to 1e-4), at most ``grid``
    of each (quantiles beyond that); ties go to the lowest threshold, then the lowest margin."""

    def values(x: np.ndarray) -> np.ndarray:
        x = np.round(x[np.isfinite(x)], 4)
        if len(np.unique(x)) > grid:
            x = np.quantile(x, np.linspace(0, 1, grid), method="lower")
        return np.unique(x)

    margins = np.unique(np.concatenate([[0.0], values(gap)]))
    best = None
    for t in values(top):  # every margin at once for each threshold: (margins, clips)
        accepted = (top >= t) & (gap >= margins[:, None]) & proto_ok
        n = accepted.sum(1)
        if not n.any():
            continue
        precision = (accepted & right).sum(1) / np.maximum(n, 1)
        meets = precision >= target_precision
        score = np.where(meets, n / len(top), precision)
        usable = (n > 0) & (meets == meets[n > 0].max())
        i = int(np.argmax(np.where(usable, score, -np.inf)))
        key = (bool(meets[i]), float(score[i]), -float(t))
        if best is None or key > best[0]:
            best = (key, float(t), float(margins[i]), float(precision[i]), float(n[i] / len(top)))
    if best is None:
        raise SignlabError("calibration found no threshold that accepts anything")
    return best[1], best[2], {"precision": best[3], "coverage": best[4], "clips": len(top)}


def calibrated(engine: InferenceEngine, held_out: ScanResult, prep: Preprocessor) -> tuple[EngineConfig, dict[str, Any]]:
    """The engine's config with thresholds calibrated on ``held_out`` clips (a new config; the
    engine is left as it is), and what the calibration found."""
    t, m, info = calibrate(engine, held_out.all_features(prep), [sentence_key(s) for s in held_out.samples],
                           engine.cfg.target_precision)
    return engine.cfg.model_copy(update={"sim_threshold": round(t, 4), "sim_margin": round(m, 4)}), \
        {"sim_threshold": t, "sim_margin": m, **info}
