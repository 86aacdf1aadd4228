"""Model bundles: a folder with config.yaml, vocab.json, stats.npz, model.safetensors, metrics.json.

Loading one reads YAML, JSON, NumPy and safetensors files only; no code is unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from signlab.atomic import load_json, write_bytes, write_json
from signlab.config import Config, RootConfig, as_saved, parse_config, read_yaml_mapping, task_of
from signlab.data.stats import FeatureStats
from signlab.errors import SignlabError
from signlab.kinds import config_kind
from signlab.models import build_recognizer
from signlab.vocab import Vocabulary

BUNDLE_FILES = ("config.yaml", "vocab.json", "stats.npz", "model.safetensors")
C = TypeVar("C", bound=RootConfig)


@dataclass
class Bundle:
    config: Config
    vocab: Vocabulary
    stats: FeatureStats
    model: nn.Module  # or an OnnxGlossModel: the same calls (models.interface.GlossModel)
    metrics: dict[str, Any] = field(default_factory=dict)


def save_bundle(path: str | Path, config: RootConfig, vocab: Vocabulary, stats: FeatureStats, model: nn.Module,
                metrics: dict[str, Any] | None = None, extras: dict[str, Any] | None = None) -> Path:
    """Write a bundle of any task: config, vocabulary, statistics, weights, the task's ``extras``
    (file name -> an object with ``save(path)``, e.g. a sentence bundle's bank) and, last, the
    metrics. Each file is written whole or not at all."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config.save(path / "config.yaml")
    vocab.save(path / "vocab.json")
    stats.save(path / "stats.npz")
    save_weights(model, path)
    for name, value in (extras or {}).items():
        value.save(path / name)
    write_metrics(path, metrics or {})
    return path


def save_weights(model: nn.Module, folder: Path) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes(folder / "model.safetensors", safetensors_bytes(tensors))


def load_weights(model: nn.Module, folder: Path, device: str | torch.device = "cpu", vocab_size: int | None = None) -> None:
    """``folder/model.safetensors`` into ``model``. A damaged file, or one that does not fit the
    config (or the vocabulary, when ``vocab_size`` is given), is a clear error."""
    path = folder / "model.safetensors"
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SignlabError(f"{path} is not a readable safetensors file ({exc}): the bundle is damaged; "
                           "copy it again, or rebuild it from the run's checkpoints") from None
    if hasattr(model, "upgrade_keys"):  # weights from before a module was renamed
        tensors = model.upgrade_keys(tensors)
    expected = model.state_dict()
    wrong = {k: (tuple(v.shape), tuple(expected[k].shape)) for k, v in tensors.items()
             if k in expected and v.shape != expected[k].shape}
    if vocab_size is not None:
        for file_shape, model_shape in wrong.values():
            if model_shape[0] == vocab_size and file_shape[1:] == model_shape[1:]:
                raise SignlabError(f"{folder}/vocab.json has {vocab_size} tokens but the weights in model.safetensors "
                                   f"were trained with {file_shape[0]}: the vocabulary belongs to another run")
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if wrong or missing or unexpected:
        details = [f"{k}: file {a} vs config {b}" for k, (a, b) in list(wrong.items())[:3]]
        details += [f"missing {', '.join(missing[:3])}"] if missing else []
        details += [f"unexpected {', '.join(unexpected[:3])}"] if unexpected else []
        raise SignlabError(f"{path} does not match {folder}/config.yaml ({'; '.join(details)}): "
                           "the weights and the config come from different runs")
    model.load_state_dict(tensors)


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    write_json(folder / "metrics.json", metrics)


def read_metrics(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    return load_json(path, "metrics file") if path.is_file() else {}


def read_bundle_config(folder: Path, schema: type[C]) -> C:
    """``folder/config.yaml`` validated against ``schema``. Every section must be there: a bundle
    missing one (``decoding``, ``extract``...) would otherwise run silently with defaults that are
    not what it was trained with."""
    path = folder / "config.yaml"
    data = read_yaml_mapping(path, "bundle config")
    missing = [name for name in schema.model_fields if name not in data]
    if missing:
        raise SignlabError(f"{path} lacks the section(s) {', '.join(missing)}: signlab writes every section when it "
                           "saves a bundle, so this file was edited or comes from elsewhere; restore it from the run "
                           f"folder, or add the section(s) (defaults: `signlab` built-in config)")
    return parse_config(as_saved(data, schema), str(path), schema)


def check_bundle_files(path: Path, files: tuple[str, ...], kind: str) -> None:
    if not path.exists():
        raise SignlabError(f"{path} is not a {kind} bundle: it does not exist (give the run folder training wrote)")
    if not path.is_dir():
        raise SignlabError(f"{path} is not a {kind} bundle: a bundle is the folder training wrote, not a file")
    missing = [f for f in files if not (path / f).is_file()]
    if missing:
        hint = " (training writes the bundle when it ends; checkpoints/ holds the run so far)" if (path / "checkpoints").is_dir() else ""
        raise SignlabError(f"{path} is not a {kind} bundle: missing {', '.join(missing)}{hint}")


def read_bundle_parts(path: Path, files: tuple[str, ...], kind: str, schema: type[C]) -> tuple[C, Vocabulary, FeatureStats]:
    """A bundle's config, vocabulary and statistics, checked against each other: what every kind of
    bundle has (``files`` must all be there)."""
    check_bundle_files(path, files, kind)
    config = read_bundle_config(path, schema)
    vocab, stats = Vocabulary.load(path / "vocab.json"), FeatureStats.load(path / "stats.npz")
    if config.model.input_dim != stats.dim:
        raise SignlabError(f"{path}: config says input_dim {config.model.input_dim} but stats.npz has {stats.dim} dims")
    return config, vocab, stats


def bundle_task(path: str | Path, kind: str = "model") -> str:
    """What a bundle (or run folder) does, as its ``config.yaml`` says: ``gloss`` or ``sentence``.
    Read first, before anything is loaded; the files in the folder are never used to guess it."""
    path = Path(path)
    check_bundle_files(path, ("config.yaml",), kind)
    return task_of(read_yaml_mapping(path / "config.yaml", "config"))


def require_task(path: Path, task: str, kind: str) -> None:
    """A one-line error when the bundle at ``path`` is not one of ``task``, saying what reads it."""
    found = bundle_task(path, kind)
    if found != task:
        use = {"gloss": "signlab recognize / evaluate", "sentence": "signlab translate / sentence predict"}
        raise SignlabError(f"{path} is a {found} model bundle, not a {task} one: use {use.get(found, 'its task')}")


def load_bundle(path: str | Path, device: str | torch.device = "cpu", backend: str = "torch") -> Bundle:
    """A gloss bundle; ``backend="onnx"`` runs its exported graphs (``signlab export``) on ONNX
    Runtime's CPU provider instead of the PyTorch model."""
    path = Path(path)
    require_task(path, "gloss", "model")
    config, vocab, stats = read_bundle_parts(path, BUNDLE_FILES, "model", Config)
    if check_backend(backend, device) == "onnx":
        from signlab.inference.onnx import OnnxGlossModel

        return Bundle(config, vocab, stats, OnnxGlossModel(path, config.model.subsampling, config.model.type != "tcn"),
                      read_metrics(path))
    model = build_recognizer(config.model, stats.dim, len(vocab), stats, config_kind(config).pose)
    load_weights(model, path, device, len(vocab))
    return Bundle(config, vocab, stats, model.to(device).eval(), read_metrics(path))


BACKENDS = ("torch", "onnx")


def check_backend(backend: str, device: str | torch.device) -> str:
    if backend not in BACKENDS:
        raise SignlabError(f"unknown backend {backend!r}: use torch or onnx")
    if backend == "onnx" and torch.device(device).type != "cpu":
        raise SignlabError(f"the onnx backend runs on ONNX Runtime's CPU provider, not on {device}: use --backend torch")
    return backend
