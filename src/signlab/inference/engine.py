"""The sentence engine (the SignTalk inference engine): a clip in, a sentence from the phrase book
or a refusal out. It composes the encoder and bank (:mod:`~signlab.inference.bank`) with the
pure ranking and decision of :mod:`~signlab.inference.decision`; thresholds come from
:mod:`~signlab.inference.calibration`. Also: loading a sentence bundle.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from signlab import pose
from signlab.config import EngineConfig, SentenceConfig
from signlab.data.features import (
    FeatureError,
    Preprocessor,
    ScanResult,
    check_features,
)
from signlab.data.stats import FeatureStats
from signlab.errors import SignlabError
from signlab.inference import decision
from signlab.inference.bank import (
    EmbeddingBank,
    EncodedClips,
    Encoder,
    OnnxEncoder,
    Prototypes,
    TorchEncoder,
    build_bank,
    encode_clips,
)
from signlab.inference.bundle import (
    load_weights,
    read_bundle_parts,
    read_metrics,
    require_task,
)
from signlab.inference.decision import Candidate, Prediction, no_signer
from signlab.kinds import config_kind
from signlab.models.sentence import SignTranslationModel
from signlab.vocab import Vocabulary

log = logging.getLogger(__name__)

SENTENCE_BUNDLE_FILES = ("config.yaml", "vocab.json", "stats.npz", "model.safetensors", "bank.npz", "prototypes.npz")


class InferenceEngine:
    def __init__(self, encoder: Encoder, prep: Preprocessor, bank: EmbeddingBank, prototypes: Prototypes,
                 cfg: EngineConfig, seq_len: int, subsampling: int = 1, glosses: Sequence[str] | None = None):
        if len(bank) == 0:
            raise SignlabError("the embedding bank is empty: index some clips first (signlab sentence index)")
        self.encoder, self.prep, self.bank, self.protos = encoder, prep, bank, prototypes
        self.cfg, self.seq_len, self.subsampling = cfg, seq_len, subsampling
        self.book = phrase_book(bank, glosses)

    @classmethod
    def build(cls, model: SignTranslationModel, clips: ScanResult, prep: Preprocessor, cfg: SentenceConfig) -> InferenceEngine:
        """An engine whose bank and prototypes are ``clips`` (scanned with ``prep``), on PyTorch."""
        encoder = TorchEncoder(model)
        bank = build_bank(encoder, clips, prep, cfg, model.subsampling)
        return cls(encoder, prep, bank, bank.prototypes(cfg.engine.prototype_min_clips), cfg.engine, cfg.data.seq_len,
                   model.subsampling, cfg.model.glosses)

    def with_config(self, cfg: EngineConfig) -> InferenceEngine:
        """The same engine (bank, prototypes, phrase book shared) deciding with ``cfg`` (e.g.
        calibrated thresholds)."""
        new = copy.copy(self)
        new.cfg = cfg
        return new

    @classmethod
    def load(cls, run: str | Path, backend: str = "torch", device: str = "cpu") -> InferenceEngine:
        return cls.from_bundle(load_sentence_bundle(run, device), run, backend, device)

    @classmethod
    def from_bundle(cls, bundle: SentenceBundle, run: str | Path, backend: str = "torch",
                    device: str = "cpu") -> InferenceEngine:
        """The engine of a loaded bundle; ``backend="onnx"`` runs ``RUN/encoder.onnx``."""
        encoder: Encoder = TorchEncoder(bundle.model, device) if backend == "torch" else OnnxEncoder(Path(run) / "encoder.onnx")
        return cls(encoder, bundle.prep, bundle.bank, bundle.prototypes, bundle.config.engine, bundle.config.data.seq_len,
                   bundle.model.subsampling, bundle.config.model.glosses)

    def predict(self, features: np.ndarray, topk: int = 5, where: str = "query") -> Prediction:
        """Decide on one raw clip (T, D) as the extractor wrote it. Features that are not (T, D)
        finite numbers are a :class:`FeatureError` naming ``where``; a clip in which no signer
        is seen is rejected as ``no_signer``."""
        return self.predict_clips([self.prepare(features, where)], topk)[0]

    def prepare(self, features: np.ndarray, where: str = "query") -> np.ndarray | None:
        """A raw clip checked and preprocessed; None when no signer is seen in it."""
        raw = check_features(features, where, self.prep.dim)
        try:
            return self.prep(raw, where)
        except FeatureError as exc:
            if exc.kind != "no_body":
                raise
            return None

    def predict_clip(self, clip: np.ndarray, topk: int = 5) -> Prediction:
        """Decide on one preprocessed clip."""
        return self.predict_clips([clip], topk)[0]

    def predict_clips(self, clips: Sequence[np.ndarray | None], topk: int = 5) -> list[Prediction]:
        """Decide on preprocessed clips, encoded in batches; None (from :meth:`prepare`: no signer
        seen) is rejected as ``no_signer``."""
        seen = [c for c in clips if c is not None]
        decided = iter(self.decide_encoded(seen, self.encode(seen), topk) if seen else [])
        return [no_signer() if c is None else next(decided) for c in clips]

    def decide_encoded(self, clips: Sequence[np.ndarray], enc: EncodedClips, topk: int = 5, **decide: Any) -> list[Prediction]:
        """The decision on each of ``clips`` encoded as ``enc`` (``decide``: :meth:`decide`'s overrides)."""
        return [self.decide(self.rank(enc, i, topk, decide.get("exclude")), enc.embeddings[i],
                            pose.mean_motion(c, self.prep.is_pose), **decide) for i, c in enumerate(clips)]

    def encode(self, clips: Sequence[np.ndarray], keep_context: bool = False) -> EncodedClips:
        """Embeddings, DTW sequences (resampled as the bank's were), gloss log-probabilities and,
        with ``keep_context``, the text decoder's input, of preprocessed clips."""
        return encode_clips(self.encoder, clips, self.seq_len, self.bank.sequences.shape[1], self.subsampling,
                            keep_context=keep_context)

    def score(self, clip: np.ndarray, topk: int = 5) -> tuple[list[Candidate], np.ndarray]:
        """Candidates of a preprocessed clip, best first, and its embedding."""
        enc = self.encode([clip])
        return self.rank(enc, 0, topk), enc.embeddings[0]

    def rank(self, enc: EncodedClips, index: int, topk: int = 5, exclude: str | None = None) -> list[Candidate]:
        """Candidates of encoded clip ``index``, best first (``exclude``: as if the bank did not
        hold that sentence)."""
        fit = None
        if self.book is not None and enc.gloss_log_probs is not None:
            def fit(sentences: list[str]) -> np.ndarray:
                return decision.gloss_fit(enc.gloss_log_probs[index], [self.book[s] for s in sentences])
        return decision.rank(self.bank, self.cfg, enc.embeddings[index], enc.sequences[index], topk, exclude, fit)

    def decide(self, candidates: list[Candidate], emb: np.ndarray, motion: float, threshold: float | None = None,
               margin: float | None = None, exclude: str | None = None) -> Prediction:
        return decision.decide(candidates, emb, motion, self.protos, self.cfg, threshold, margin, exclude)


def phrase_book(bank: EmbeddingBank, glosses: Sequence[str] | None) -> dict[str, list[int]] | None:
    """Each bank sentence's glosses as gloss-head indices (1-based), the gloss evidence; None
    without a gloss head, or when a bank sentence has no glosses or one the head does not know
    (then, logged, the engine ranks without gloss evidence)."""
    book = bank.phrase_glosses()
    if not glosses or not book:
        return None
    index = {g: i + 1 for i, g in enumerate(glosses)}
    bare = sorted(set(bank.sentences.tolist()) - set(book))
    unknown = sorted({g for phrase in book.values() for g in phrase} - set(index))
    if bare or unknown:
        log.warning("no gloss evidence: %s", f"{len(bare)} phrase-book sentence(s) without glosses (e.g. {bare[0]})" if bare
                    else f"the gloss head does not know {len(unknown)} phrase-book gloss(es) (e.g. {unknown[0]}): retrain "
                         "with them to use it")
        return None
    return {sentence: [index[g] for g in phrase] for sentence, phrase in book.items()}

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
        return Preprocessor.for_config(self.config)


def load_sentence_bundle(path: str | Path, device: str = "cpu") -> SentenceBundle:
    path = Path(path)
    require_task(path, "sentence", "sentence model")
    config, vocab, stats = read_bundle_parts(path, SENTENCE_BUNDLE_FILES, "sentence model", SentenceConfig)
    model = SignTranslationModel(stats.dim, len(vocab), config.model, config_kind(config).pose)
    load_weights(model, path, device, len(vocab))
    model.frontend.normalize.set_stats(stats.mean, stats.std)
    return SentenceBundle(config, vocab, stats, model.to(device).eval(), EmbeddingBank.load(path / "bank.npz"),
                          Prototypes.load(path / "prototypes.npz"), read_metrics(path))
