"""The tasks signlab knows, by name: the one place that maps a name to its
:class:`~signlab.training.task.Task`. Everything that meets a config or a bundle (the CLI, the
service, live recognition, export, evaluation, training) asks here; a bundle's ``config.yaml``
names its task and is read first, so nothing guesses it from the files beside it.

A new task is one module with a ``Task`` subclass (and its config schema) plus one line in
:data:`TASKS`. Modules are imported on first use, so naming a task costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signlab.config import read_yaml_mapping, task_of
from signlab.errors import SignlabError

if TYPE_CHECKING:
    from signlab.inference.predictor import Predictor
    from signlab.training.task import Task

TASKS = {
    "gloss": "signlab.training.gloss:GlossTask",  # continuous gloss recognition (CTC + attention)
    "sentence": "signlab.training.sentence:SentenceTask",  # sentence retrieval with decisions, and translation
    "isolated": "signlab.training.isolated:IsolatedTask",  # one sign a clip: a pooled classifier
}


def get_task(name: str) -> Task:
    """The task called ``name``; a one-line error listing the known ones otherwise."""
    if name not in TASKS:
        raise SignlabError(f"unknown task {name!r}: signlab knows {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def task_of_config(data: dict[str, Any]) -> Task:
    """The task a config (as read from YAML) trains."""
    return get_task(task_of(data))


def task_of_file(path: str | Path) -> Task:
    """The task of a config file."""
    return task_of_config(read_yaml_mapping(Path(path), "config"))


def task_of_bundle(path: str | Path) -> Task:
    """The task of a bundle or run folder, from its ``config.yaml``."""
    from signlab.inference.bundle import bundle_task

    return get_task(bundle_task(path))


def load_predictor(run: str | Path, name: str | None = None, device: str = "cpu", backend: str = "torch") -> Predictor:
    """The predictor of any bundle, built by the task its ``config.yaml`` names; ``backend``
    ``onnx`` runs the bundle's exported graphs (``signlab export``) on ONNX Runtime."""
    run = Path(run)
    return task_of_bundle(run).load_predictor(run, name or run.name, device, backend)


def export_bundle(run: str | Path, console: Callable[[str], None] = print) -> list[Path]:
    """``signlab export RUN``: the ONNX files of any bundle (its task exports them), written into
    it and checked against PyTorch on ONNX Runtime."""
    run = Path(run)
    paths, diff = task_of_bundle(run).export(run)
    console(f"{', '.join(str(p) for p in paths)}: max difference from PyTorch {diff:.1e} (ONNX Runtime)")
    return paths
