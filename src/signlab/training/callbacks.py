"""Callbacks: metrics appended to ``metrics.jsonl``, and checkpoints written atomically."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import RichProgressBar

from signlab.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file beside the target, fsync, then rename over it.

    A crash mid-write leaves the previous checkpoint intact (Lightning's own writer goes through
    a temporary file in /tmp and a move that is a plain copy across filesystems).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_write(path) as f:
            torch.save(checkpoint, f)


def _floats(metrics: dict[str, Any], step: bool) -> dict[str, float | None]:
    """Step lines take the ``*_step`` values (and lr), epoch lines everything else."""
    out = {}
    for name, value in metrics.items():
        if name.endswith("_step") != step and not (step and name in ("lr", "train_blank_ratio")):
            continue
        v = float(value)
        out[name.removesuffix("_step").removesuffix("_epoch")] = v if math.isfinite(v) else None
    return out


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
        if not trainer.is_global_zero or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= trainer.global_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.is_global_zero and self.every and trainer.global_step % self.every == 0:
            metrics = _floats(trainer.callback_metrics, step=True)
            self._write({"kind": "step", "epoch": trainer.current_epoch, "step": trainer.global_step, **metrics})

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            metrics = _floats(trainer.callback_metrics, step=False)
            self._write({
                "kind": "epoch", "epoch": trainer.current_epoch, "step": trainer.global_step,
                "time_s": round(time.time() - self.start, 1), **metrics,
            })



class CompactProgressBar(RichProgressBar):
    """The training bar with the two numbers worth watching: loss and dev WER."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        return {name: metrics[key] for name, key in (("loss", "train_loss_step"), ("dev_wer", "dev_wer")) if key in metrics}
