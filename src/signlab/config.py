"""Typed configuration loaded from YAML, with ``--set section.key=value`` overrides.

Section and key names follow the ASL seed's config dict (``model.d_model``, ``training.lr``,
``data.max_frames``...). Unknown keys and wrong types are errors that name the key and, where
one is close, the key that was probably meant.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signlab.errors import SignlabError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    type: Literal["hybrid", "tcn"] = "hybrid"
    input_dim: int | None = Field(None, description="feature dim; null = taken from the data")
    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 3
    dim_feedforward: int = 2048
    dropout: float = 0.1
    subsampling: Literal[1, 2, 4, "auto"] = Field(
        "auto", description="time reduction before the encoder; auto = 4 for 25 fps pose, 1 for window features (I3D)"
    )
    tcn_kernel_size: int = 5
    ctc_weight: float = Field(0.3, ge=0)
    ce_weight: float = Field(0.7, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class TrainingConfig(_Section):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = 0.01
    warmup_epochs: float = Field(5, ge=0)
    scheduler: Literal["cosine", "constant"] = "cosine"
    gradient_clip: float = 5.0
    early_stopping_patience: int = Field(20, ge=0, description="epochs without dev improvement; 0 = off")
    seed: int = 42
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    num_workers: int = 0
    max_steps: int = -1
    log_every_n_steps: int = 10


class DataConfig(_Section):
    max_frames: int = Field(150, ge=1, description="longer clips are resampled uniformly, never cut")
    augmentation: bool = True
    pose_normalization: bool = True
    min_gloss_count: int = 1
    cache_gb: float = 2.0


class PoseAugmentConfig(_Section):
    """Pose transforms (540-dim input); 0 / false turns one off."""

    rotation: float = Field(5.0, ge=0, description="degrees around each axis")
    scale: float = Field(0.1, ge=0, lt=1)
    shear: float = Field(0.0, ge=0)
    translation: float = Field(0.02, ge=0, description="shoulder widths")
    time_warp: float = Field(0.15, ge=0, lt=1)
    frame_dropout: float = Field(0.1, ge=0, lt=1)
    temporal_shift: int = Field(4, ge=0, description="frames")
    noise: float = Field(0.01, ge=0, description="shoulder widths")
    hand_dropout: int = Field(6, ge=0, description="longest missed-hand run, frames")
    mirror: bool = Field(False, description="also swaps the hands: a right-handed signer becomes left-handed")
    p: float = Field(0.3, ge=0, le=1, description="probability of each transform")


class FeatureAugmentConfig(_Section):
    """Transforms of other features (I3D...)."""

    dropout: float = Field(0.1, ge=0, lt=1)
    noise: float = Field(0.05, ge=0)
    temporal_mask: int = Field(3, ge=0)
    p: float = Field(0.3, ge=0, le=1)


class VideoAugmentConfig(_Section):
    intensity: Literal["light", "medium", "heavy"] = "medium"


class MixConfig(_Section):
    mixup: float = Field(0.0, ge=0, le=1, description="probability that a training batch is mixed (MixUp)")
    cutmix: float = Field(0.0, ge=0, le=1, description="probability of CutMix over time instead")
    alpha: float = Field(0.2, gt=0)


class AugmentationConfig(_Section):
    """What ``data.augmentation: true`` applies to training clips."""

    pose: PoseAugmentConfig = PoseAugmentConfig()
    features: FeatureAugmentConfig = FeatureAugmentConfig()
    video: VideoAugmentConfig = VideoAugmentConfig()
    mix: MixConfig = MixConfig()


class ExtractConfig(_Section):
    """How features are made from video; a bundle keeps it, so ``signlab recognize`` does the same."""

    fps: float | None = Field(25.0, gt=0, description="resample videos to this rate; null = as recorded")
    size: int = Field(256, ge=1, description="I3D: shorter side before the crop")
    crop: int = Field(224, ge=1, description="I3D: centre crop")
    stack_size: int = Field(16, ge=1, description="I3D: frames per window")
    step_size: int = Field(4, ge=1, description="I3D: frames between windows")
    i3d_weights: str | None = Field(None, description="I3D checkpoint (rgb_imagenet.pt layout)")
    model_complexity: Literal[0, 1, 2] = 1  # MediaPipe Holistic


class DecodingConfig(_Section):
    method: Literal["ctc_greedy", "ctc_beam", "attention", "joint", "rescore"] = "attention"
    beam_size: int = Field(4, ge=1)
    ctc_weight: float = Field(0.3, ge=0, le=1, description="joint / rescore: weight of the CTC score")
    length_penalty: float = Field(0.0, ge=0, description="GNMT alpha; 0 = none")
    max_len: int = Field(100, ge=1)
    phoenix_cleanup: bool = False


class Config(_Section):
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    data: DataConfig = DataConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    extract: ExtractConfig = ExtractConfig()
    decoding: DecodingConfig = DecodingConfig()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


CTC_METHODS = ("ctc_greedy", "ctc_beam")


def decoding_options(cfg: Config, **overrides: Any) -> DecodingConfig:
    """The config's decoding settings with ``overrides`` (None = keep); a CTC-only model
    (``model.type: tcn``) falls back to ``ctc_greedy`` when no CTC method is named."""
    values = {**cfg.decoding.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    if cfg.model.type == "tcn" and values["method"] not in CTC_METHODS and overrides.get("method") is None:
        values["method"] = "ctc_greedy"
    try:
        return DecodingConfig.model_validate(values)
    except ValidationError as exc:
        raise SignlabError("decoding: " + "; ".join(_explain(e) for e in exc.errors())) from None


def builtin_config(name: str) -> Path:
    """Path of a config shipped with signlab (``hybrid``, ``demo``...)."""
    path = Path(str(resources.files("signlab") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        raise SignlabError(f"no built-in config named {name!r}")
    return path


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read ``path`` (or the defaults), apply ``key=value`` overrides, validate."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise SignlabError(f"cannot read config {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise SignlabError(f"config {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise SignlabError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    for item in overrides:
        _apply_override(data, item)
    return parse_config(data, source)


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise SignlabError(f"{source}: " + "; ".join(_explain(e) for e in exc.errors())) from None


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SignlabError(f"--set expects key=value (e.g. training.epochs=3), got {item!r}")
    *sections, leaf = key.strip().split(".")
    node = data
    for s in sections:
        node = node.setdefault(s, {})
        if not isinstance(node, dict):
            raise SignlabError(f"--set {item}: {s} is not a section")
    node[leaf] = yaml.safe_load(raw) if raw.strip() else None


def _explain(error: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        section_path, leaf = error["loc"][:-1], str(error["loc"][-1])
        model: type[BaseModel] = Config
        for part in section_path:
            model = model.model_fields[str(part)].annotation  # type: ignore[assignment]
        valid = list(model.model_fields)
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f" (did you mean {'.'.join([*map(str, section_path), close[0]])!r}?)" if close else ""
        return f"unknown key {loc!r}{hint}; valid keys here: {', '.join(valid)}"
    return f"{loc}: {error['msg']} (got {error.get('input')!r})"
