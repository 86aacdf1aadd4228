"""Gloss recognition as a training task: data, the Lightning module that watches for CTC collapse,
and finishing a run (checkpoint averaging, the decoder chosen on dev, evaluation, the bundle)."""

from __future__ import annotations

import logging
import operator
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from pydantic import BaseModel
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric
from torchmetrics.text import WordErrorRate

from signlab.config import Config, DecodingConfig, decoding_options
from signlab.data.augment import AugmentedDataset, recipe
from signlab.data.augment.mixing import BatchMix
from signlab.data.dataset import (
    FeatureViews,
    GlossDataset,
    LengthBucketBatchSampler,
    hybrid_collate_fn,
)
from signlab.data.features import ScanResult, has_glosses, report_exclusions
from signlab.data.manifest import Sample
from signlab.data.stats import FeatureStats
from signlab.decoding import decode_batch
from signlab.decoding.ctc import ctc_greedy_decode
from signlab.atomic import write_json
from signlab.errors import SignlabError
from signlab.inference.bundle import Bundle, load_bundle, save_bundle
from signlab.inference.predictor import Answer, Predictor
from signlab.inference.recognizer import (
    Recognizer,
    choose_decoding,
    compare_decoders,
    evaluate_samples,
    scan_for_wer,
)
from signlab.kinds import config_kind
from signlab.losses import JointCTCAttentionLoss
from signlab.metrics import blank_counts
from signlab.models import build_recognizer, subsampled_lengths
from signlab.models.interface import Encoded, RecognizerOutput
from signlab.report import PANELS
from signlab.training.callbacks import TopCheckpoints, average_checkpoints
from signlab.training.task import (
    PreparedData,
    Task,
    TaskModule,
    resolve_for_data,
    scan_train_dev,
)
from signlab.vocab import BLANK, PAD, UNK, Vocabulary

log = logging.getLogger(__name__)

COLLAPSE_BLANK_RATIO = 0.95


def ctc_min_frames(glosses: Sequence[str]) -> int:
    """CTC needs one frame per label plus a blank between two equal neighbours."""
    return len(glosses) + sum(map(operator.eq, glosses, glosses[1:]))


def ctc_need(samples: Sequence[Sample]) -> np.ndarray:
    """:func:`ctc_min_frames` of every sample's glosses."""
    return np.fromiter((ctc_min_frames(s.glosses) for s in samples), np.int64, len(samples))


MIN_FRAMES_PER_GLOSS = 3  # encoder frames: a gloss, the blank before the next, and one to spare


def choose_subsampling(train: ScanResult, need: np.ndarray, max_frames: int) -> tuple[int, float]:
    """``model.subsampling: auto``: the largest factor (4, 2, 1) that leaves the median training clip
    :data:`MIN_FRAMES_PER_GLOSS` encoder frames a gloss and makes at most 1% of the clips too short
    for CTC (``need``: :func:`ctc_need`); and the median clip's input frames a gloss. 25 fps pose
    (about 20 frames a gloss) gets 4, I3D windows (3-4 a gloss) 1: CTC needs room for its blanks,
    and a head that sees ten frames a gloss has ten chances to say blank."""
    frames = np.minimum(train.lengths, max_frames)
    per_gloss = float(np.median(frames / np.fromiter((len(s.glosses) for s in train.samples), np.int64, len(frames))))
    for factor in (4, 2):
        short = int((subsampled_lengths(frames, factor) < need).sum())
        if per_gloss / factor >= MIN_FRAMES_PER_GLOSS and short <= 0.01 * len(frames):
            return factor, per_gloss
    return 1, per_gloss


TOKEN_DROPOUT_FROM = 1000  # training clips


def auto_token_dropout(train_clips: int) -> float:
    """``model.decoder_token_dropout: auto``: 0.2 from :data:`TOKEN_DROPOUT_FROM` training clips on,
    else 0. On thousands of sentences the decoder learns their word order well enough to recite it
    over what a new signer signs, and hiding a fifth of its input tokens makes it read the clip; on a
    few hundred it has too little to learn from to spare them (README, benchmark (b))."""
    return 0.2 if train_clips >= TOKEN_DROPOUT_FROM else 0.0


def describe_model(cfg: Config) -> str:
    """One line saying what will be trained, for the log (the CLI says what it used)."""
    m = cfg.model
    if m.type == "tcn":
        return f"TCN + CTC ({m.num_encoder_layers} blocks of {m.d_model}, kernel {m.tcn_kernel_size})"
    encoder = {"transformer": f"Transformer encoder ({m.num_encoder_layers} x {m.d_model}, {m.nhead} heads)",
               "bilstm": f"convolution + BiLSTM encoder ({m.num_encoder_layers} x {m.d_model // 2} each way)",
               "tcn": f"TCN encoder ({m.num_encoder_layers} blocks of {m.d_model})"}[m.encoder]
    extras = [f"self-conditioned CTC {m.intermediate_ctc}" if m.intermediate_ctc else "",
              f"attention guide {m.attention_guide}" if m.attention_guide else "",
              f"decoder token dropout {m.decoder_token_dropout}" if m.decoder_token_dropout else ""]
    return (f"hybrid CTC + attention: {encoder}, {m.num_decoder_layers}-layer decoder, loss {m.ctc_weight} CTC + "
            f"{m.ce_weight} CE" + "".join(f", {e}" for e in extras if e) + f", lr {cfg.training.lr:g}")


def prepare_gloss_data(
    samples: Sequence[Sample],
    cfg: Config,
    *,
    vocab: Vocabulary | None = None,
    stats: FeatureStats | None = None,
    scan_cache: Path | None = None,
) -> PreparedData:
    """Scan the train and dev splits once, exclude unusable rows (reported with their reason),
    and build the vocabulary and feature statistics from train unless they are given."""
    by_split = {s: [x for x in samples if x.split == s] for s in ("train", "dev")}
    for split, rows in by_split.items():
        if not rows:
            raise SignlabError(
                f"the manifest has no {split!r} rows; training needs train rows, and dev rows to pick the "
                "best checkpoint and stop early"
            )
    auto = cfg.model.subsampling == "auto"
    cfg = resolve_for_data(cfg, by_split["train"])
    max_frames = cfg.data.max_frames

    prep, splits, stats = scan_train_dev(by_split, cfg, has_glosses, stats, report=False, scan_cache=scan_cache)
    need = {name: ctc_need(result.samples) for name, result in splits.items()}
    if auto:
        cfg.model.subsampling, per_gloss = choose_subsampling(splits["train"], need["train"], max_frames)
        log.info("model.subsampling auto: x%d (the median training clip has %.1f frames a gloss; each gloss keeps "
                 "at least %d encoder frames)", cfg.model.subsampling, per_gloss, MIN_FRAMES_PER_GLOSS)
    factor, clips = cfg.model.subsampling, len(splits["train"].samples)
    if cfg.model.decoder_token_dropout == "auto":
        cfg.model.decoder_token_dropout = auto_token_dropout(clips)
        log.info("model.decoder_token_dropout auto: %g (%d training clips; on from %d)",
                 cfg.model.decoder_token_dropout, clips, TOKEN_DROPOUT_FROM)
    log.info("model: %s; %d training clips", describe_model(cfg), clips)

    for name, rows in by_split.items():
        result = splits[name]
        have = subsampled_lengths(np.minimum(result.lengths, max_frames), factor)

        def too_short(i: int) -> tuple[str, str]:
            sample, frames = result.samples[i], result.lengths[i]
            return "too_short", (f"{sample.where}: {len(sample.glosses)} glosses need {need[name][i]} CTC frames but "
                                 f"the clip gives {have[i]} ({frames} frames, resampled to at most {max_frames}, "
                                 f"subsampled x{factor})")

        splits[name] = result.without(have < need[name], too_short)
        report_exclusions(splits[name].excluded, name, len(rows))
        if not splits[name].samples:
            raise SignlabError(f"no usable {name} rows left (see the warnings above for why each was excluded)")
    if vocab is None:
        vocab = Vocabulary.build((s.glosses for s in splits["train"].samples), cfg.data.min_gloss_count)
    unknown = vocab.unknown(g for s in splits["dev"].samples for g in s.glosses)
    if unknown:
        log.warning(
            "dev: %d gloss types never occur in train (e.g. %s); the model cannot output them, so they count "
            "as errors in dev WER", len(unknown), ", ".join(sorted(unknown)[:5]),
        )
    return PreparedData(cfg, prep, stats, vocab, splits)


class GlossDataModule(L.LightningDataModule):
    """Length-bucketed loaders; each DDP process takes its own share of the batches. With
    ``data.augmentation`` the training clips are augmented (``augmentation`` section), except
    when that would make a clip too short for its CTC targets."""

    def __init__(self, data: PreparedData):
        super().__init__()
        self.data, self.cfg = data, data.config

    def _loader(self, split: str, train: bool) -> DataLoader:
        d, t = self.data, self.cfg.training
        ds: Dataset = GlossDataset(d.splits[split], d.prep, d.vocab, self.cfg.data.max_frames)
        lengths = ds.lengths
        if train:
            factor = self.cfg.model.subsampling
            need = ctc_need(d.splits[split].samples)

            def usable(index: int, frames: int) -> bool:  # still long enough for its CTC targets?
                return subsampled_lengths(min(frames, self.cfg.data.max_frames), factor) >= need[index]

            if any(int(s.extra.get("views") or 1) > 1 for s in d.splits[split].samples):
                ds = FeatureViews(ds, t.seed, usable)
            if self.cfg.data.augmentation:
                ds = AugmentedDataset(ds, recipe(d.prep.is_pose, self.cfg.augmentation), seed=t.seed, usable=usable)
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = LengthBucketBatchSampler(
            lengths, t.batch_size, shuffle=train, seed=t.seed, num_replicas=world, rank=rank, pad_replicas=train,
            on_epoch=getattr(ds, "set_epoch", None),
        )
        return DataLoader(ds, batch_sampler=sampler, collate_fn=hybrid_collate_fn, num_workers=t.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", train=False)


def selection_decoding(cfg: Config) -> DecodingConfig:
    """The decoder whose dev WER, each epoch, picks the checkpoint.

    With ``decoding.choose_on_dev`` the decoder that ships is chosen only when training ends, so
    a cheap proxy stands in: the CTC prefix beam's n-best re-ranked by the attention decoder
    (``rescore``, CTC weight 0.5: one teacher-forced pass, no label-synchronous search), and the
    epoch's WER is the lower of that and greedy CTC. Both are in the final search, so the proxy
    is an upper bound on the shipped decoder's dev WER. Without the search, the configured decoder
    itself. A CTC-only model uses greedy CTC either way.
    """
    if cfg.decoding.choose_on_dev and cfg.model.type == "hybrid":
        return decoding_options(cfg, method="rescore", ctc_weight=0.5)
    return decoding_options(cfg)


def epoch_wer(cfg: Config, wer: float, ctc_wer: float) -> float:
    """The dev WER that ranks epochs, from the :func:`selection_decoding` WER and greedy CTC's:
    the lower of the two while the shipped decoder is still to be chosen on dev."""
    return min(wer, ctc_wer) if cfg.decoding.choose_on_dev else wer


class GlossRecognitionModule(TaskModule):
    schema = Config

    def __init__(self, config: dict[str, Any], vocab_tokens: list[str], input_dim: int, stats: FeatureStats):
        super().__init__(config, vocab_tokens, input_dim, stats)
        self.vocab = Vocabulary(vocab_tokens)
        self.model = build_recognizer(self.cfg.model, input_dim, len(self.vocab), stats, config_kind(self.cfg).pose)
        m = self.cfg.model
        self.criterion = JointCTCAttentionLoss(m.ctc_weight, m.ce_weight, m.label_smoothing, m.attention_guide,
                                               m.intermediate_ctc)
        self.hybrid = m.type == "hybrid"
        self.decoding = selection_decoding(self.cfg)
        mix = self.cfg.augmentation.mix
        self.mix = BatchMix(mix.mixup, mix.cutmix, mix.alpha) if self.cfg.data.augmentation and mix.mixup + mix.cutmix else None
        # over the dev set and every process: WER of the selection decoder and of greedy CTC, blank ratio
        self.dev_wer, self.dev_wer_ctc, self.dev_blank = WordErrorRate(), WordErrorRate(), MeanMetric()
        self.collapsed_epochs, self.stopped_collapsed = 0, None  # epochs in a row past warm-up with a collapsed head

    def _step(self, batch: dict, mix: BatchMix | None = None) -> tuple[dict[str, torch.Tensor], Encoded, RecognizerOutput]:
        """Joint loss of a batch; with ``mix``, of a mixed batch against both target sets."""
        mixed = None
        if mix is not None:
            mixed = mix(batch["features"], batch["lengths"],
                        np.random.default_rng([self.cfg.training.seed, self.global_step, self.global_rank]))
        features, lengths = (batch["features"], batch["lengths"]) if mixed is None else (mixed.features, mixed.lengths)
        enc = self.model.encode(features, lengths)
        out = self._heads(enc, batch["decoder_input"])
        losses = self.criterion(out, batch)
        if mixed is not None:
            partner = {k: v[mixed.partner] for k, v in batch.items() if isinstance(v, torch.Tensor)}
            other = self.criterion(self._heads(enc, partner["decoder_input"]), partner)
            losses = {k: mixed.lam * losses[k] + (1 - mixed.lam) * other[k] for k in losses}
        if not torch.isfinite(losses["loss"]):
            raise SignlabError(
                f"the loss became {losses['loss'].item()} on the batch holding {', '.join(batch['ids'][:5])}: "
                "lower training.lr, or check these rows' features"
            )
        return losses, enc, out

    def _heads(self, enc: Encoded, decoder_input: torch.Tensor) -> RecognizerOutput:
        """The model's heads; the decoder's cross-attention too once warm-up is over, if a guide
        loss wants it (the CTC alignment it follows means little before)."""
        if not self.hybrid:
            return self.model.heads(enc)
        if self.training and self.cfg.model.decoder_token_dropout:
            decoder_input = token_dropout(decoder_input, self.cfg.model.decoder_token_dropout)
        guide = self.cfg.model.attention_guide and self.current_epoch >= self.cfg.training.warmup_epochs
        return self.model.heads(enc, decoder_input, need_attention=bool(guide))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses, _, out = self._step(batch, self.mix)
        size = len(batch["ids"])
        blanks, frames = blank_counts(out.ctc_logits, out.lengths)
        self.log("train_blank_ratio", blanks / max(frames, 1), batch_size=size)
        for name, value in losses.items():
            self.log(f"train_{name}", value, prog_bar=name == "loss", batch_size=size, on_epoch=True)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        losses, enc, out = self._step(batch)
        self.log("dev_loss", losses["loss"], batch_size=len(batch["ids"]), sync_dist=True)
        hyps, _ = decode_batch(self.model, batch["features"], batch["lengths"], self.decoding, enc=enc)
        ctc_hyps = hyps if self.decoding.method == "ctc_greedy" else ctc_greedy_decode(out.ctc_logits, out.lengths)
        self.dev_wer.update(self._text(hyps), batch["glosses"])
        self.dev_wer_ctc.update(self._text(ctc_hyps), batch["glosses"])
        valid = torch.arange(out.ctc_logits.size(1), device=self.device)[None] < out.lengths[:, None]
        self.dev_blank.update((out.ctc_logits.argmax(-1) == BLANK)[valid].double())

    def _text(self, hyps: list[list[int]]) -> list[str]:
        return [" ".join(self.vocab.decode(h)) for h in hyps]

    def on_validation_epoch_end(self) -> None:
        wer, ctc_wer = (100 * float(m.compute()) for m in (self.dev_wer, self.dev_wer_ctc))
        ratio = float(self.dev_blank.compute())
        for m in (self.dev_wer, self.dev_wer_ctc, self.dev_blank):
            m.reset()
        if self.cfg.decoding.choose_on_dev:
            self.log(f"dev_wer_{self.decoding.method}", wer, sync_dist=True)
        # already summed over processes: sync_dist only averages identical values
        self.log("dev_wer", epoch_wer(self.cfg, wer, ctc_wer), prog_bar=True, sync_dist=True)
        self.log("dev_wer_ctc", ctc_wer, sync_dist=True)
        self.log("dev_blank_ratio", ratio, sync_dist=True)
        # every CTC model starts all-blank; past warm-up, a ratio this high is collapse
        warmed_up = self.current_epoch + 1 >= self.cfg.training.warmup_epochs
        if self.trainer.sanity_checking:
            return
        if not (ratio > COLLAPSE_BLANK_RATIO and warmed_up):
            self.collapsed_epochs = 0
            return
        self.collapsed_epochs += 1
        patience = self.cfg.training.collapse_patience
        if self.collapsed_epochs == 1 and self.trainer.is_global_zero:
            log.warning(
                "CTC collapse: %.1f%% of dev frames decode to blank after epoch %d (warm-up is over)%s. If it "
                "persists, raise training.lr, use model.encoder=bilstm, or raise model.ctc_weight.",
                100 * ratio, self.current_epoch,
                f"; training stops if it lasts {patience} epochs" if patience else "",
            )
        if patience and self.collapsed_epochs >= patience:
            self.trainer.should_stop = True
            self.stopped_collapsed = self.current_epoch
            if self.trainer.is_global_zero:
                log.warning("CTC collapse lasted %d epochs (dev blank ratio %.3f after epoch %d): training stops here "
                            "rather than spend more on a head that says blank; the bundle is written from the best "
                            "epoch, and metrics.json says what happened (ctc_collapse)", self.collapsed_epochs, ratio,
                            self.current_epoch)


def token_dropout(tokens: torch.Tensor, p: float) -> torch.Tensor:
    """``tokens`` (B, L) with each one after ``<sos>`` (and not padding) replaced by ``<unk>`` with probability ``p``."""
    drop = torch.rand(tokens.shape, device=tokens.device) < p
    drop[:, 0] = False
    return tokens.masked_fill(drop & (tokens != PAD), UNK)


def average_if_better(module: GlossRecognitionModule, top: TopCheckpoints, recognizer: Recognizer,
                      dev: ScanResult) -> dict:
    """Put the average of the ``top`` epochs' weights into ``module`` (which holds the best
    epoch's) if its dev WER, by the rule that picked the epochs, is lower than the best epoch's
    (which training already measured)."""
    epochs = sorted(int(Path(p).stem.split("-")[1]) for p in top.best_k_models)
    best = round(float(top.best_model_score), 2)
    single = {k: v.clone() for k, v in module.state_dict().items()}
    module.load_state_dict(average_checkpoints(list(top.best_k_models)))
    decoders = {"selection": selection_decoding(module.cfg).model_dump(), "ctc_greedy": {"method": "ctc_greedy"}}
    rows = compare_decoders(recognizer, dev, "dev", decoders)["results"]
    averaged = round(epoch_wer(module.cfg, rows[0]["wer"], rows[-1]["wer"]), 2)
    used = "averaged" if averaged < best else "best"
    if used == "best":
        module.load_state_dict(single)
    log.info("checkpoint averaging of epochs %s: dev WER %.2f against %.2f for the best epoch alone; using the %s",
             ", ".join(map(str, epochs)), averaged, best, "average" if used == "averaged" else "best epoch")
    return {"epochs": epochs, "dev_wer_best": best, "dev_wer_averaged": averaged, "used": used}


class GlossTask(Task):
    name, schema, default_config = "gloss", Config, "hybrid"
    monitor, mode, panels = "dev_wer", "min", PANELS
    module_class, datamodule_class = GlossRecognitionModule, GlossDataModule

    def prepare(self, samples: Sequence[Sample], cfg: Config, vocab: Vocabulary | None,
                stats: FeatureStats | None, scan_cache: Path | None = None) -> PreparedData:
        return prepare_gloss_data(samples, cfg, vocab=vocab, stats=stats, scan_cache=scan_cache)

    def keep_best(self, data: PreparedData) -> int:
        return data.config.training.average_checkpoints

    def finish(self, out: Path, data: PreparedData, module: GlossRecognitionModule, trainer: L.Trainer,
               samples: Sequence[Sample], metrics: dict[str, Any]) -> None:
        """Average the best epochs if that helps on dev, choose the decoder on dev, evaluate dev
        and test, write the bundle."""
        cfg = data.config
        metrics = {"model": cfg.model.type, **metrics}
        if module.stopped_collapsed is not None:
            metrics["ctc_collapse"] = {"stopped_after_epoch": module.stopped_collapsed, "epochs": module.collapsed_epochs}
        recognizer = Recognizer(Bundle(cfg, data.vocab, data.stats, module.model))
        # read once for the decoder search and the evaluation; its exclusions were reported before training
        dev = scan_for_wer(recognizer, [s for s in samples if s.split == "dev"], "dev", report=False)
        top = next((c for c in trainer.callbacks if isinstance(c, TopCheckpoints)), None)
        if top is not None and len(top.best_k_models) > 1:
            metrics["checkpoint_averaging"] = average_if_better(module, top, recognizer, dev)
        if cfg.decoding.choose_on_dev:
            chosen, metrics["decoding_search"] = choose_decoding(recognizer, dev)
            cfg = cfg.model_copy(update={"decoding": chosen})
            recognizer = Recognizer(Bundle(cfg, data.vocab, data.stats, module.model))
        metrics["dev"] = evaluate_samples(recognizer, dev, "dev", output=out / "dev_results.json")
        test = [s for s in samples if s.split == "test"]
        if test:
            metrics["test"] = evaluate_samples(recognizer, test, "test", output=out / "test_results.json")
        save_bundle(out, cfg, data.vocab, data.stats, module.model, metrics)

    def load_predictor(self, run: Path, name: str, device: str = "cpu", backend: str = "torch") -> GlossPredictor:
        return GlossPredictor(name, Recognizer.load(run, device, backend))

    def evaluate(self, run: Path, samples: Sequence[Sample], split: str, output: Path | None = None,
                 backend: str = "torch", decode: str | None = None, batch_size: int = 32,
                 phoenix_cleanup: bool | None = None, **decoding: Any) -> dict[str, Any]:
        """WER with the bundle's decoder (``decoding`` overrides it: ``beam_size``, ``ctc_weight``,
        ...), or with ``decode="all"`` every decoder in one table, each clip encoded once."""
        if decode == "all":
            table = compare_decoders(Recognizer.load(run, backend=backend), samples, split, batch_size=batch_size)
            if output is not None:
                write_json(output, table)
            return table
        recognizer = Recognizer.load(run, backend=backend, method=decode, **decoding)
        return evaluate_samples(recognizer, samples, split, output, batch_size, phoenix_cleanup)

    def export(self, run: Path) -> tuple[list[Path], float]:
        from signlab.export import export_gloss, verify_gloss

        model = load_bundle(run).model
        return export_gloss(model, run), verify_gloss(model, run)

    def summary(self, r: dict[str, Any]) -> str:
        return (f"WER {r['wer']:.2f}% (sub {r['sub']}, del {r['del']}, ins {r['ins']}, n {r['n']}), "
                f"blank ratio {r['blank_ratio']:.3f}, decoding {r['decoding']}")

    def report_sections(self, run: Any, clips: dict[str, str] | None) -> list[tuple[str, str]]:
        from signlab.report_page import gloss_sections

        return gloss_sections(run, clips)

    def report_clips(self, run: Any, manifest: Path) -> dict[str, str] | None:
        """The worst clips: reference and hypothesis aligned, the CTC strip, the cross-attention."""
        from signlab.report_page import WORST, clip_figures

        if not (run.path / "model.safetensors").is_file():
            return None
        rows = run.hypotheses.get("test") or run.hypotheses.get("dev") or []
        worst = [str(x.get("id")) for x in sorted(rows, key=lambda x: -float(x.get("wer") or 0))[:WORST]]
        return clip_figures(run, manifest, worst)

    def show(self, results: dict[str, Any]) -> Any:
        if "results" not in results:  # one decoder
            return super().show(results)
        from signlab.report import decoding_table

        return decoding_table(results["results"], f"every decoding method on {results['split']} ({results['clips']} "
                                                  f"clips, encoder {results['encode_seconds']:.2f} s)")


class Segment(BaseModel):
    gloss: str
    start_frame: int
    end_frame: int


class GlossAnswer(Answer):
    """A gloss model's answer: the glosses signed, and where the CTC head placed each."""

    task: Literal["gloss"]
    glosses: list[str]
    text: str
    decoding: str
    ctc_segments: list[Segment]


class GlossPredictor(Predictor):
    """A gloss bundle's answers: glosses, their text, the decoder, and where CTC put each gloss."""

    task, answer_schema, partial_results = "gloss", GlossAnswer, True

    def __init__(self, name: str, recognizer: Recognizer):
        b = recognizer.bundle
        super().__init__(name, recognizer.prep, b.config, len(b.vocab), b.metrics)
        self.recognizer = recognizer

    @property
    def max_frames(self) -> int:
        return self.config.data.max_frames

    def prepare(self, features: np.ndarray, where: str) -> np.ndarray:
        return self.recognizer.prepare(features, where)

    def predict(self, clips: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        out = []
        for t in self.recognizer.transcribe_prepared(clips):
            out.append({"glosses": t.glosses, "text": " ".join(t.glosses), "decoding": self.recognizer.decoding.method,
                        "ctc_segments": [{"gloss": g, "start_frame": a, "end_frame": b} for g, a, b in t.ctc_segments]})
        return out
