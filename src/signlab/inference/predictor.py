"""One interface over every kind of bundle: load it, prepare a raw clip, predict a batch of clips,
answer in plain JSON values. The service (and anything else that serves both tasks) uses this,
never the task's own classes.

``prepare`` runs per request (checks and preprocessing, so a bad clip fails alone, with a
:class:`~signlab.data.features.FeatureError` naming it); ``predict`` runs on a batch of prepared
clips, so requests can be gathered into one model call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from signlab.inference.engine import (
    InferenceEngine,
    SentenceBundle,
    load_sentence_bundle,
)
from signlab.inference.bundle import bundle_task
from signlab.inference.recognizer import Recognizer
from signlab.inference.sentence_eval import translate_clips
from signlab.kinds import FeatureKind


class Predictor(ABC):
    task: str

    def __init__(self, name: str, kind: FeatureKind, config: Any, vocab_size: int, metrics: dict[str, Any]):
        self.name, self.kind, self.config, self.vocab_size, self.metrics = name, kind, config, vocab_size, metrics

    def info(self) -> dict[str, Any]:
        """What a client may want to know before sending clips."""
        splits = {k: v for k, v in self.metrics.items() if k in ("dev", "test")}
        return {"name": self.name, "task": self.task, "feature_kind": self.kind.name, "feature_dim": self.kind.dim,
                "vocabulary_size": self.vocab_size, "metrics": splits}

    @property
    def max_frames(self) -> int | None:
        """The longest clip the model reads as it is (longer ones are resampled); None: any length."""
        return None

    @abstractmethod
    def prepare(self, features: np.ndarray, where: str) -> Any:
        """A raw (T, D) clip checked and preprocessed."""

    @abstractmethod
    def predict(self, clips: Sequence[Any]) -> list[dict[str, Any]]:
        """Answers for prepared clips, one model call for all of them."""


class GlossPredictor(Predictor):
    task = "gloss"

    def __init__(self, name: str, recognizer: Recognizer):
        b = recognizer.bundle
        super().__init__(name, recognizer.prep.kind, b.config, len(b.vocab), b.metrics)
        self.recognizer = recognizer

    @property
    def max_frames(self) -> int:
        return self.config.data.max_frames

    def prepare(self, features: np.ndarray, where: str) -> np.ndarray:
        return self.recognizer.prepare(features, where)

    def predict(self, clips: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        out = []
        for t in self.recognizer.transcribe_prepared(clips):
            out.append({"glosses": t.glosses, "text": " ".join(t.glosses), "decoding": self.recognizer.decoding.method,
                        "ctc_segments": [{"gloss": g, "start_frame": a, "end_frame": b} for g, a, b in t.ctc_segments]})
        return out


class SentencePredictor(Predictor):
    task = "sentence"

    def __init__(self, name: str, bundle: SentenceBundle, engine: InferenceEngine, topk: int = 5):
        super().__init__(name, bundle.prep.kind, bundle.config, len(bundle.vocab), bundle.metrics)
        self.bundle, self.engine, self.topk = bundle, engine, topk

    def prepare(self, features: np.ndarray, where: str) -> np.ndarray | None:
        return self.engine.prepare(features, where)  # None: no signer in the clip

    def predict(self, clips: Sequence[np.ndarray | None]) -> list[dict[str, Any]]:
        seen = [c for c in clips if c is not None]
        texts = iter(translate_clips(self.bundle, seen) if seen else [])
        return [{**p.as_dict(), "translation": None if c is None else next(texts)}
                for c, p in zip(clips, self.engine.predict_clips(clips, self.topk))]


def load_predictor(run: str | Path, name: str | None = None, device: str = "cpu", backend: str = "torch") -> Predictor:
    """The predictor of a gloss or sentence bundle (its ``config.yaml`` says which); ``backend``
    ``onnx`` runs the bundle's exported graphs (``signlab export``) on ONNX Runtime."""
    run = Path(run)
    name = name or run.name
    if bundle_task(run) == "sentence":
        bundle = load_sentence_bundle(run, device)
        return SentencePredictor(name, bundle, InferenceEngine.from_bundle(bundle, run, backend, device))
    return GlossPredictor(name, Recognizer.load(run, device, backend))
