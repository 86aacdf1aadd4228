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
* ``gloss_mismatch`` (models with a gloss head, banks with the phrase book's glosses): the glosses
  recognised in the clip are further from the best sentence's than ``gloss_tolerance`` (edit
  distance per phrase-book gloss);
* ``ok``: accepted.
"""

from __future__ import annotations

import math
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


def edit_distance(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Levenshtein distance between two gloss sequences."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


@dataclass
class Candidate:
    rank: int
    clip_id: str
    sentence: str
    text: str
    similarity: float  # alpha * cosine + (1 - alpha) * (1 - DTW step distance / 2) when DTW is on
    cosine: float
    dtw_distance: float | None = None


@dataclass
class Prediction:
    accepted: bool
    reason: str  # ok, low_motion, no_signer, low_similarity, ambiguous_top2, prototype_disagreement, gloss_mismatch
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


def rank(bank: EmbeddingBank, cfg: EngineConfig, emb: np.ndarray, seq: np.ndarray, topk: int = 5,
         exclude: str | None = None) -> list[Candidate]:
    """Candidates of an encoded clip (embedding, DTW sequence), best first; ``exclude``: as if the
    bank did not hold that sentence (calibration's unknown sentences)."""
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
    order = np.argsort(-blended, kind="stable")
    return [Candidate(r + 1, str(bank.clip_ids[top[i]]), str(bank.sentences[top[i]]), str(bank.texts[top[i]]),
                      float(blended[i]), float(cosine[top[i]]), distances[i]) for r, i in enumerate(order)
            if np.isfinite(cosine[top[i]])]


def decide(candidates: list[Candidate], emb: np.ndarray, motion: float, prototypes: Prototypes, cfg: EngineConfig,
           threshold: float | None = None, margin: float | None = None, exclude: str | None = None,
           glosses: tuple[tuple[str, ...], dict[str, tuple[str, ...]]] | None = None) -> Prediction:
    """The decision on ranked candidates (``threshold`` / ``margin`` override the config's;
    ``exclude``: a sentence whose prototype does not count, as in :func:`rank`; ``glosses``: the
    glosses recognised in the clip, and the phrase book's glosses by sentence)."""
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
    gloss_ok = True
    if glosses is not None and cfg.gloss_tolerance is not None and top in glosses[1]:
        book = glosses[1][top]
        gloss_ok = edit_distance(glosses[0], book) / max(len(book), 1) <= cfg.gloss_tolerance
    reason = ("low_similarity" if top_score < threshold else "ambiguous_top2" if gap < margin_needed
              else "prototype_disagreement" if not proto_ok else "gloss_mismatch" if not gloss_ok else "ok")
    text = next(c.text for c in candidates if c.sentence == top)
    return Prediction(reason == "ok", reason, top, text, float(probs[0]), motion, gap, proto_sim, candidates)
