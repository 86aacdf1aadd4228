"""Model bundles: a folder with config.yaml, vocab.json, stats.npz, model.safetensors, metrics.json.

Loading one reads YAML, JSON, NumPy and safetensors files only; no code is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from signlab.config import Config, parse_config
from signlab.data.stats import FeatureStats
from signlab.errors import SignlabError
from signlab.models import build_recognizer
from signlab.vocab import Vocabulary

BUNDLE_FILES = ("config.yaml", "vocab.json", "stats.npz", "model.safetensors")


@dataclass
class Bundle:
    config: Config
    vocab: Vocabulary
    stats: FeatureStats
    model: nn.Module
    metrics: dict[str, Any] = field(default_factory=dict)


def save_bundle(path: str | Path, config: Config, vocab: Vocabulary, stats: FeatureStats, model: nn.Module,
                metrics: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config.save(path / "config.yaml")
    vocab.save(path / "vocab.json")
    stats.save(path / "stats.npz")
    save_weights(model, path)
    write_metrics(path, metrics or {})
    return path


def save_weights(model: nn.Module, folder: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))


def load_weights(model: nn.Module, folder: Path, device: str | torch.device = "cpu") -> None:
    """``folder/model.safetensors`` into ``model``; a mismatch with the config is a clear error."""
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
    except RuntimeError as exc:
        raise SignlabError(f"{folder}/model.safetensors does not match config.yaml: {exc}") from exc


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))


def read_metrics(folder: Path) -> dict[str, Any]:
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    path = Path(path)
    missing = [f for f in BUNDLE_FILES if not (path / f).is_file()]
    if missing:
        hint = " (training writes the bundle when it ends; checkpoints/ holds the run so far)" if (path / "checkpoints").is_dir() else ""
        raise SignlabError(f"{path} is not a model bundle: missing {', '.join(missing)}{hint}")
    config = parse_config(yaml.safe_load((path / "config.yaml").read_text()) or {}, str(path / "config.yaml"))
    vocab = Vocabulary.load(path / "vocab.json")
    stats = FeatureStats.load(path / "stats.npz")
    if config.model.input_dim != stats.dim:
        raise SignlabError(f"{path}: config says input_dim {config.model.input_dim} but stats.npz has {stats.dim} dims")
    model = build_recognizer(config.model, stats.dim, len(vocab), stats)
    load_weights(model, path, device)
    return Bundle(config, vocab, stats, model.to(device).eval(), read_metrics(path))
