"""Sentence retrieval with a calibrated accept / reject decision (the SignTalk inference engine).

A query clip goes through: a motion gate (a clip that hardly moves is rejected as
``low_motion``), the encoder (PyTorch, or ONNX Runtime), cosine similarity against the
embedding bank, exact DTW re-ranking of the best candidates on their projected frames
(dtaidistance, exact), a temperature-scaled confidence over the candidate sentences, and the decision:

* ``low_similarity``: the best score is below ``sim_threshold``;
* ``ambiguous_top2``: another *sentence* scores within ``sim_margin`` of the best (two clips of
  the same sentence agreeing is not ambiguity, unlike in the seed);
* ``prototype_disagreement``: the nearest sentence prototype (mean embedding of a sentence's
  clips) is another sentence, or the best sentence's prototype is below threshold - slack;
* ``ok``: accepted.

The thresholds can be calibrated on validation clips (:func:`calibrate`): the pair that accepts
the most clips while keeping accepted answers at least ``target_precision`` correct.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from signlab.atomic import load_npz, save_npz
from signlab.config import EngineConfig, SentenceConfig
from signlab.data import pose
from signlab.data.dataset import pad_clips
from signlab.data.features import FeatureError, Preprocessor, ScanResult, check_features
from signlab.data.manifest import Sample
from signlab.data.sentence import sentence_key
from signlab.data.stats import FeatureStats
from signlab.errors import SignlabError
from signlab.inference.bundle import (
    check_bundle_files,
    load_weights,
    read_bundle_config,
    read_metrics,
    save_weights,
    write_metrics,
)
from signlab.models.sentence import SignTranslationModel
from signlab.vocab import Vocabulary

SENTENCE_BUNDLE_FILES = ("config.yaml", "vocab.json", "stats.npz", "model.safetensors", "bank.npz", "prototypes.npz")


# ----------------------------------------------------------------------------- encoders


class Encoder(Protocol):
    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, T, D) float32 raw features, (B,) int64 lengths -> embeddings (B, E), projected frames (B, T', P)."""


class TorchEncoder:
    def __init__(self, model: SignTranslationModel, device: str | torch.device = "cpu"):
        self.model, self.device = model.to(device).eval(), torch.device(device)

    @torch.no_grad()
    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        enc = self.model.encode(torch.from_numpy(features).to(self.device), torch.from_numpy(lengths).to(self.device))
        return enc.embedding.float().cpu().numpy(), enc.projected.float().cpu().numpy()


class OnnxEncoder:
    """The exported encoder (``encoder.onnx``) on ONNX Runtime's CPU provider."""

    def __init__(self, path: str | Path):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise SignlabError(f"{path} not found: run `signlab sentence export RUN` first")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb, proj = self.session.run(None, {"features": features.astype(np.float32), "lengths": lengths.astype(np.int64)})
        return emb, proj


def subsampled(length: int, factor: int) -> int:
    from signlab.models.frontend import subsampled_lengths

    return int(subsampled_lengths(length, factor))


def encode_clips(encoder: Encoder, clips: Sequence[np.ndarray], seq_len: int, dtw_frames: int, subsampling: int = 1,
                 batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, E), and DTW sequences (N, dtw_frames, P) float16: each clip's projected
    frames resampled to ``dtw_frames`` and scaled to unit length (a step of DTW then costs 0-2,
    whatever the model's scale)."""
    embs, seqs = [], []
    for start in range(0, len(clips), batch_size):
        x, lengths = pad_clips(clips[start : start + batch_size], seq_len)
        emb, proj = encoder(x, lengths)
        embs.append(emb)
        for i, n in enumerate(lengths):
            valid = proj[i, : subsampled(int(n), subsampling)]
            picked = valid[np.linspace(0, len(valid) - 1, dtw_frames).round().astype(int)]
            picked = picked / np.linalg.norm(picked, axis=1, keepdims=True).clip(1e-8)
            seqs.append(picked.astype(np.float16))
    return np.concatenate(embs), np.stack(seqs)


# ----------------------------------------------------------------------------- bank


@dataclass
class EmbeddingBank:
    embeddings: np.ndarray  # (N, E) float32, unit length
    sequences: np.ndarray  # (N, L, P) float16: projected frames resampled to L, for DTW
    sentences: np.ndarray  # (N,) sentence keys
    texts: np.ndarray  # (N,)
    clip_ids: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.embeddings)

    def save(self, path: str | Path) -> None:
        save_npz(path, embeddings=self.embeddings, sequences=self.sequences, sentences=self.sentences.astype(str),
                 texts=self.texts.astype(str), clip_ids=self.clip_ids.astype(str))

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingBank:
        z = load_npz(path, ("embeddings", "sequences", "sentences", "texts", "clip_ids"), "embedding bank")
        n = len(z["embeddings"])
        if z["embeddings"].ndim != 2 or z["sequences"].ndim != 3 or any(len(v) != n for v in z.values()):
            raise SignlabError(f"{path}: the bank's arrays disagree in shape ({', '.join(f'{k} {v.shape}' for k, v in z.items())}): "
                               "rebuild it with `signlab sentence index`")
        return cls(z["embeddings"], z["sequences"], z["sentences"], z["texts"], z["clip_ids"])

    def prototypes(self, min_clips: int = 2) -> Prototypes:
        """Mean (re-normalised) embedding of each sentence with at least ``min_clips`` clips."""
        keys, inverse, counts = np.unique(self.sentences, return_inverse=True, return_counts=True)
        sums = np.zeros((len(keys), self.embeddings.shape[1]), np.float64)
        np.add.at(sums, inverse, self.embeddings)
        keep = counts >= min_clips
        vectors = sums[keep] / np.linalg.norm(sums[keep], axis=1, keepdims=True).clip(1e-8)
        return Prototypes(keys[keep], vectors.astype(np.float32), counts[keep])


@dataclass
class Prototypes:
    keys: np.ndarray
    vectors: np.ndarray  # (K, E), unit length
    counts: np.ndarray

    def save(self, path: str | Path) -> None:
        save_npz(path, sentence_ids=self.keys.astype(str), embeddings=self.vectors, counts=self.counts)

    @classmethod
    def load(cls, path: str | Path) -> Prototypes:
        z = load_npz(path, ("sentence_ids", "embeddings", "counts"), "prototype file")
        return cls(z["sentence_ids"], z["embeddings"], z["counts"])


# ----------------------------------------------------------------------------- engine


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Exact DTW: the least sum of Euclidean frame distances along a warping path (the quantity
    the seed's fastdtw approximates), in C through dtaidistance."""
    from dtaidistance import dtw_ndim

    return float(dtw_ndim.distance(np.asarray(a, np.float64), np.asarray(b, np.float64), use_c=True, inner_dist="euclidean"))



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


class InferenceEngine:
    def __init__(self, encoder: Encoder, prep: Preprocessor, bank: EmbeddingBank, prototypes: Prototypes,
                 cfg: EngineConfig, seq_len: int, subsampling: int = 1):
        if len(bank) == 0:
            raise SignlabError("the embedding bank is empty: index some clips first (signlab sentence index)")
        self.encoder, self.prep, self.bank, self.protos = encoder, prep, bank, prototypes
        self.cfg, self.seq_len, self.subsampling = cfg, seq_len, subsampling
        self._proto_index = {k: i for i, k in enumerate(prototypes.keys.tolist())}

    @classmethod
    def load(cls, run: str | Path, backend: str = "torch", device: str = "cpu") -> InferenceEngine:
        return cls.from_bundle(load_sentence_bundle(run, device), run, backend, device)

    @classmethod
    def from_bundle(cls, bundle: SentenceBundle, run: str | Path, backend: str = "torch",
                    device: str = "cpu") -> InferenceEngine:
        """The engine of a loaded bundle; ``backend="onnx"`` runs ``RUN/encoder.onnx``."""
        encoder: Encoder = TorchEncoder(bundle.model, device) if backend == "torch" else OnnxEncoder(Path(run) / "encoder.onnx")
        return cls(encoder, bundle.prep, bundle.bank, bundle.prototypes, bundle.config.engine, bundle.config.data.seq_len,
                   bundle.model.subsampling)

    def predict(self, features: np.ndarray, topk: int = 5, where: str = "query") -> Prediction:
        """Decide on one raw clip (T, D) as the extractor wrote it. Features that are not (T, D)
        finite numbers are a :class:`FeatureError` naming ``where``; a clip in which no signer
        is seen is rejected as ``no_signer``."""
        raw = check_features(features, where, self.prep.dim)
        try:
            clip = self.prep(raw, where)
        except FeatureError as exc:
            if exc.kind != "no_body":
                raise
            return Prediction(False, "no_signer", None, None, 0.0, 0.0)
        return self.predict_clip(clip, topk)

    def predict_clip(self, clip: np.ndarray, topk: int = 5) -> Prediction:
        """Decide on one preprocessed clip."""
        return self.decide(*self.score(clip, topk), motion=pose.mean_motion(clip))

    def encode(self, clips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and DTW sequences of preprocessed clips, resampled as the bank's were."""
        return encode_clips(self.encoder, clips, self.seq_len, self.bank.sequences.shape[1], self.subsampling)

    def score(self, clip: np.ndarray, topk: int = 5) -> tuple[list[Candidate], np.ndarray]:
        """Candidates of a preprocessed clip, best first, and its embedding."""
        emb, seq = self.encode([clip])
        return self.rank(emb[0], seq[0], topk), emb[0]

    def rank(self, emb: np.ndarray, seq: np.ndarray, topk: int = 5) -> list[Candidate]:
        """Candidates of an encoded clip (embedding, DTW sequence), best first."""
        frames = self.bank.sequences.shape[1]
        cosine = self.bank.embeddings @ emb
        n = min(len(cosine), max(topk, self.cfg.dtw.topk if self.cfg.dtw.enabled else topk))
        top = np.argpartition(-cosine, n - 1)[:n]
        top = top[np.argsort(-cosine[top])]
        blended, distances = cosine[top].astype(np.float64), [None] * n
        if self.cfg.dtw.enabled:
            query = seq.astype(np.float64)
            for i, j in enumerate(top[: self.cfg.dtw.topk]):
                d = dtw_distance(query, self.bank.sequences[j]) / frames  # mean step distance, 0 to 2
                distances[i] = float(d)
                blended[i] = self.cfg.dtw.alpha * cosine[j] + (1 - self.cfg.dtw.alpha) * (1 - d / 2)
        order = np.argsort(-blended, kind="stable")
        return [Candidate(r + 1, str(self.bank.clip_ids[top[i]]), str(self.bank.sentences[top[i]]),
                          str(self.bank.texts[top[i]]), float(blended[i]), float(cosine[top[i]]), distances[i])
                for r, i in enumerate(order)]

    def decide(self, candidates: list[Candidate], emb: np.ndarray, motion: float,
               threshold: float | None = None, margin: float | None = None) -> Prediction:
        cfg = self.cfg
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
        if top in self._proto_index:
            sims = self.protos.vectors @ emb
            proto_sim = float(sims[self._proto_index[top]])
            nearest = str(self.protos.keys[int(sims.argmax())])
            proto_ok = nearest == top and proto_sim >= threshold - cfg.prototype_slack
        reason = ("low_similarity" if top_score < threshold else "ambiguous_top2" if gap < margin_needed
                  else "prototype_disagreement" if not proto_ok else "ok")
        text = next(c.text for c in candidates if c.sentence == top)
        return Prediction(reason == "ok", reason, top, text, float(probs[0]), motion, gap, proto_sim, candidates)


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
        p = engine.decide(cands, emb, pose.mean_motion(clip), threshold=-1.0, margin=0.0)
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


def calibrate_config(engine: InferenceEngine, held_out: ScanResult, prep: Preprocessor,
                     cfg: SentenceConfig) -> tuple[SentenceConfig, dict[str, Any]]:
    """A copy of ``cfg`` with thresholds calibrated on ``held_out`` clips (the engine adopts
    them too), and what the calibration found."""
    t, m, info = calibrate(engine, held_out.all_features(prep), [sentence_key(s) for s in held_out.samples],
                           cfg.engine.target_precision)
    cfg = cfg.model_copy(deep=True)
    cfg.engine.sim_threshold, cfg.engine.sim_margin = round(t, 4), round(m, 4)
    engine.cfg = cfg.engine
    return cfg, {"sim_threshold": t, "sim_margin": m, **info}


# ----------------------------------------------------------------------------- bundle


@dataclass
class SentenceBundle:
    config: SentenceConfig
    vocab: Vocabulary
    stats: FeatureStats
    model: SignTranslationModel
    bank: EmbeddingBank
    prototypes: Prototypes
    metrics: dict[str, Any]

    @property
    def prep(self) -> Preprocessor:
        return Preprocessor(self.stats.dim, self.config.data.pose_normalization)


def load_sentence_bundle(path: str | Path, device: str = "cpu") -> SentenceBundle:
    path = Path(path)
    if (path / "model.safetensors").is_file() and not (path / "bank.npz").is_file():
        raise SignlabError(f"{path} is a gloss recognition bundle, not a sentence model: use signlab recognize / evaluate")
    check_bundle_files(path, SENTENCE_BUNDLE_FILES, "sentence model")
    config = read_bundle_config(path, SentenceConfig)
    vocab, stats = Vocabulary.load(path / "vocab.json"), FeatureStats.load(path / "stats.npz")
    model = SignTranslationModel(stats.dim, len(vocab), config.model)
    load_weights(model, path, device, len(vocab))
    model.frontend.normalize.set_stats(stats.mean, stats.std)
    return SentenceBundle(config, vocab, stats, model.to(device).eval(), EmbeddingBank.load(path / "bank.npz"),
                          Prototypes.load(path / "prototypes.npz"), read_metrics(path))


def build_bank(encoder: Encoder, scan_result: ScanResult, prep: Preprocessor, cfg: SentenceConfig,
               subsampling: int) -> EmbeddingBank:
    emb, seq = encode_clips(encoder, scan_result.all_features(prep), cfg.data.seq_len, cfg.engine.dtw.frames, subsampling)
    samples = scan_result.samples
    return EmbeddingBank(emb, seq, np.array([sentence_key(s) for s in samples]), np.array([s.text for s in samples]),
                         np.array([s.id for s in samples]))


def build_sentence_bundle(out: Path, cfg: SentenceConfig, data, model: SignTranslationModel, samples: Sequence[Sample],
                          metrics: dict[str, Any]) -> Path:
    """Bank and prototypes from the training clips, thresholds calibrated on dev (when asked),
    dev and test evaluated, everything written to ``out``."""
    from signlab.inference.sentence_eval import evaluate_sentence_samples

    encoder = TorchEncoder(model)
    bank = build_bank(encoder, data.splits["train"], data.prep, cfg, model.subsampling)
    protos = bank.prototypes(cfg.engine.prototype_min_clips)
    engine = InferenceEngine(encoder, data.prep, bank, protos, cfg.engine, cfg.data.seq_len, model.subsampling)
    if cfg.engine.calibration == "dev":
        cfg, metrics["calibration"] = calibrate_config(engine, data.splits["dev"], data.prep, cfg)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    save_weights(model, out)
    bank.save(out / "bank.npz")
    protos.save(out / "prototypes.npz")
    bundle = SentenceBundle(cfg, data.vocab, data.stats, model, bank, protos, metrics)
    for split, rows in (("dev", data.splits["dev"].samples), ("test", [s for s in samples if s.split == "test"])):
        if rows:
            metrics[split] = evaluate_sentence_samples(bundle, engine, rows, split)
    write_metrics(out, metrics)
    return out



def reindex(run: str | Path, manifests: Sequence[str | Path], splits: Sequence[str], calibrate_on: str | None = None,
            features_dir: str | Path | None = None) -> dict[str, Any]:
    """Rebuild a bundle's bank and prototypes from the manifest rows of ``splits``; with
    ``calibrate_on``, choose the thresholds on that split's clips (those not in the bank)."""
    from signlab.data.features import report_exclusions, scan
    from signlab.data.manifest import read_manifests

    run = Path(run)
    bundle = load_sentence_bundle(run)
    samples = read_manifests(manifests, features_dir)
    rows = [s for s in samples if s.split in splits]
    if not rows:
        raise SignlabError(f"the manifest has no rows in the splits {', '.join(splits)}")
    prep, cfg = bundle.prep, bundle.config

    def check(s: Sample, x: np.ndarray):
        return None if s.text else ("no_text", f"{s.where}: no text")

    result = scan(rows, prep, check=check, desc="indexing")
    report_exclusions(result.excluded, "index", len(rows))
    encoder = TorchEncoder(bundle.model)
    bank = build_bank(encoder, result, prep, cfg, bundle.model.subsampling)
    protos = bank.prototypes(cfg.engine.prototype_min_clips)
    info: dict[str, Any] = {"clips": len(bank), "sentences": len(set(bank.sentences.tolist())), "prototypes": len(protos.keys)}
    if calibrate_on:
        in_bank = set(bank.clip_ids.tolist())
        held = scan([s for s in samples if s.split == calibrate_on and s.id not in in_bank and s.text], prep,
                    desc=f"calibrating on {calibrate_on}")
        engine = InferenceEngine(encoder, prep, bank, protos, cfg.engine, cfg.data.seq_len, bundle.model.subsampling)
        cfg, info["calibration"] = calibrate_config(engine, held, prep, cfg)
        cfg.save(run / "config.yaml")
    bank.save(run / "bank.npz")
    protos.save(run / "prototypes.npz")
    return info
