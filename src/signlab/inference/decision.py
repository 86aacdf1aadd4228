"""Ranking and deciding, as pure functions of an encoded clip, the bank and an engine config.

A query's candidates are the bank clips nearest by cosine, the best of them re-ranked by exact
DTW on their projected frames (dtaidistance). The decision, with a temperature-scaled confidence
over the candidate sentences:

* ``low_motion``: the clip hardly moves;
* ``low_similarity``: the best score is below ``sim_threshold``;
* ``ambiguous_top2``: another *sentence* scores within ``sim_margin`` of the best (two clips of
  the same sentence agreeing is not ambiguity, unlike in the seed);
* ``prototype_disagreement``: the nearest sentence prototype (mean embedding of a sentence's
  clips) is another sentence, or the best sentence's prototype is below threshold - slack;
* ``ok``: accepted.

With a gloss head on the model and the phrase book's glosses in the bank, a candidate's score also
holds ``gloss_weight`` x its gloss fit: the mean log-probability per gloss that the head's CTC gives
the candidate sentence's glosses (0 when the head is sure of exactly them). Sentences that differ in
one sign then differ in score, and a clip of a sentence the book does not hold fits none of them
(low_similarity).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from signlab.config import EngineConfig
from signlab.inference.bank import EmbeddingBank, Prototypes


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Exact DTW: the least sum of Euclidean frame distances along a warping path (the quantity
    the seed's fastdtw approximates), in C through dtaidistance."""
    from dtaidistance import dtw_ndim

    return float(dtw_ndim.distance(np.asarray(a, np.float64), np.asarray(b, np.float64), use_c=True, inner_dist="euclidean"))


GLOSS_FIT_FLOOR = -10.0  # nats per gloss: a clip too short for a sentence's glosses (CTC: -inf) scores this


def gloss_fit(log_probs: np.ndarray, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """Per target gloss sequence (gloss head indices, 1-based: 0 is CTC's blank), its mean
    log-probability per gloss under a clip's CTC log-probabilities ``log_probs`` (T, G + 1): 0 when
    the head is sure of exactly these glosses, :data:`GLOSS_FIT_FLOOR` at worst.

    The CTC forward recursion over all targets at once, one vectorised step a frame, in NumPy: a
    few candidates of a few glosses over at most ``seq_len`` frames are too small for torch's
    per-call cost to pay (README, design notes)."""
    lengths = np.array([len(t) for t in targets])
    states = 2 * lengths.max() + 1
    ext = np.zeros((len(targets), states), np.int64)  # blank, g1, blank, g2, ..., blank (padded with blanks)
    for k, t in enumerate(targets):
        ext[k, 1 : 2 * len(t) : 2] = t
    # a label state may also come from two states back when it is not a repeat of the label there
    skip = np.zeros(ext.shape, bool)
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    emit = np.asarray(log_probs, np.float64)[:, ext]  # (T, K, S)
    alpha = np.full((len(targets), states + 2), -np.inf)  # two states of -inf in front: no branch at the edge
    alpha[:, 2:4] = emit[0, :, :2]
    no_jump = np.where(skip, 0.0, -np.inf)
    for frame in emit[1:]:  # stay, step from the state before, or jump over a blank
        alpha[:, 2:] = np.logaddexp(np.logaddexp(alpha[:, 2:], alpha[:, 1:-1]), alpha[:, :-2] + no_jump) + frame
    rows = np.arange(len(targets))
    total = np.logaddexp(alpha[rows, 2 + 2 * lengths], alpha[rows, 1 + 2 * lengths])
    return np.maximum(total / np.maximum(lengths, 1), GLOSS_FIT_FLOOR)


@dataclass
class Candidate:
    rank: int
    clip_id: str
    sentence: str
    text: str
    similarity: float  # alpha * cosine + (1 - alpha) * (1 - DTW step distance / 2) when DTW is on, + gloss_weight * gloss_fit
    cosine: float
    dtw_distance: float | None = None
    gloss_fit: float | None = None  # with gloss evidence: mean log-probability per phrase-book gloss


@dataclass
class Prediction:
    accepted: bool
    reason: str  # ok, low_motion, no_signer, low_similarity, ambiguous_top2, prototype_disagreement
    sentence: str | None
    text: str | None
    confidence: float
    motion: float
    margin: float = float("nan")
    prototype_similarity: float | None = None
    candidates: list[Candidate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values: NaN (no second sentence to compare with) becomes null."""
        from dataclasses import asdict

        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in asdict(self).items()}


def no_signer() -> Prediction:
    """The answer for a clip with nobody in it: refused before the model."""
    return Prediction(False, "no_signer", None, None, 0.0, 0.0)

def rank(bank: EmbeddingBank, cfg: EngineConfig, emb: np.ndarray, seq: np.ndarray, topk: int = 5,
         exclude: str | None = None, fit: Callable[[list[str]], np.ndarray] | None = None) -> list[Candidate]:
    """Candidates of an encoded clip (embedding, DTW sequence), best first; ``exclude``: as if the
    bank did not hold that sentence (calibration's unknown sentences); ``fit``: the clip's gloss
    fit of sentences (see :func:`gloss_fit`), when there is gloss evidence."""
    frames = bank.sequences.shape[1]
    cosine = bank.embeddings @ emb
    if exclude is not None:
        cosine = np.where(bank.sentences == exclude, -np.inf, cosine)
    n = min(len(cosine), max(topk, cfg.dtw.topk if cfg.dtw.enabled else topk))
    top = np.argpartition(-cosine, n - 1)[:n]
    top = top[np.argsort(-cosine[top])]
    blended, distances = cosine[top].astype(np.float64), [None] * n
    if cfg.dtw.enabled:
        query = seq.astype(np.float64)
        for i, j in enumerate(top):  # every candidate returned: scores the decision compares must be alike
            d = dtw_distance(query, bank.sequences[j]) / frames  # mean step distance, 0 to 2
            distances[i] = float(d)
            blended[i] = cfg.dtw.alpha * cosine[j] + (1 - cfg.dtw.alpha) * (1 - d / 2)
    fits = [None] * n
    if fit is not None and cfg.gloss_weight > 0:
        fits = fit([str(bank.sentences[j]) for j in top])
        blended = blended + cfg.gloss_weight * fits
    order = np.argsort(-blended, kind="stable")
    return [Candidate(r + 1, str(bank.clip_ids[top[i]]), str(bank.sentences[top[i]]), str(bank.texts[top[i]]),
                      float(blended[i]), float(cosine[top[i]]), distances[i], None if fits[i] is None else float(fits[i]))
            for r, i in enumerate(order) if np.isfinite(cosine[top[i]])]


def decide(candidates: list[Candidate], emb: np.ndarray, motion: float, prototypes: Prototypes, cfg: EngineConfig,
           threshold: float | None = None, margin: float | None = None, exclude: str | None = None) -> Prediction:
    """The decision on ranked candidates (``threshold`` / ``margin`` override the config's;
    ``exclude``: a sentence whose prototype does not count, as in :func:`rank`)."""
    threshold = cfg.sim_threshold if threshold is None else threshold
    margin_needed = cfg.sim_margin if margin is None else margin
    if motion < cfg.motion_floor:
        return Prediction(False, "low_motion", None, None, 0.0, motion, candidates=candidates)
    best: dict[str, float] = {}
    for c in candidates:  # best score of each candidate sentence
        best.setdefault(c.sentence, c.similarity)
    sentences, scores = list(best), np.array(list(best.values()))
    probs = np.exp((scores - scores.max()) / cfg.confidence_temperature)
    probs /= probs.sum()
    top, top_score = sentences[0], scores[0]
    gap = float(top_score - scores[1]) if len(scores) > 1 else float("inf")
    proto_sim, proto_ok = None, True
    if top in prototypes.position:
        sims = prototypes.vectors @ emb
        if exclude in prototypes.position:
            sims[prototypes.position[exclude]] = -np.inf
        proto_sim = float(sims[prototypes.position[top]])
        nearest = str(prototypes.keys[int(sims.argmax())])
        proto_ok = nearest == top and proto_sim >= threshold - cfg.prototype_slack
    reason = ("low_similarity" if top_score < threshold else "ambiguous_top2" if gap < margin_needed
              else "prototype_disagreement" if not proto_ok else "ok")
    text = next(c.text for c in candidates if c.sentence == top)
    return Prediction(reason == "ok", reason, top, text, float(probs[0]), motion, gap, proto_sim, candidates)
