"""Isolated-sign recognition as a task (``signlab train --task isolated``): one sign a clip, read by
a pose encoder (the gloss model's front end and convolutions + BiLSTM) whose frames are pooled
(mean and max over the valid frames) into a classification head, the shape of the Kaggle Isolated
Sign Language Recognition winners and the WLASL pose baselines. Metrics: top-1, top-5 and
per-class accuracy.

Everything the task needs is in this module: its config, model, training, bundle, predictor,
evaluation, export and report sections. The registry (:mod:`signlab.tasks`) names it; nothing else
in signlab knows it exists. Data: any manifest whose rows have one gloss each (the synthetic
signer's words, ``signlab corpus prepare wlasl`` or ``asl-signs``); a row with several is left out
and counted.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from signlab.atomic import write_json, write_text
from signlab.config import (
    AugmentationConfig,
    DataConfig,
    ExtractConfig,
    RootConfig,
    Section,
    TrainingConfig,
)
from signlab.data.dataset import pad_clips
from signlab.data.features import ScanResult, check_features, one_sign, report_exclusions, scan_split
from signlab.data.manifest import Sample
from signlab.data.stats import FeatureStats
from signlab.errors import SignlabError
from signlab.inference.bundle import (
    BUNDLE_FILES,
    check_backend,
    load_weights,
    read_bundle_parts,
    read_metrics,
    require_task,
    save_bundle,
)
from signlab.inference.onnx import onnx_session
from signlab.inference.predictor import Answer, Predictor
from signlab.kinds import config_kind
from signlab.models.frontend import FrontEnd
from signlab.models.recurrent import ConvBiLSTMEncoder
from signlab.training.gloss import GlossDataModule
from signlab.training.task import PreparedData, Task, TaskModule, resolve_for_data, scan_train_dev
from signlab.vocab import SPECIAL_TOKENS, Vocabulary

log = logging.getLogger(__name__)
TOP = 5  # the k of top-k accuracy, and the candidates an answer lists


class IsolatedModelConfig(Section):
    input_dim: int | None = Field(None, description="feature dim; null = taken from the data")
    d_model: int = Field(192, ge=2)
    num_encoder_layers: int = Field(2, ge=1, description="BiLSTM layers after the temporal convolutions")
    dropout: float = Field(0.2, ge=0, lt=1)
    subsampling: int | Literal["auto"] = Field(2, description="stride-2 convolutions before the encoder: 1, 2 or 4")
    hand_shape: bool = Field(True, description="pose features: also each hand's points relative to its wrist")
    label_smoothing: float = Field(0.1, ge=0, lt=1)


class IsolatedConfig(RootConfig):
    task: Literal["isolated"] = Field("isolated", description="what the config trains; a bundle's config.yaml says it")
    model: IsolatedModelConfig = IsolatedModelConfig()
    training: TrainingConfig = TrainingConfig()
    data: DataConfig = DataConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    extract: ExtractConfig = ExtractConfig()


class SignClassifier(nn.Module):
    """(B, T, D) raw features -> (B, V) logits over the vocabulary; special tokens never win."""

    def __init__(self, cfg: IsolatedModelConfig, input_dim: int, vocab_size: int, pose_layout: bool):
        super().__init__()
        self.frontend = FrontEnd(input_dim, cfg.d_model, cfg.dropout, int(cfg.subsampling), pose_layout, cfg.hand_shape)
        self.encoder = ConvBiLSTMEncoder(cfg.d_model, cfg.num_encoder_layers, cfg.dropout)
        self.norm = nn.LayerNorm(2 * cfg.d_model)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * cfg.d_model, vocab_size))
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[: len(SPECIAL_TOKENS)] = True
        self.register_buffer("special", special, persistent=False)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        x, _, mask = self.frontend(features, lengths)
        h = self.encoder(x, mask)
        keep = (~mask)[..., None]
        mean = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        peak = h.masked_fill(~keep, float("-inf")).amax(1)
        logits = self.head(self.norm(torch.cat([mean, peak], -1)))
        return logits.masked_fill(self.special, float("-inf"))


def build_classifier(cfg: IsolatedConfig, vocab_size: int, stats: FeatureStats | None = None) -> SignClassifier:
    model = SignClassifier(cfg.model, cfg.model.input_dim, vocab_size, config_kind(cfg).pose)
    if stats is not None:
        model.frontend.normalize.set_stats(stats.mean, stats.std)
    return model


class IsolatedModule(TaskModule):
    schema = IsolatedConfig

    def __init__(self, config: dict[str, Any], vocab_tokens: list[str], input_dim: int, stats: FeatureStats):
        super().__init__(config, vocab_tokens, input_dim, stats)
        self.model = build_classifier(self.cfg, len(vocab_tokens), stats)
        self._right = self._seen = 0

    def _step(self, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        labels = batch["ctc_targets"][:, 0]  # the clip's one gloss
        logits = self.model(batch["features"], batch["lengths"])
        signs = len(SPECIAL_TOKENS)  # smoothing spreads over the signs, never over <pad>, <blank>...
        target = torch.where(labels >= signs, labels - signs, -100)  # a dev sign train never had: only counted wrong
        loss = F.cross_entropy(logits[:, signs:], target, ignore_index=-100, label_smoothing=self.cfg.model.label_smoothing)
        return loss, logits, labels

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, _, _ = self._step(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["lengths"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        loss, logits, labels = self._step(batch)
        self.log("dev_loss", loss, sync_dist=True, batch_size=len(labels))
        self._right += int((logits.argmax(-1) == labels).sum())
        self._seen += len(labels)

    def on_validation_epoch_end(self) -> None:
        right = self.all_gather(torch.tensor([self._right, self._seen], device=self.device)).reshape(-1, 2).sum(0)
        self.log("dev_top1", float(right[0]) / max(1, int(right[1])), prog_bar=True, rank_zero_only=True)
        self._right = self._seen = 0


def prepare_isolated_data(samples: Sequence[Sample], cfg: IsolatedConfig, vocab: Vocabulary | None,
                          stats: FeatureStats | None, scan_cache: Path | None = None) -> PreparedData:
    """The train and dev rows with one gloss each, scanned once; vocabulary and statistics from train."""
    by_split = {s: [x for x in samples if x.split == s] for s in ("train", "dev")}
    for split, rows in by_split.items():
        if not rows:
            raise SignlabError(f"the manifest has no {split!r} rows; training needs train rows, and dev rows to pick "
                               "the best checkpoint")
    cfg = resolve_for_data(cfg, by_split["train"])
    if cfg.model.subsampling == "auto":
        cfg.model.subsampling = 2
    prep, splits, stats = scan_train_dev(by_split, cfg, one_sign, stats, report=False, scan_cache=scan_cache)
    for name, result in splits.items():
        report_exclusions(result.excluded, name, len(by_split[name]))
        if not result.samples:
            raise SignlabError(f"no usable {name} rows left (see the warnings above for why each was excluded)")
    vocab = vocab or Vocabulary.build((s.glosses for s in splits["train"].samples), cfg.data.min_gloss_count)
    return PreparedData(cfg, prep, stats, vocab, splits)


class IsolatedSignAnswer(Answer):
    """An isolated-sign model's answer: the sign, how sure the model is, and its next best."""

    task: Literal["isolated"]
    sign: str
    confidence: float
    candidates: list[dict[str, Any]] = Field(description=f"the {TOP} most likely signs: sign, probability")


class IsolatedPredictor(Predictor):
    task, answer_schema = "isolated", IsolatedSignAnswer

    def __init__(self, name: str, cfg: IsolatedConfig, vocab: Vocabulary, stats: FeatureStats, model, metrics: dict):
        from signlab.data.features import Preprocessor

        super().__init__(name, Preprocessor.for_config(cfg), cfg, len(vocab), metrics)
        self.vocab, self.model = vocab, model

    @property
    def max_frames(self) -> int:
        return self.config.data.max_frames

    def prepare(self, features: np.ndarray, where: str) -> np.ndarray:
        return self.prep(check_features(features, where, self.prep.dim), where)

    def probabilities(self, clips: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(N, V) probabilities over the vocabulary of prepared clips."""
        out = []
        for start in range(0, len(clips), batch_size):
            x, lengths = pad_clips(clips[start : start + batch_size], self.max_frames)
            logits = self.model(x, lengths)
            logits = logits - logits.max(-1, keepdims=True)
            p = np.exp(logits)
            out.append(p / p.sum(-1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, self.vocab_size), np.float32)

    def predict(self, clips: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        answers = []
        for p in self.probabilities(clips):
            best = np.argsort(-p)[:TOP]
            tokens = self.vocab.decode(best.tolist())
            answers.append({"sign": tokens[0], "text": tokens[0], "confidence": float(p[best[0]]),
                            "candidates": [{"sign": t, "probability": float(p[i])} for t, i in zip(tokens, best)]})
        return answers

    def describe(self, answer: dict[str, Any]) -> str:
        return f"{answer['sign']}  [confidence {answer['confidence']:.2f}]"


class TorchClassifier:
    """The PyTorch model behind the predictor's NumPy calls."""

    def __init__(self, model: SignClassifier, device: str = "cpu"):
        self.model, self.device = model.to(device).eval(), device

    @torch.no_grad()
    def __call__(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(x).to(self.device), torch.from_numpy(lengths).to(self.device)).float().cpu().numpy()


class OnnxClassifier:
    """``classifier.onnx`` (``signlab export``) on ONNX Runtime."""

    def __init__(self, path: Path):
        self.session = onnx_session(path)

    def __call__(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"features": x.astype(np.float32), "lengths": lengths.astype(np.int64)})[0]


def load_isolated(run: Path, device: str = "cpu") -> tuple[IsolatedConfig, Vocabulary, FeatureStats, SignClassifier]:
    run = Path(run)
    require_task(run, "isolated", "isolated-sign model")
    cfg, vocab, stats = read_bundle_parts(run, BUNDLE_FILES, "isolated-sign model", IsolatedConfig)
    model = build_classifier(cfg, len(vocab), stats)  # the statistics live in stats.npz, not in the weights
    load_weights(model, run, device, len(vocab))
    return cfg, vocab, stats, model.to(device).eval()


def evaluate_isolated(predictor: IsolatedPredictor, samples: Sequence[Sample] | ScanResult, split: str,
                      output: Path | None = None) -> dict[str, Any]:
    """Top-1, top-5 and per-class accuracy on ``samples``; ``output``: results JSON, with each clip's
    answer in ``<output>.predictions.jsonl`` beside it."""
    result = samples if isinstance(samples, ScanResult) else scan_split(samples, predictor.prep, split, check=one_sign)
    clips = result.all_features(predictor.prep)
    probs = predictor.probabilities(clips)
    truth = np.array(predictor.vocab.encode([s.glosses[0] for s in result.samples]), dtype=np.int64)
    ranked = np.argsort(-probs, axis=1)[:, :TOP] if len(probs) else np.zeros((0, TOP), np.int64)
    top1, topk = ranked[:, 0] == truth, (ranked == truth[:, None]).any(1)
    per_class: dict[str, dict[str, float]] = {}
    for sign in sorted({s.glosses[0] for s in result.samples}):
        rows = np.array([s.glosses[0] == sign for s in result.samples])
        per_class[sign] = {"n": int(rows.sum()), "top1": float(top1[rows].mean())}
    confused = Counter((s.glosses[0], predictor.vocab.decode([int(r[0])])[0])
                       for s, r, ok in zip(result.samples, ranked, top1) if not ok)
    results = {"split": split, "n": len(result.samples), "excluded": len(result.excluded),
               "top1": float(top1.mean()) if len(top1) else None, f"top{TOP}": float(topk.mean()) if len(topk) else None,
               "per_class": per_class, "confusions": [[a, b, n] for (a, b), n in confused.most_common(20)]}
    if output is not None:
        output = Path(output)
        lines = [json.dumps({"id": s.id, "signer": s.signer, "sign": s.glosses[0],
                             "predicted": predictor.vocab.decode(r.tolist()), "right": bool(ok)}, ensure_ascii=False)
                 for s, r, ok in zip(result.samples, ranked, top1)]
        write_text(output.with_name(output.stem + ".predictions.jsonl"), "".join(line + "\n" for line in lines))
        write_json(output, results)
    return results


def synthetic_isolated_corpus(out: str | Path, train_signers: int = 6, dev_signers: int = 1, test_signers: int = 2,
                              repeats: int = 2, seed: int = 7) -> Path:
    """The synthetic signer's lexicon one sign a clip: every signer signs every word ``repeats``
    times; dev and test signers are seen in no other split. Returns the manifest."""
    from signlab.data.grammar import Grammar, Sentence
    from signlab.data.synthetic import CorpusSpec, generate_corpus

    per_signer = [Sentence((w,), w.lower()) for w in Grammar().glosses] * repeats
    spec = CorpusSpec(train_signers, dev_signers, test_signers, clips_per_signer=len(per_signer), seed=seed)
    signers = {"train": train_signers, "dev": dev_signers, "test": test_signers}
    return generate_corpus(out, spec, sentences={split: per_signer * n for split, n in signers.items()})


class IsolatedTask(Task):
    name, schema, default_config = "isolated", IsolatedConfig, "isolated"
    monitor, mode = "dev_top1", "max"
    panels = (("loss", ("train_loss", "dev_loss")), ("dev top-1 accuracy", ("dev_top1",)), ("learning rate", ("lr",)))
    module_class, datamodule_class = IsolatedModule, GlossDataModule  # one gloss a clip: the gloss task's loaders

    def prepare(self, samples: Sequence[Sample], cfg: IsolatedConfig, vocab: Vocabulary | None,
                stats: FeatureStats | None, scan_cache: Path | None = None) -> PreparedData:
        return prepare_isolated_data(samples, cfg, vocab, stats, scan_cache)

    def finish(self, out: Path, data: PreparedData, module: IsolatedModule, trainer: L.Trainer,
               samples: Sequence[Sample], metrics: dict[str, Any]) -> None:
        predictor = IsolatedPredictor(out.name, data.config, data.vocab, data.stats, TorchClassifier(module.model.eval()),
                                      metrics)
        metrics["dev"] = evaluate_isolated(predictor, data.splits["dev"], "dev", out / "dev_results.json")
        test = [s for s in samples if s.split == "test"]
        if test:
            metrics["test"] = evaluate_isolated(predictor, test, "test", out / "test_results.json")
        save_bundle(out, data.config, data.vocab, data.stats, module.model, metrics)

    def load_predictor(self, run: Path, name: str, device: str = "cpu", backend: str = "torch") -> IsolatedPredictor:
        cfg, vocab, stats, model = load_isolated(run, device)
        onnx = check_backend(backend, device) == "onnx"
        if onnx and not (run / "classifier.onnx").is_file():
            raise SignlabError(f"{run} has no classifier.onnx: run `signlab export {run}` first")
        classifier = OnnxClassifier(run / "classifier.onnx") if onnx else TorchClassifier(model, device)
        return IsolatedPredictor(name, cfg, vocab, stats, classifier, read_metrics(run))

    def evaluate(self, run: Path, samples: Sequence[Sample], split: str, output: Path | None = None,
                 backend: str = "torch", **options: Any) -> dict[str, Any]:
        if options:
            raise SignlabError(f"an isolated-sign model takes no {', '.join('--' + k.replace('_', '-') for k in options)}")
        return evaluate_isolated(self.load_predictor(run, run.name, backend=backend), samples, split, output)

    def export(self, run: Path) -> tuple[list[Path], float]:
        from signlab.export import CHECK_SHAPES, _checked, _clip_dims, _example, _export

        model = load_isolated(run)[3]
        path = _export(model, _example(model), run / "classifier.onnx", _clip_dims(), ["logits"])
        onnx, worst = OnnxClassifier(path), 0.0
        for i, (batch, frames) in enumerate(CHECK_SHAPES):
            features, lengths = _example(model, batch, frames, seed=i + 1)
            with torch.no_grad():
                want = model(features, lengths).softmax(-1).numpy()
            got = torch.from_numpy(onnx(features.numpy(), lengths.numpy())).softmax(-1).numpy()
            worst = max(worst, float(np.abs(got - want).max()))
        return [path], _checked(worst, 1e-4, "classifier")

    def summary(self, r: dict[str, Any]) -> str:
        return f"top-1 {r['top1']:.3f}, top-{TOP} {r[f'top{TOP}']:.3f} ({r['n']} clips, {len(r['per_class'])} signs)"

    def report_sections(self, run: Any, clips: dict[str, str] | None) -> list[tuple[str, str]]:
        from signlab.report_page import table

        sections = []
        for split in ("dev", "test"):
            r = (run.metrics or {}).get(split)
            if not r:
                continue
            rows = [["clips", r["n"]], ["top-1", r["top1"]], [f"top-{TOP}", r.get(f"top{TOP}")], ["excluded", r["excluded"]]]
            worst = sorted(r["per_class"].items(), key=lambda kv: (kv[1]["top1"], -kv[1]["n"]))[:15]
            sections.append((f"{split}: accuracy", table(["", split], rows)
                             + table(["least recognised signs", "clips", "top-1"], [[k, v["n"], v["top1"]] for k, v in worst])
                             + table(["sign", "taken for", "clips"], r.get("confusions") or [], 2)))
        return sections
