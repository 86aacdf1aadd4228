"""Choosing the engine's thresholds on held-out clips of known sentences, and of sentences the
phrase book does not hold: each held-out clip is decided twice, once against the whole bank and
once with its own sentence left out of the bank and the prototypes (leave-sentences-out), which
makes it a clip of an unknown sentence whose nearest phrases are the others, its near-duplicates
among them. The (similarity threshold, margin) pair, and with gloss evidence the weight of the
gloss fit in the score, accept the most known clips while keeping accepted answers
``target_precision`` right and rejecting ``target_rejection`` of the unknown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from signlab import pose
from signlab.config import EngineConfig
from signlab.data.features import Preprocessor, ScanResult
from signlab.data.sentence import sentence_key
from signlab.errors import SignlabError
from signlab.inference.bank import EncodedClips
from signlab.inference.engine import InferenceEngine


def calibration_rows(engine: InferenceEngine, clips: Sequence[np.ndarray], enc: EncodedClips, truths: Sequence[str],
                     leave_out: bool) -> dict[str, np.ndarray]:
    """Per clip (encoded as ``enc``), what the thresholds act on: the top score, the margin to the
    next sentence (NaN: no other), whether the other gates pass, and whether the top sentence is
    right; ``leave_out``: with the clip's own sentence out of the bank (nothing is right then)."""
    rows = []
    for i, (clip, truth) in enumerate(zip(clips, truths)):
        exclude = truth if leave_out else None
        cands = engine.rank(enc, i, exclude=exclude)
        if not cands:  # the bank holds no other sentence
            continue
        p = engine.decide(cands, enc.embeddings[i], pose.mean_motion(clip, engine.prep.is_pose), threshold=-1.0,
                          margin=0.0, exclude=exclude)
        rows.append((cands[0].similarity, p.margin, p.reason not in ("prototype_disagreement", "low_motion"),
                     p.sentence == truth))
    top, gap, gates, right = (np.array(x) for x in zip(*rows)) if rows else (np.zeros(0),) * 4
    return {"top": top.astype(float), "gap": gap.astype(float), "gates": gates.astype(bool), "right": right.astype(bool)}


GLOSS_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.5)  # calibration's choices of engine.gloss_weight, with gloss evidence


def calibrate(engine: InferenceEngine, clips: Sequence[np.ndarray], truths: Sequence[str],
              target_precision: float = 0.95, target_rejection: float = 0.95) -> tuple[float, float, dict[str, Any]]:
    """(sim_threshold, sim_margin) for held-out clips of known sentences, and what they give (see
    :func:`choose_thresholds`), with the curve over thresholds at the chosen margin; with gloss
    evidence, for each of :data:`GLOSS_WEIGHTS`, the best of them in ``info["gloss_weight"]``."""
    if not len(clips):
        raise SignlabError("no validation clips to calibrate the thresholds on")
    enc = engine.encode(clips)
    others = len(set(truths)) > 1 or len(set(engine.bank.sentences.tolist())) > 1
    options = {}
    for weight in GLOSS_WEIGHTS if engine.book is not None else (engine.cfg.gloss_weight,):
        weighted = engine.with_config(engine.cfg.model_copy(update={"gloss_weight": weight}))
        options[weight] = (calibration_rows(weighted, clips, enc, truths, leave_out=False),
                           calibration_rows(weighted, clips, enc, truths, leave_out=True) if others else None)
    t, m, info = choose_operating_point(options, target_precision, target_rejection)
    if engine.book is None:
        info.pop("gloss_weight")
    return t, m, info


def choose_operating_point(options: dict[float, tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]],
                           target_precision: float = 0.95, target_rejection: float = 0.9
                           ) -> tuple[float, float, dict[str, Any]]:
    """:func:`choose_thresholds` on the (known, unknown) rows of each gloss weight, and the best
    weight by the same order (:func:`preference`), the lowest of equals; ``info["gloss_weight"]``.

    Where both targets are met, weights are compared by the coverage at the target rejection plus
    the coverage at a stricter one, halfway to 1: at the target itself every weight's threshold
    sits on the same few left-out clips, so a single point cannot tell the weights apart where a
    stretch of the curve can (README, design notes)."""
    best, error = None, None
    strict = (1 + target_rejection) / 2
    for weight, (known, unknown) in sorted(options.items()):
        try:
            t, m, info = choose_thresholds(known, unknown, target_precision, target_rejection)
        except SignlabError as exc:
            error = exc
            continue
        key = preference(np.array([info["coverage"]]), np.array([info["precision"]]),
                         np.array([info.get("unknown_rejection", 1.0)]), target_precision, target_rejection)[0]
        if key[1] and unknown is not None and len(unknown["top"]):  # both met: add the stricter point's coverage
            stricter = choose_thresholds(known, unknown, target_precision, strict)[2]
            key[3] += stricter["coverage"] if stricter["targets_met"] else 0.0
        key = tuple(key)
        if best is None or key > best[0]:
            best = (key, t, m, {**info, "gloss_weight": weight})
    if best is None:
        raise error
    return best[1], best[2], best[3]


def _operating(rows: dict[str, np.ndarray], t: float | np.ndarray, margins: np.ndarray) -> np.ndarray:
    """(margins, clips) accepted at threshold ``t``."""
    return (rows["top"] >= t) & (rows["gap"] >= margins[:, None]) & rows["gates"]


def preference(coverage: np.ndarray, precision: np.ndarray, rejection: np.ndarray, target_precision: float,
               target_rejection: float) -> np.ndarray:
    """(n, 4) keys ordering operating points, compared row by row as tuples: accepts something,
    meets both targets, rejects enough unknown, then what matters most in that case (coverage when
    both are met, else precision when rejection is, else rejection)."""
    rejects = rejection >= target_rejection
    meets = rejects & (precision >= target_precision) & (coverage > 0)
    return np.stack([coverage > 0, meets, rejects, np.where(meets, coverage, np.where(rejects, precision, rejection))], 1)


def choose_thresholds(known: dict[str, np.ndarray], unknown: dict[str, np.ndarray] | None,
                      target_precision: float = 0.95, target_rejection: float = 0.9,
                      grid: int = 256) -> tuple[float, float, dict[str, Any]]:
    """The (threshold, margin) pair that accepts the most ``known`` clips while keeping accepted
    answers ``target_precision`` right and rejecting ``target_rejection`` of the ``unknown`` (when
    given). When no pair meets both, the targets give way in that order: the pair that rejects
    enough unknown and is the most precise, else the one that rejects the most (a pair that
    accepts nothing is never chosen). Candidate values
    are the clips' own scores and margins (rounded to 1e-4; at most ``grid`` quantiles of each);
    ties go to the lowest threshold, then the lowest margin."""

    def values(x: np.ndarray) -> np.ndarray:
        x = np.round(x[np.isfinite(x)], 4)
        if len(np.unique(x)) > grid:
            x = np.quantile(x, np.linspace(0, 1, grid), method="lower")
        return np.unique(x)

    def measures(t, margins):
        accepted = _operating(known, t, margins)
        n = accepted.sum(1)
        precision = np.where(n > 0, (accepted & known["right"]).sum(1) / np.maximum(n, 1), 0.0)
        rejection = np.ones(len(margins)) if unknown is None or not len(unknown["top"]) else \
            1 - _operating(unknown, t, margins).mean(1)
        return n / len(known["top"]), precision, rejection

    scores = known["top"] if unknown is None else np.concatenate([known["top"], unknown["top"]])
    margins = np.unique(np.concatenate([[0.0], values(known["gap"])] + ([] if unknown is None else [values(unknown["gap"])])))
    best = None
    for t in values(scores):
        coverage, precision, rejection = measures(t, margins)
        key = preference(coverage, precision, rejection, target_precision, target_rejection)
        i = max(range(len(margins)), key=lambda k: tuple(key[k]))  # first of equals: the lowest margin
        candidate = (tuple(key[i]), -float(t))
        if best is None or candidate > best[0]:
            best = (candidate, float(t), float(margins[i]), float(precision[i]), float(coverage[i]), float(rejection[i]))
    if best is None or best[4] == 0:
        raise SignlabError("calibration found no threshold that accepts anything: no held-out clip passes the "
                           "other gates (motion, prototypes) or has a margin to the next sentence")
    _, t, m, precision, coverage, rejection = best
    info: dict[str, Any] = {"precision": precision, "coverage": coverage, "clips": len(known["top"]),
                            "targets_met": bool(best[0][0][1])}  # the key's "meets both"
    if unknown is not None:
        info.update(unknown_rejection=rejection, unknown_clips=len(unknown["top"]),
                    curve=threshold_curve(known, unknown, m))
    return t, m, info


def threshold_curve(known: dict[str, np.ndarray], unknown: dict[str, np.ndarray], margin: float,
                    points: int = 41) -> list[dict[str, float]]:
    """Accept rate and precision on known clips, rejection of unknown ones, over thresholds (at
    ``margin``): the operating curve calibration chose its point on."""
    scores = np.concatenate([known["top"], unknown["top"]])
    out = []
    for t in np.unique(np.round(np.quantile(scores, np.linspace(0, 1, points)), 4)):
        accepted = _operating(known, t, np.array([margin]))[0]
        rejected = ~_operating(unknown, t, np.array([margin]))[0]
        out.append({"threshold": float(t), "accept_rate": float(accepted.mean()),
                    "precision": float((accepted & known["right"]).sum() / accepted.sum()) if accepted.any() else None,
                    "unknown_rejected": float(rejected.mean()) if len(rejected) else None})
    return out


def calibrated(engine: InferenceEngine, held_out: ScanResult, prep: Preprocessor) -> tuple[EngineConfig, dict[str, Any]]:
    """The engine's config with thresholds calibrated on ``held_out`` clips (a new config; the
    engine is left as it is), and what the calibration found."""
    t, m, info = calibrate(engine, held_out.all_features(prep), [sentence_key(s) for s in held_out.samples],
                           engine.cfg.target_precision, engine.cfg.target_rejection)
    update = {"sim_threshold": round(t, 4), "sim_margin": round(m, 4)}
    if "gloss_weight" in info:
        update["gloss_weight"] = info["gloss_weight"]
    return engine.cfg.model_copy(update=update), {"sim_threshold": t, "sim_margin": m, **info}


def describe(info: dict[str, Any]) -> str:
    """The chosen operating point in words: ``sim_threshold 0.444, sim_margin 0.000, gloss_weight 0.2``."""
    return (f"sim_threshold {info['sim_threshold']:.3f}, sim_margin {info['sim_margin']:.3f}"
            + (f", gloss_weight {info['gloss_weight']:g}" if "gloss_weight" in info else ""))
