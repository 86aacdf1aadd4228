"""What a task is to the one training routine (:func:`signlab.training.run.train`), and what every
task shares: data prepared once, the optimizer and its schedule, the exclusions report.

A task (gloss recognition, sentence retrieval and translation; ESPnet2's ``AbsTask`` is the
model) says how to turn manifest rows into :class:`PreparedData`, which Lightning module and data
module train on it, which validation metric picks the best epoch, and how to finish a run into
a bundle. A third task is one more subclass, in one module.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import lightning as L
import torch

from signlab.config import (
    Config,
    RootConfig,
    SentenceConfig,
    TrainingConfig,
    parse_config,
)
from signlab.data.features import (
    Check,
    Exclusion,
    Preprocessor,
    ScanResult,
    resolve_kind,
    scan_split,
    write_exclusions,
)
from signlab.data.manifest import Sample
from signlab.data.stats import FeatureStats, RunningStats
from signlab.errors import SignlabError
from signlab.models import auto_subsampling
from signlab.vocab import Vocabulary

if TYPE_CHECKING:
    from signlab.inference.predictor import Predictor

C = TypeVar("C", Config, SentenceConfig)


@dataclass
class PreparedData:
    """Scanned, filtered splits, with the vocabulary and feature statistics built from train."""

    config: Any  # the task's config, with model.input_dim and model.subsampling resolved for this data
    prep: Preprocessor
    stats: FeatureStats
    vocab: Vocabulary
    splits: dict[str, ScanResult]

    @property
    def excluded(self) -> list[Exclusion]:
        return [e for r in self.splits.values() for e in r.excluded]

    def write_exclusions(self, path: Path) -> None:
        write_exclusions(path, self.excluded)


class TaskModule(L.LightningModule):
    """What every task's Lightning module shares: its config, saved as hyper-parameters (the
    statistics live in RUN/stats.npz), and the optimizer and schedule."""

    schema: ClassVar[type[RootConfig]]

    def __init__(self, config: dict[str, Any], vocab_tokens: list[str], input_dim: int, stats: FeatureStats):
        super().__init__()
        self.save_hyperparameters(ignore=["stats"])
        self.cfg = parse_config(config, schema=self.schema)

    def configure_optimizers(self):
        return configure_optimizers(self, self.cfg.training)


class Task(ABC):
    """One task's whole life: its config, data, model and training here; its bundle, predictor,
    evaluation and export through the methods below. Registered by name in :mod:`signlab.tasks`."""

    name: ClassVar[str]
    schema: ClassVar[type[RootConfig]]  # the task's config
    default_config: ClassVar[str]  # the built-in config a run starts from (``signlab train --task NAME``)
    monitor: ClassVar[str]  # the validation metric that picks the best epoch
    mode: ClassVar[str]  # "min" or "max"
    panels: ClassVar[tuple]  # training curves to plot (:func:`signlab.report.plot_training_curves`)
    module_class: ClassVar[type[TaskModule]]
    datamodule_class: ClassVar[type[L.LightningDataModule]]  # built from the PreparedData

    @abstractmethod
    def prepare(self, samples: Sequence[Sample], cfg: RootConfig, vocab: Vocabulary | None,
                stats: FeatureStats | None, scan_cache: Path | None = None) -> PreparedData:
        """Scan the rows training uses once; vocabulary and statistics from train unless given.
        ``scan_cache``: a folder for the scans of splits of loose files (:func:`scan_train_dev`)."""

    def module(self, data: PreparedData) -> TaskModule:
        return self.module_class(data.config.to_dict(), data.vocab.tokens, data.prep.dim, data.stats)

    def datamodule(self, data: PreparedData) -> L.LightningDataModule:
        return self.datamodule_class(data)

    def keep_best(self, data: PreparedData) -> int:
        """How many best epochs to keep as checkpoints (more than one: for averaging)."""
        return 1

    @abstractmethod
    def finish(self, out: Path, data: PreparedData, module: L.LightningModule, trainer: L.Trainer,
               samples: Sequence[Sample], metrics: dict[str, Any]) -> None:
        """Turn the trained ``module`` (best epoch loaded) into the bundle in ``out``: evaluate
        dev and test, and write every bundle file with ``metrics``."""

    @abstractmethod
    def load_predictor(self, run: Path, name: str, device: str = "cpu", backend: str = "torch") -> Predictor:
        """The bundle in ``run`` as a :class:`~signlab.inference.predictor.Predictor` (``backend``
        ``onnx``: its exported graphs on ONNX Runtime)."""

    @abstractmethod
    def evaluate(self, run: Path, samples: Sequence[Sample], split: str, output: Path | None = None,
                 backend: str = "torch", **options: Any) -> dict[str, Any]:
        """The bundle's metrics on ``samples`` (one split); ``output``: results JSON, with the
        per-clip answers beside it. ``options``: the task's evaluation options (a one-line error
        names any it does not take)."""

    @abstractmethod
    def export(self, run: Path) -> tuple[list[Path], float]:
        """The bundle's ONNX files, written into it, and their largest difference from PyTorch
        on ONNX Runtime."""

    @abstractmethod
    def summary(self, results: dict[str, Any]) -> str:
        """One line of a split's evaluation results, for the terminal."""

    def report_sections(self, run: Any, clips: dict[str, str] | None) -> list[tuple[str, str]]:
        """The report's sections (heading, HTML) of one of this task's runs
        (a :class:`signlab.report_page.Run`); ``clips``: from :meth:`report_clips`."""
        return []

    def report_clips(self, run: Any, manifest: Path) -> dict[str, str] | None:
        """Figures of a few clips of ``manifest`` through the run's model, for its report (None: none)."""
        return None

    def show(self, results: dict[str, Any]) -> Any:
        """What ``signlab evaluate`` prints: the results as JSON, unless the task has a table."""
        import json

        from rich.json import JSON

        return JSON(json.dumps(results))


def resolve_for_data(cfg: C, samples: Sequence[Sample]) -> C:
    """A copy of ``cfg`` with ``data.feature_kind`` (:func:`~signlab.data.features.resolve_kind`),
    ``model.input_dim`` (checked against the features when set) and ``model.subsampling: auto``
    (4 for pose/holistic-540, 1 otherwise) filled in."""
    kind = resolve_kind(samples, cfg.data.feature_kind)
    found = kind.dim
    if cfg.model.input_dim is not None and cfg.model.input_dim != found:
        raise SignlabError(
            f"the features have {found} dims per frame but model.input_dim is {cfg.model.input_dim}: "
            f"pass --set model.input_dim={found} (or null to take it from the data)"
        )
    cfg = cfg.model_copy(deep=True)
    cfg.model.input_dim, cfg.data.feature_kind = found, kind.name
    if cfg.model.subsampling == "auto":
        cfg.model.subsampling = auto_subsampling(kind.pose)
    return cfg


def scan_train_dev(rows: dict[str, Sequence[Sample]], cfg: RootConfig, check: Check,
                   stats: FeatureStats | None, report: bool = True, motion_floor: float = 0.0,
                   scan_cache: Path | None = None) -> tuple[Preprocessor, dict[str, ScanResult], FeatureStats]:
    """The train and dev rows of a resolved config scanned once with ``check`` and ``motion_floor``
    (exclusions reported unless ``report`` is False, an empty split an error): the kind's
    preprocessor, the splits, and the feature statistics (from train, unless given). A split scanned
    by several processes (``data.scan_workers``) is cached in ``scan_cache``/``scan-SPLIT.npz``."""
    prep = Preprocessor.for_config(cfg)
    running = RunningStats(prep.dim) if stats is None else None
    cache = int(cfg.data.cache_gb * 2**30)
    splits = {name: scan_split(r, prep, name, check=check, motion_floor=motion_floor,
                               stats=running if name == "train" else None, cache_bytes=cache, report=report,
                               workers=cfg.data.scan_workers, saved_scan=scan_cache and scan_cache / f"scan-{name}.npz")
              for name, r in rows.items()}
    return prep, splits, stats or running.finalize()


def warmup_cosine(warmup_steps: int, total_steps: int, cosine: bool = True):
    """LR factor: linear warm-up to 1, then half a cosine down to 0 (or flat)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def configure_optimizers(module: L.LightningModule, t: TrainingConfig) -> dict[str, Any]:
    """AdamW (PyTorch's fused kernel where it has one: one call per step instead of a dozen small
    ops per parameter tensor) and a per-step schedule: linear
    warm-up over ``warmup_epochs`` then cosine (or flat), or cosine warm restarts every
    ``scheduler_t0`` epochs (``scheduler: warm_restarts``)."""
    opt = torch.optim.AdamW(module.parameters(), lr=t.lr, weight_decay=t.weight_decay,
                            fused=module.device.type in ("cpu", "cuda"))
    total = int(module.trainer.estimated_stepping_batches)
    per_epoch = total / max(1, module.trainer.max_epochs or t.epochs)
    if t.scheduler == "warm_restarts":
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=t.scheduler_t0 * max(1, math.ceil(per_epoch)), T_mult=t.scheduler_tmult,
            eta_min=t.lr * t.scheduler_eta_min_scale)
    else:
        warmup = max(1, round(t.warmup_epochs * per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup, total, t.scheduler == "cosine"))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
