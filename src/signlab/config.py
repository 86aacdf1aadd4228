"""Typed configuration loaded from YAML, with ``--set section.key=value`` overrides.

Section and key names follow the ASL seed's config dict (``model.d_model``, ``training.lr``,
``data.max_frames``...). Unknown keys and wrong types are errors that name the key and, where
one is close, the key that was probably meant.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signlab.atomic import decode_utf8, write_text
from signlab.errors import SignlabError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Section = _Section  # the base of a config section: a task's own config sections derive from it


class _AttentionSection(_Section):
    """A model section whose Transformer width is split over its heads: ``_width_and_heads`` names
    the two fields. Attention needs the split to be even, and sinusoidal positions an even width.
    Also what both models' front ends share."""

    _width_and_heads: ClassVar[tuple[str, str]]
    hand_shape: bool = Field(True, description=(
        "pose features: the front end also sees each hand's points relative to its wrist, in palm lengths (the "
        "handshape, whatever the arm does); signs one handshape apart told apart on unseen signers"))

    @model_validator(mode="after")
    def _heads_divide_width(self):
        w_key, h_key = self._width_and_heads
        width, heads = getattr(self, w_key), getattr(self, h_key)
        if width % heads:
            near = [w for w in (width - width % heads, width - width % heads + heads) if w > 0]
            raise ValueError(f"model.{w_key}={width} must be divisible by model.{h_key}={heads} "
                             f"(e.g. model.{w_key}={' or '.join(map(str, near))})")
        if width % 2:
            raise ValueError(f"model.{w_key}={width} must be even (sinusoidal positions pair sine and cosine)")
        return self


class RootConfig(_Section):
    """A whole config: what is saved as a bundle's config.yaml."""

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def save(self, path: str | Path) -> None:
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


class ModelConfig(_AttentionSection):
    _width_and_heads = ("d_model", "nhead")
    type: Literal["hybrid", "tcn"] = "hybrid"
    encoder: Literal["transformer", "bilstm", "tcn"] = Field("transformer", description=(
        "hybrid: the encoder under the CTC head and the decoder; bilstm: temporal convolutions then a "
        "bidirectional LSTM (d_model / 2 units each way), the CSLR field's standard; tcn: the baseline's dilated "
        "convolutions"))
    input_dim: int | None = Field(None, description="feature dim; null = taken from the data")
    d_model: int = Field(512, ge=2)
    nhead: int = Field(8, ge=1)
    num_encoder_layers: int = Field(6, ge=1)
    num_decoder_layers: int = Field(3, ge=1)
    dim_feedforward: int = Field(2048, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    subsampling: Literal[1, 2, 4, "auto"] = Field(
        "auto", description=(
        "time reduction before the encoder; auto: the largest of 4, 2, 1 that leaves 3 encoder frames a gloss "
        "in the median training clip (25 fps pose gets 4, I3D windows 1)")
    )
    tcn_kernel_size: int = Field(5, ge=1)
    ctc_weight: float = Field(0.3, ge=0)
    ce_weight: float = Field(0.7, ge=0)
    intermediate_ctc: float = Field(0.0, ge=0, le=1, description=(
        "hybrid: the CTC head also reads the encoder's middle layer, its posteriors are added back into the sequence "
        "(self-conditioned CTC), and this share of the CTC loss is that middle layer's (0 = off)"))
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    decoder_token_dropout: float | Literal["auto"] = Field(0.0, description=(
        "hybrid, training: each decoder input token is <unk> with this probability, so the decoder "
        "reads the clip instead of reciting training sentences from the tokens before; auto: 0.2 from 1,000 "
        "training clips on, 0 below (on a few hundred clips it costs the decoder more than it saves)"))
    attention_guide: float = Field(1.0, ge=0, description=(
        "hybrid: weight of a loss that keeps the decoder's cross-attention for each gloss between its "
        "neighbours' frames on the CTC head's forced alignment, from the end of warm-up (0 = off); "
        "it keeps the attention decoder from skipping or repeating clauses of long sentences"))

    @field_validator("decoder_token_dropout", mode="before")
    @classmethod
    def _probability_or_auto(cls, value: Any) -> Any:
        """A probability or auto, in one message that names the key (the union's own two errors would not)."""
        if value != "auto" and not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
            raise ValueError(f"model.decoder_token_dropout must be a probability below 1 (e.g. 0.2) or auto, got {value!r}")
        return value


class TrainingConfig(_Section):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = 0.01
    warmup_epochs: float = Field(5, ge=0)
    scheduler: Literal["cosine", "constant"] = "cosine"
    gradient_clip: float = 5.0
    early_stopping_patience: int = Field(20, ge=0, description="epochs without dev improvement; 0 = off")
    collapse_patience: int = Field(8, ge=0, description=(
        "gloss recognition: stop when the CTC head says blank on over 95% of dev frames this many epochs in a row "
        "after warm-up (collapse); 0 = never"))
    seed: int = 42
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    accumulate_grad_batches: int = 1
    average_checkpoints: int = Field(1, ge=1, description=(
        "gloss recognition: average the weights of the N best epochs by dev WER (icefall's --avg); the average "
        "replaces the best epoch only if its dev WER is lower. 1 = off"))
    num_workers: int = 0
    max_steps: int = -1
    log_every_n_steps: int = 10
    loggers: list[Literal["csv", "tensorboard", "mlflow", "wandb"]] = Field(
        ["csv", "tensorboard"], description=(
            "Lightning loggers beside metrics.jsonl: csv (RUN/csv/version_N/metrics.csv), tensorboard (tensorboard --logdir RUN), "
            "mlflow (RUN/mlruns) and wandb when those packages are installed"))


class FeatureDataConfig(_Section):
    """How every task reads its features."""

    feature_kind: str = Field("auto", description=(
        "what the features are (signlab.kinds: pose/holistic-540, i3d-1024, or any name for plain features); "
        "auto: the manifest's feature_kind column, else guessed from the width (logged)"))
    augmentation: bool = True
    pose_normalization: bool = True
    cache_gb: float = Field(2.0, ge=0, description="a split of loose files scanned in one process is held in memory "
                                                   "when its features fit in this many GiB")
    scan_workers: int = Field(0, ge=0, description=(
        "processes that scan a split of loose feature files before training (the result is cached in the run "
        "folder, so a resumed run does not scan again); 0: one a core (up to 8) for splits of 2,000 rows or more, "
        "else 1. A packed store is never scanned"))


class DataConfig(FeatureDataConfig):
    max_frames: int = Field(150, ge=1, description="longer clips are resampled uniformly, never cut")
    min_gloss_count: int = 1


class PoseAugmentConfig(_Section):
    """Pose transforms (540-dim input); 0 / false turns one off."""

    rotation: float | tuple[float, float, float] = Field(5.0, description="degrees around each axis, or [x, y, z]")
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


class MixConfig(_Section):
    mixup: float = Field(0.0, ge=0, le=1, description="probability that a training batch is mixed (MixUp)")
    cutmix: float = Field(0.0, ge=0, le=1, description="probability of CutMix over time instead")
    alpha: float = Field(0.2, gt=0)


class AugmentationConfig(_Section):
    """What ``data.augmentation: true`` applies to training clips."""

    pose: PoseAugmentConfig = PoseAugmentConfig()
    features: FeatureAugmentConfig = FeatureAugmentConfig()
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
    method: Literal["ctc_greedy", "ctc_beam", "attention", "joint", "rescore"] = "joint"
    beam_size: int = Field(4, ge=1)
    ctc_weight: float = Field(0.3, ge=0, le=1, description="joint / rescore: weight of the CTC score")
    length_penalty: float = Field(0.0, ge=0, description="GNMT alpha; 0 = none")
    length_bonus: float = Field(0.0, ge=0, description=(
        "attention / joint: added per output token when the final n-best list is ranked (ESPnet's penalty); "
        "offsets the attention decoder's preference for short outputs"))
    max_len: int = Field(100, ge=1)
    phoenix_cleanup: bool = False
    choose_on_dev: bool = Field(True, description=(
        "gloss recognition: when training ends, the decoder with the lowest dev WER among a small search "
        "(methods x CTC weights, this beam size) replaces the settings above in the bundle"))


class Config(RootConfig):
    task: Literal["gloss"] = Field("gloss", description="what the config trains; a bundle's config.yaml says it first")
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    data: DataConfig = DataConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    extract: ExtractConfig = ExtractConfig()
    decoding: DecodingConfig = DecodingConfig()


# ----------------------------------------------------------------------------- sentence pipeline
# Names follow the SignTalk seed's CFG (proj_dim, embed_dim, temperature, sim_threshold...).


class SentenceModelConfig(_AttentionSection):
    _width_and_heads = ("embed_dim", "attn_heads")
    input_dim: int | None = None
    proj_dim: int = Field(160, ge=1)
    embed_dim: int = Field(256, ge=2)
    attn_heads: int = Field(4, ge=1)
    encoder_layers: int = Field(4, ge=1)
    encoder_ff_dim: int = Field(512, ge=1)
    encoder_dropout: float = Field(0.1, ge=0, lt=1)
    decoder_layers: int = Field(2, ge=1)
    subsampling: Literal[1, 2, 4, "auto"] = 1
    gloss_ctc_weight: float = Field(1.0, ge=0, description=(
        "weight of a CTC loss on the manifest's glosses (a gloss head on the encoder) when every training row "
        "has glosses; the engine then scores candidates by how well the head's output fits their glosses"))
    glosses: list[str] | None = Field(None, description="the gloss head's vocabulary: filled in from the training rows")


class SentenceDataConfig(FeatureDataConfig):
    seq_len: int = Field(64, ge=1, description="clips are resampled to at most this many frames")
    split: Literal["manifest", "sentence", "signer"] = Field(
        "manifest", description="manifest: its train/dev rows; sentence: group split, no sentence in both; signer"
    )
    val_split: float = Field(0.15, gt=0, lt=1)
    motion_floor: float = Field(7.5e-4, ge=0, description="clips moving less on average are left out (pose: shoulder widths per frame)")
    instances_per_class: int = Field(2, ge=1, description="clips of each sentence in a training batch (SupCon)")


class SentenceLossConfig(_Section):
    temperature: float = 0.07
    lambda_supcon: float = Field(0.5, ge=0, le=1, description="supcon weight; the text CE gets 1 - lambda")
    mask_loss_weight: float = 0.2
    masked_frame_ratio: float = Field(0.15, ge=0, lt=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class DTWConfig(_Section):
    enabled: bool = True
    frames: int = Field(16, ge=2, description="bank and query sequences are resampled to this length")
    alpha: float = Field(0.65, ge=0, le=1, description="weight of the cosine similarity; DTW gets 1 - alpha")
    topk: int = Field(5, ge=1, description="candidates by cosine that DTW re-ranks (at least; a query asking for more gets them all re-ranked)")


class EngineConfig(_Section):
    confidence_temperature: float = 0.12
    gloss_weight: float = Field(0.05, ge=0, description=(
        "with a gloss head and the phrase book's glosses: weight in a candidate's score of its gloss fit, the mean "
        "log-probability per gloss (nats, 0 at best) the head gives the candidate's glosses; 0: no gloss evidence "
        "(calibration chooses it)"))
    sim_threshold: float = 0.58
    sim_margin: float = 0.10
    motion_floor: float = Field(7.5e-4, ge=0, description="queries moving less are rejected as low_motion")
    prototype_min_clips: int = 2
    prototype_slack: float = 0.05
    calibration: Literal["off", "dev"] = Field("dev", description="choose sim_threshold / sim_margin on the dev clips")
    target_precision: float = Field(0.95, gt=0, le=1, description="calibration: accepted answers this often right")
    target_rejection: float = Field(0.95, ge=0, le=1, description="calibration: sentences outside the phrase book "
                                    "this often rejected (measured by leaving each dev clip's sentence out)")
    dtw: DTWConfig = DTWConfig()


class SentenceTrainingConfig(TrainingConfig):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=2)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = 1e-5
    scheduler: Literal["warm_restarts", "cosine", "constant"] = "warm_restarts"
    scheduler_t0: int = Field(40, ge=1, description="epochs of the first cosine cycle")
    scheduler_tmult: int = Field(1, ge=1)
    scheduler_eta_min_scale: float = Field(0.2, ge=0, le=1)
    warmup_epochs: float = 0
    gradient_clip: float = 1.0
    accumulate_grad_batches: int = 2
    early_stopping_patience: int = 40
    retrieval_eval_every: int = Field(1, ge=1)


class TextDecodingConfig(_Section):
    """The sentence model's text decoder: beam search ranked with a length penalty."""

    beam_size: int = Field(4, ge=1)
    length_penalty: float = Field(0.8, ge=0, description="GNMT alpha; 0 = none")
    length_bonus: float = Field(0.0, ge=0, description="added per output word when the final n-best list is ranked")
    max_len: int = Field(64, ge=1, description="longest text generated, in words")


class SentenceConfig(RootConfig):
    task: Literal["sentence"] = Field("sentence", description="what the config trains; a bundle's config.yaml says it")
    model: SentenceModelConfig = SentenceModelConfig()
    training: SentenceTrainingConfig = SentenceTrainingConfig()
    data: SentenceDataConfig = SentenceDataConfig()
    loss: SentenceLossConfig = SentenceLossConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    engine: EngineConfig = EngineConfig()
    extract: ExtractConfig = ExtractConfig()
    decoding: TextDecodingConfig = TextDecodingConfig()


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


# keys added after runs and bundles were first saved, with the value that reproduces a config saved without them
ADDED_KEYS = {("model", "hand_shape"): False, ("model", "attention_guide"): 0.0}


# keys that configs saved by earlier versions hold but nothing reads any more, by task
RETIRED_KEYS = {"sentence": [("decoding", k) for k in ("method", "ctc_weight", "phoenix_cleanup", "choose_on_dev")]}


def as_saved(data: dict[str, Any], schema: type[RootConfig]) -> dict[str, Any]:
    """A saved config (a bundle's, or a run's being resumed) with the keys it predates set as it
    was trained, and those retired since dropped."""
    for (section, key), value in ADDED_KEYS.items():
        fields = getattr(schema.model_fields.get(section), "annotation", None)
        if isinstance(data.get(section), dict) and key in getattr(fields, "model_fields", {}):
            data[section].setdefault(key, value)
    for section, key in RETIRED_KEYS.get(schema.model_fields["task"].default, []):
        if isinstance(data.get(section), dict):
            data[section].pop(key, None)
    return data


def task_of(data: dict[str, Any]) -> str:
    """The task a saved config (as read from YAML) trains: its ``task`` key, or, in a config written
    before it had one, the sections only a sentence config has."""
    task = data.get("task")
    if task is None:
        return "sentence" if "engine" in data else "gloss"
    return str(task)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                schema: type[RootConfig] | None = None, saved: bool = False):
    """Read ``path`` (or the defaults), apply ``key=value`` overrides, validate against ``schema``
    (:class:`Config`, or :class:`SentenceConfig` for the sentence pipeline); ``saved``: a config
    signlab wrote (:func:`as_saved`). An error names the file and line, or the ``--set`` that
    caused it."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        data = read_yaml_mapping(Path(path), "config")
        if saved:
            data = as_saved(data, schema or Config)
    set_keys = {}
    for item in overrides:
        set_keys[_apply_override(data, item)] = item
    return parse_config(data, source, schema or Config, set_keys)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping; any problem is a SignlabError naming the file (and line)."""
    try:
        text = decode_utf8(path.read_bytes(), path, what)
    except OSError as exc:
        raise SignlabError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SignlabError(f"{what} {where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SignlabError(f"{what} {path} must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_config(data: dict[str, Any], source: str = "config", schema: type[RootConfig] | None = None,
                 set_keys: dict[str, str] | None = None):
    """Validate ``data``; errors in keys given with ``--set`` (``set_keys``: key -> the override)
    blame the override, the others ``source``."""
    schema = schema or Config
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        set_keys = set_keys or {}
        # the overrides inside each error's place (a key, or a section whose validator objected)
        blamed = [[v for k, v in set_keys.items() if k == loc or k.startswith(loc + ".")]
                  for loc in (".".join(map(str, e["loc"])) for e in errors)]
        if all(blamed):
            where = "--set " + ", --set ".join(dict.fromkeys(b for group in blamed for b in group))
        elif any(blamed) and source != "defaults":
            where = f"{source} with --set {', '.join(set_keys.values())}"
        else:
            where = source
        raise SignlabError(f"{where}: " + "; ".join(_explain(e, schema) for e in errors)) from None


def _apply_override(data: dict[str, Any], item: str) -> str:
    """Put ``section.key=value`` into ``data``; returns the key."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise SignlabError(f"--set expects key=value (e.g. training.epochs=3), got {item!r}")
    *sections, leaf = key.strip().split(".")
    node = data
    for s in sections:
        node = node.setdefault(s, {})
        if not isinstance(node, dict):
            raise SignlabError(f"--set {item}: {s} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        node[leaf] = raw  # not a YAML scalar: validated as the string it is
    return key.strip()


def _explain(error: dict[str, Any], schema: type[BaseModel] | None = None) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        section_path, leaf = error["loc"][:-1], str(error["loc"][-1])
        model: type[BaseModel] = schema or Config
        for part in section_path:
            model = model.model_fields[str(part)].annotation  # type: ignore[assignment]
        valid = list(model.model_fields)
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f" (did you mean {'.'.join([*map(str, section_path), close[0]])!r}?)" if close else ""
        return f"unknown key {loc!r}{hint}; valid keys here: {', '.join(valid)}"
    if error["type"] == "value_error":  # a validator's own message already says what is wrong
        return error["msg"].removeprefix("Value error, ")
    return f"{loc}: {error['msg']} (got {error.get('input')!r})"
