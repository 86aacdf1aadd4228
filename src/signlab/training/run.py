"""The one training routine (``signlab train``, ``signlab sentence train``): manifest + config ->
a run folder with checkpoints, metrics and a bundle, for any :class:`~signlab.training.task.Task`.

RUN/ holds ``checkpoints/{best,latest}.ckpt`` (written atomically), ``metrics.jsonl`` and
``training_history.csv``, ``excluded.csv`` (rows left out and why), ``curves.png``, and the
bundle files that ``signlab evaluate`` / :class:`signlab.Recognizer` or the sentence engine load.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from signlab.config import (
    RootConfig,
    TrainingConfig,
    builtin_config,
    load_config,
)
from signlab.data.manifest import read_manifests
from signlab.data.stats import FeatureStats
from signlab.errors import Interrupted, SignlabError
from signlab.report import plot_training_curves, write_history_csv
from signlab.training.callbacks import (
    AtomicCheckpointIO,
    CompactProgressBar,
    JsonlMetrics,
    TopCheckpoints,
    load_checkpoint,
)
from signlab.tasks import get_task
from signlab.vocab import Vocabulary

log = logging.getLogger(__name__)

warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")  # train_* are per-rank
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def is_launcher_process() -> bool:
    """False in a DDP run's other processes, which must not touch shared files: those Lightning's
    launcher starts (``LOCAL_RANK`` / ``NODE_RANK``), and every task but the first that ``srun``
    starts on a SLURM cluster (``SLURM_PROCID``)."""
    return all(os.environ.get(v, "0") == "0" for v in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def check_run_dir(out: Path, resume: bool) -> Path:
    """The checkpoint to resume from (or a new run's path for it); refuses to overwrite a run."""
    latest = out / "checkpoints" / "latest.ckpt"
    if resume and not latest.is_file():
        raise SignlabError(f"nothing to resume in {out}: {latest} not found")
    if resume:
        load_checkpoint(latest)  # a damaged or crafted checkpoint is refused before any work starts
    if not resume and is_launcher_process() and (latest.exists() or (out / "model.safetensors").exists()):
        raise SignlabError(f"{out} already holds a training run: pass --resume to continue it, or choose another --out")
    return latest


def make_trainer(t: TrainingConfig, out: Path, monitor: str, mode: str, progress: bool,
                 keep_best: int = 1) -> tuple[L.Trainer, ModelCheckpoint]:
    """Lightning trainer with signlab's callbacks: checkpoints ``best`` (by ``monitor``) and
    ``latest`` written atomically (and the ``keep_best`` best epochs, when more than one, for
    averaging), metrics.jsonl, early stopping, a compact progress bar (on a terminal only: in a
    log file it is noise)."""
    # Lightning sets its loggers to INFO when first imported; keep them to warnings unless -v
    level = logging.INFO if logging.getLogger("signlab").getEffectiveLevel() <= logging.DEBUG else logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(level)
    progress = progress and sys.stdout.isatty()
    best = ModelCheckpoint(out / "checkpoints", "best", monitor=monitor, mode=mode, enable_version_counter=False)
    last = ModelCheckpoint(out / "checkpoints", "latest", enable_version_counter=False, save_on_train_epoch_end=True)
    callbacks: list[L.Callback] = [best, last, JsonlMetrics(out / "metrics.jsonl", t.log_every_n_steps)]
    if keep_best > 1:
        callbacks.append(TopCheckpoints(out / "checkpoints", monitor, mode, keep_best))
    if progress:
        callbacks.append(CompactProgressBar(leave=False))
    if t.loggers:
        callbacks.append(LearningRateMonitor("step"))
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(monitor, patience=t.early_stopping_patience, mode=mode, check_on_train_epoch_end=False))
    trainer = L.Trainer(
        max_epochs=t.epochs, max_steps=t.max_steps, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=t.strategy, precision=t.precision, gradient_clip_val=t.gradient_clip,
        accumulate_grad_batches=t.accumulate_grad_batches, callbacks=callbacks, logger=make_loggers(t.loggers, out, t.log_every_n_steps),
        plugins=[AtomicCheckpointIO()], use_distributed_sampler=False, default_root_dir=out,
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=t.log_every_n_steps,
    )
    return trainer, best


def make_loggers(names: Sequence[str], out: Path, flush_every: int = 10) -> list:
    """Lightning's own loggers under the run folder, a ``version_N`` folder each time the run is
    started or resumed (as Lightning does: nothing earlier is overwritten); MLflow and W&B only when
    installed, and a clear error when asked for but not."""
    import importlib.util

    from lightning.pytorch import loggers

    made = []
    for name in names:
        package = {"mlflow": "mlflow", "wandb": "wandb"}.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise SignlabError(f"training.loggers has {name}, but {package} is not installed: pip install {package}, "
                               f"or drop it from training.loggers")
        if name == "csv":
            made.append(loggers.CSVLogger(out, name="csv", flush_logs_every_n_steps=flush_every))
        elif name == "tensorboard":
            made.append(loggers.TensorBoardLogger(out, name="tensorboard", default_hp_metric=False))
        elif name == "mlflow":
            made.append(loggers.MLFlowLogger("signlab", run_name=out.name, tracking_uri=(out / "mlruns").as_uri()))
        elif name == "wandb":
            made.append(loggers.WandbLogger(name=out.name, save_dir=str(out), project="signlab"))
    return made


# what may change when a run is resumed: how long and where it runs, never what it trains
RESUMABLE_KEYS = ("training.epochs", "training.max_steps", "training.early_stopping_patience", "training.collapse_patience",
                  "training.num_workers", "training.loggers",
                  "training.accelerator", "training.devices", "training.num_nodes", "training.strategy",
                  "training.log_every_n_steps")


def run_config(out: Path, config: Path | None, overrides: Sequence[str], resume: bool, builtin: str,
               schema: type[RootConfig]) -> RootConfig:
    """The config of a new run (``config`` or the built-in one, with ``overrides``), or of a
    resumed one: its own ``config.yaml``, where only :data:`RESUMABLE_KEYS` may be overridden."""
    if not resume:
        return load_config(config or builtin_config(builtin), overrides, schema)
    if config is not None:
        raise SignlabError(f"--resume continues {out} with its own config.yaml, so --config {config} would be ignored: "
                           f"drop it (with --set you may change {', '.join(RESUMABLE_KEYS)})")
    fixed = [o for o in overrides if o.partition("=")[0].strip() not in RESUMABLE_KEYS]
    if fixed:
        raise SignlabError(f"--set {', '.join(fixed)}: a resumed run keeps what it trains; only "
                           f"{', '.join(RESUMABLE_KEYS)} may change. Start a new run (another --out) to change the rest")
    return load_config(out / "config.yaml", overrides, schema, saved=True)


def run_inputs(out: Path, resume: bool) -> tuple[Vocabulary | None, FeatureStats | None]:
    """A resumed run's vocabulary and statistics (a new run builds its own from train)."""
    return (Vocabulary.load(out / "vocab.json"), FeatureStats.load(out / "stats.npz")) if resume else (None, None)


def save_run_inputs(out: Path, cfg, vocab: Vocabulary, stats: FeatureStats) -> None:
    """Config (resolved), vocabulary and statistics, written before training by the launcher only."""
    if is_launcher_process():
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.yaml")
        vocab.save(out / "vocab.json")
        stats.save(out / "stats.npz")


def fit(trainer: L.Trainer, best: ModelCheckpoint, module: L.LightningModule, datamodule: L.LightningDataModule,
        latest: Path, resume: bool) -> dict | None:
    """Train (from ``latest`` when resuming); on the main process, put the best checkpoint's
    weights into ``module`` and return what the run did. Other DDP processes get None."""
    started = time.time()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(latest) if resume else None)
    except SystemExit:
        if not trainer.interrupted:
            raise
        raise Interrupted(  # Lightning turns Ctrl-C into a graceful stop and sys.exit(1)
            f"training interrupted in epoch {trainer.current_epoch}; "
            + (f"{latest} holds the last finished epoch: run the same command with --resume to continue"
               if latest.is_file() else "no epoch had finished, so there is nothing to resume: start it again")
        ) from None
    if not trainer.is_global_zero:
        return None
    checkpoint = load_checkpoint(best.best_model_path or latest)
    module.load_state_dict(checkpoint["state_dict"])
    return {"best_epoch": checkpoint["epoch"], "epochs": trainer.current_epoch,
            "train_time_s": round(time.time() - started, 1),
            "parameters": sum(p.numel() for p in module.model.parameters())}


def train(
    manifests: Sequence[str | Path],
    cfg: RootConfig,
    out: str | Path,
    *,
    resume: bool = False,
    features_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Train the model ``cfg`` describes, for the task it names (``cfg.task``); returns the run
    folder, a loadable bundle once done."""
    task = get_task(cfg.task)
    out = Path(out)
    latest = check_run_dir(out, resume)
    L.seed_everything(cfg.training.seed, workers=True, verbose=False)
    samples = read_manifests(manifests, features_dir)
    vocab, stats = run_inputs(out, resume)
    data = task.prepare(samples, cfg, vocab, stats, scan_cache=out)
    save_run_inputs(out, data.config, data.vocab, data.stats)
    if is_launcher_process():
        data.write_exclusions(out / "excluded.csv")
    trainer, best = make_trainer(data.config.training, out, task.monitor, task.mode, progress, task.keep_best(data))
    module = task.module(data)
    metrics = fit(trainer, best, module, task.datamodule(data), latest, resume)
    if metrics is None:
        return out
    task.finish(out, data, module, trainer, samples, metrics)
    plot_training_curves(out / "metrics.jsonl", out / "curves.png", task.panels)
    write_history_csv(out / "metrics.jsonl", out / "training_history.csv")
    return out
