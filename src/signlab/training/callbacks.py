"""Callbacks: metrics appended to ``metrics.jsonl``, and checkpoints written atomically."""

from __future__ import annotations

import json
import math
import pickle
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

from signlab.atomic import atomic_write
from signlab.errors import SignlabError


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A Lightning checkpoint, read with torch's weights-only unpickler whatever the environment
    says (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` only changes calls that leave ``weights_only``
    unset), so a crafted file cannot run code. Anything wrong with it is one SignlabError."""
    path = Path(path)
    what = f"checkpoint {path}"
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged bytes make torch.load raise nearly anything
        text = str(exc)
        if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in text:  # the unpickler met a callable
            raise SignlabError(f"{what} holds objects other than tensors and plain values, so it was not loaded "
                               "(a checkpoint like this can run code when unpickled): signlab only resumes from "
                               "checkpoints it wrote") from None
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
        raise SignlabError(f"{what} is damaged or truncated ({first[:160]}): delete it and train again, "
                           "or restore a copy") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise SignlabError(f"{what} is not a Lightning checkpoint written by signlab (no state_dict)")
    return checkpoint


def average_checkpoints(paths: list[str | Path]) -> dict[str, torch.Tensor]:
    """The mean of the checkpoints' weights (icefall's ``--avg``); tensors that are not floating
    point (counters, masks) are taken from the first."""
    states = [load_checkpoint(p)["state_dict"] for p in paths]
    return {k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}


class TopCheckpoints(ModelCheckpoint):
    """The N best epochs (``checkpoints/top-EEE.ckpt``), kept for checkpoint averaging. A class of
    its own so that its state in a checkpoint is not confused with the ``best`` one's on resume."""

    def __init__(self, dirpath: Path, monitor: str, mode: str, n: int):
        super().__init__(dirpath, "top-{epoch:03d}", monitor=monitor, mode=mode, save_top_k=n,
                         auto_insert_metric_name=False, enable_version_counter=False)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all, and read back safely (:func:`load_checkpoint`).

    A crash mid-write leaves the previous checkpoint intact (Lightning's own writer goes through
    a temporary file in /tmp and a move that is a plain copy across filesystems).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_write(path) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location if map_location is not None else "cpu")


def _floats(metrics: dict[str, Any], step: bool) -> dict[str, float | None]:
    """Step lines take the ``*_step`` values, epoch lines everything else."""
    out = {}
    for name, value in metrics.items():
        if name.endswith("_step") != step and not (step and name == "train_blank_ratio"):
            continue
        v = float(value)
        out[name.removesuffix("_step").removesuffix("_epoch")] = v if math.isfinite(v) else None
    return out


def _lr(trainer: L.Trainer) -> float:
    return trainer.optimizers[0].param_groups[0]["lr"]


class JsonlMetrics(L.Callback):
    """Appends one JSON line per ``every_n_steps`` training steps and one per epoch.

    On resume, lines from after the restored step (the unfinished epoch) are dropped first, so
    the file describes the run that actually continues.
    """

    def __init__(self, path: str | Path, every_n_steps: int = 10):
        self.path, self.every = Path(path), every_n_steps
        self.start = time.time()

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """On resume: drop lines past the restored step, and let time go on from the last kept epoch."""
        if not trainer.is_global_zero or not self.path.exists():
            return
        kept = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        kept = [r for r in kept if r["step"] <= trainer.global_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elapsed = max((r.get("time_s", 0.0) for r in kept if r["kind"] == "epoch"), default=0.0)
        self.start = time.time() - elapsed

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.is_global_zero and self.every and trainer.global_step % self.every == 0:
            metrics = {**_floats(trainer.callback_metrics, step=True), "lr": _lr(trainer)}
            self._write({"kind": "step", "epoch": trainer.current_epoch, "step": trainer.global_step, **metrics})

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            metrics = {**_floats(trainer.callback_metrics, step=False), "lr": _lr(trainer)}
            self._write({
                "kind": "epoch", "epoch": trainer.current_epoch, "step": trainer.global_step,
                "time_s": round(time.time() - self.start, 1), **metrics,
            })



class CompactProgressBar(RichProgressBar):
    """The training bar with the two numbers worth watching: loss and dev WER."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        return {name: metrics[key] for name, key in (("loss", "train_loss_step"), ("dev_wer", "dev_wer")) if key in metrics}
