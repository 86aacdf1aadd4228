"""One interface over every kind of bundle: load it, prepare a raw clip, predict a batch of clips,
answer in plain JSON values. The service, live recognition and ``signlab predict`` use this, never
a task's own classes; each task defines its predictor beside its training, and
:func:`signlab.tasks.load_predictor` builds the one a bundle's task gives.

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
from pydantic import BaseModel

from signlab.data.features import Preprocessor
from signlab.kinds import FeatureKind


class Answer(BaseModel):
    """What every answer of the service carries; a task's answer schema adds its own fields."""

    model: str
    task: str
    frames: int


class Predictor(ABC):
    task: str
    answer_schema: type[Answer] = Answer  # the service's answer body (OpenAPI), with :meth:`predict`'s fields
    partial_results: bool = False  # live: answers on a clip still growing are worth showing (a gloss prefix)

    def __init__(self, name: str, prep: Preprocessor, config: Any, vocab_size: int, metrics: dict[str, Any]):
        self.name, self.prep, self.config, self.vocab_size, self.metrics = name, prep, config, vocab_size, metrics

    @property
    def kind(self) -> FeatureKind:
        return self.prep.kind

    def read(self, path: str | Path) -> np.ndarray:
        """A feature file of the bundle's kind, checked (a :class:`~signlab.data.features.FeatureError` names it)."""
        return self.prep.read(path)

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

    def describe(self, answer: dict[str, Any]) -> str:
        """One line of an answer, for people (``signlab live``)."""
        return str(answer.get("text") or "?")
