"""Sentence retrieval and translation as a task (``signlab train --task sentence``): training, and
through :mod:`signlab.inference` its bundle (embedding bank, prototypes, calibrated thresholds),
predictor, evaluation and export.

Loss = ``lambda * SupCon(two views) + (1 - lambda) * text CE + mask_weight * masked-frame``
(the SignTalk seed's weights by default). The best checkpoint is the one with the best
validation retrieval (MRR of dev clips among the training clips, or among each other).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch.utils.data import DataLoader

from signlab.config import SentenceConfig
from signlab.data.augment import Compose, FeatureAugmentation, PoseAugmentation
from signlab.data.features import has_text
from signlab.data.manifest import Sample
from signlab.data.sentence import (
    ClassBalancedSampler,
    SentenceDataset,
    sentence_collate,
    sentence_key,
    split_by_sentence,
    split_by_signer,
    variations,
)
from signlab.data.stats import FeatureStats
from signlab.decoding.ctc import ctc_greedy_decode
from signlab.errors import SignlabError
from signlab.inference.decision import no_signer
from signlab.inference.engine import (
    InferenceEngine,
    SentenceBundle,
    load_sentence_bundle,
)
from signlab.inference.predictor import Answer, Predictor
from signlab.inference.sentence_bundle import build_sentence_bundle
from signlab.inference.sentence_eval import evaluate_sentence_samples, translate_encoded
from signlab.kinds import config_kind
from signlab.losses import SupConLoss, ctc_loss
from signlab.metrics import alignment_metrics, retrieval_metrics, word_error_rate
from signlab.models.sentence import SignTranslationModel
from signlab.report import SENTENCE_PANELS
from signlab.training.task import (
    PreparedData,
    Task,
    TaskModule,
    resolve_for_data,
    scan_train_dev,
)
from signlab.vocab import PAD, Vocabulary, tokenize_words

log = logging.getLogger(__name__)

# the epoch kept: dev retrieval MRR (finer-grained than top-1 on a few dev clips) or, with a gloss
# head, the mean of it and the head's dev gloss accuracy (1 - greedy WER): MRR alone stops
# improving long before the gloss head has learnt, and would keep a head that has not
MONITOR = "val_score"


@dataclass
class SentenceData(PreparedData):
    """The vocabulary holds the words of the spoken-language text."""

    labels: dict[str, int] = field(default_factory=dict)  # sentence key -> class index
    dev_against_train: bool = False  # dev sentences are known from training: retrieve dev clips among training clips


def assign_splits(samples: Sequence[Sample], cfg: SentenceConfig) -> tuple[list[Sample], list[Sample]]:
    """Train and validation rows, as ``data.split`` says (test rows are never used here)."""
    usable = [s for s in samples if s.split != "test"]
    if cfg.data.split == "manifest":
        train, dev = [s for s in usable if s.split == "train"], [s for s in usable if s.split == "dev"]
        if not dev:
            raise SignlabError("the manifest has no dev rows: add some, or let signlab split it with "
                               "--set data.split=sentence (no sentence in both) or data.split=signer")
        return train, dev
    split = split_by_sentence if cfg.data.split == "sentence" else split_by_signer
    return split(usable, cfg.data.val_split, cfg.training.seed)


def prepare_sentence_data(samples: Sequence[Sample], cfg: SentenceConfig, *, vocab: Vocabulary | None = None,
                          stats: FeatureStats | None = None, scan_cache: Path | None = None) -> SentenceData:
    train_rows, dev_rows = assign_splits(samples, cfg)
    if not train_rows:
        raise SignlabError("no training rows")
    cfg = resolve_for_data(cfg, train_rows)
    prep, splits, stats = scan_train_dev({"train": train_rows, "dev": dev_rows}, cfg, has_text, stats,
                                         motion_floor=cfg.data.motion_floor, scan_cache=scan_cache)
    resolve_glosses(cfg, splits["train"].samples)
    if vocab is None:
        vocab = Vocabulary.build(tokenize_words(t) for s in splits["train"].samples for t in variations(s))
    labels = {k: i for i, k in enumerate(sorted({sentence_key(s) for s in samples}))}
    train_keys = {sentence_key(s) for s in splits["train"].samples}
    dev_keys = [sentence_key(s) for s in splits["dev"].samples]
    known = sum(k in train_keys for k in dev_keys)
    repeated = sum(c > 1 for c in Counter(dev_keys).values())
    if not known and not repeated:
        raise SignlabError("validation retrieval cannot be measured: no dev sentence is in train and none has two dev "
                           "clips; give dev clips of training sentences (e.g. --set data.split=signer) or more dev clips")
    log.info("sentences: %d in train, %d in dev (%d dev clips of training sentences)", len(train_keys), len(set(dev_keys)),
             known)
    return SentenceData(cfg, prep, stats, vocab, splits, labels, dev_against_train=known > 0)


def resolve_glosses(cfg: SentenceConfig, train: Sequence[Sample]) -> None:
    """``model.glosses``, the gloss head's vocabulary, from the training rows when every one has
    glosses and ``model.gloss_ctc_weight`` > 0; a given vocabulary must hold every training gloss."""
    if cfg.model.gloss_ctc_weight <= 0:
        cfg.model.glosses = None
        return
    if cfg.model.glosses is not None:
        missing = sorted({g for s in train for g in s.glosses} - set(cfg.model.glosses))
        if missing:
            raise SignlabError(f"model.glosses lacks {len(missing)} gloss(es) of the training rows (e.g. {missing[0]}): "
                               "leave it out (null) to take it from the data")
        return
    bare = sum(not s.glosses for s in train)
    if bare:
        log.info("no gloss head: %d of %d training rows have no glosses", bare, len(train))
        return
    cfg.model.glosses = sorted({g for s in train for g in s.glosses})
    log.info("gloss head: %d glosses from the training rows (model.gloss_ctc_weight %g)", len(cfg.model.glosses),
             cfg.model.gloss_ctc_weight)


def view_transforms(cfg: SentenceConfig, pose_layout: bool) -> tuple[Compose, Compose]:
    """Two different augmentations for the two views, as in the seed: view A gets timing and
    noise, view B timing and geometry (rotation, scale, shear, translation)."""
    if not cfg.data.augmentation:
        return Compose([]), Compose([])
    if not pose_layout:
        options = cfg.augmentation.features.model_dump()
        return FeatureAugmentation(**options), FeatureAugmentation(**options)
    o = cfg.augmentation.pose.model_dump()
    geometry = {"rotation": 0, "scale": 0, "shear": 0, "translation": 0}
    return PoseAugmentation(**{**o, **geometry}), PoseAugmentation(**{**o, "noise": 0, "hand_dropout": 0})


class SentenceDataModule(L.LightningDataModule):
    def __init__(self, data: SentenceData):
        super().__init__()
        self.data = data

    def _dataset(self, split: str, views) -> SentenceDataset:
        d = self.data
        return SentenceDataset(d.splits[split], d.prep, d.vocab, d.labels, d.config.data.seq_len, views, d.config.training.seed,
                               glosses=d.config.model.glosses)

    def train_dataloader(self) -> DataLoader:
        d, t = self.data, self.data.config.training
        ds = self._dataset("train", view_transforms(d.config, d.prep.is_pose))
        labels = [d.labels[sentence_key(s)] for s in ds.samples]
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        sampler = ClassBalancedSampler(labels, t.batch_size, d.config.data.instances_per_class, t.seed, world, rank,
                                       on_epoch=ds.set_epoch)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=sentence_collate, num_workers=t.num_workers)

    def val_dataloader(self) -> list[DataLoader]:
        """Dev clips (whole, and even / odd frames for instance alignment); with
        ``dev_against_train``, the training clips too, as the gallery they are retrieved from.
        Under DDP every process scores all of them: retrieval needs the whole set in one place,
        and dev sets of sentence corpora are small."""
        d = self.data

        def loader(split: str, halves: bool) -> DataLoader:
            ds = SentenceDataset(d.splits[split], d.prep, d.vocab, d.labels, d.config.data.seq_len, halves=halves)
            return DataLoader(ds, batch_size=32, collate_fn=sentence_collate)

        return [loader("dev", True)] + ([loader("train", False)] if d.dev_against_train else [])


class SentenceModule(TaskModule):
    schema = SentenceConfig

    def __init__(self, config: dict[str, Any], vocab_tokens: list[str], input_dim: int, stats: FeatureStats):
        super().__init__(config, vocab_tokens, input_dim, stats)
        self.model = SignTranslationModel(input_dim, len(vocab_tokens), self.cfg.model, config_kind(self.cfg).pose)
        self.model.frontend.normalize.set_stats(stats.mean, stats.std)
        self.supcon = SupConLoss(self.cfg.loss.temperature)
        self.ce = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=self.cfg.loss.label_smoothing)
        self._val: dict[int, list[tuple[torch.Tensor, ...]]] = {0: [], 1: []}
        self._glosses: list[tuple[str, str]] = []  # dev (reference, greedy CTC) glosses, with a gloss head

    def _losses(self, batch: dict) -> dict[str, torch.Tensor]:
        loss = self.cfg.loss
        enc_a = self.model.encode(batch["a"], batch["a_lengths"])
        enc_b = self.model.encode(batch["b"], batch["b_lengths"])
        labels = batch["labels"]
        supcon = self.supcon(torch.cat([enc_a.embedding, enc_b.embedding]), torch.cat([labels, labels]))
        logits = self.model.decoder(batch["decoder_input"], enc_a.context, enc_a.padding_mask)
        ce = self.ce(logits.reshape(-1, logits.size(-1)).float(), batch["decoder_target"].reshape(-1))
        gen = torch.Generator().manual_seed(self.cfg.training.seed * 100003 + self.global_step)
        mask = self.model.masked_frame_loss(enc_a, loss.masked_frame_ratio, gen)
        total = loss.lambda_supcon * supcon + (1 - loss.lambda_supcon) * ce + loss.mask_loss_weight * mask
        losses = {"supcon": supcon, "ce": ce, "mask": mask}
        if "gloss_targets" in batch:  # the gloss head, on both views
            losses["gloss_ctc"] = sum(ctc_loss(enc.gloss_logits, enc.lengths, batch["gloss_targets"], batch["gloss_lengths"],
                                               blank=0, zero_infinity=True) for enc in (enc_a, enc_b)) / 2
            total = total + self.cfg.model.gloss_ctc_weight * losses["gloss_ctc"]
        return {"loss": total, **losses}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch)
        if not torch.isfinite(losses["loss"]):
            raise SignlabError(f"the loss became {losses['loss'].item()} on the batch holding {', '.join(batch['ids'][:5])}")
        for name, value in losses.items():
            self.log(f"train_{name}", value, prog_bar=name == "loss", batch_size=len(batch["ids"]), on_epoch=True)
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        enc = self.model.encode(batch["a"], batch["a_lengths"])
        if dataloader_idx == 1:  # the training clips: the retrieval gallery
            self._val[1].append((enc.embedding.float(), batch["labels"]))
            return
        logits = self.model.decoder(batch["decoder_input"], enc.context, enc.padding_mask)
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), batch["decoder_target"].reshape(-1), ignore_index=PAD)
        self.log("val_ce", ce, batch_size=len(batch["ids"]), sync_dist=True, add_dataloader_idx=False)
        even = self.model.encode(batch["even"], batch["even_lengths"]).embedding.float()
        odd = self.model.encode(batch["odd"], batch["odd_lengths"]).embedding.float()
        self._val[0].append((enc.embedding.float(), batch["labels"], even, odd))
        if enc.gloss_logits is not None:
            names = self.cfg.model.glosses
            found = ctc_greedy_decode(enc.gloss_logits, enc.lengths, blank=0)
            self._glosses += [(ref, " ".join(names[g - 1] for g in ids)) for ref, ids in zip(batch["glosses"], found)]

    def on_validation_epoch_end(self) -> None:
        if not self._val[0]:
            return
        emb, labels, a, b = (torch.cat(x) for x in zip(*self._val[0]))
        gallery = [torch.cat(x) for x in zip(*self._val[1])] if self._val[1] else None
        self._val = {0: [], 1: []}
        for name, value in alignment_metrics(a.cpu().numpy(), b.cpu().numpy()).items():
            self.log(f"val_{name}", value, sync_dist=True)
        glosses, self._glosses = self._glosses, []
        gloss_wer = word_error_rate(*zip(*glosses)).wer / 100 if glosses else None
        if gloss_wer is not None:
            self.log("val_gloss_wer", gloss_wer, sync_dist=True)
        if (self.current_epoch + 1) % self.cfg.training.retrieval_eval_every == 0 or self.trainer.sanity_checking:
            g = (None, None) if gallery is None else (gallery[0].cpu().numpy(), gallery[1].cpu().numpy())
            r = retrieval_metrics(emb.cpu().numpy(), labels.cpu().numpy(), *g)
            self.log("val_ret_top1", r["top1"], prog_bar=True, sync_dist=True)
            self.log("val_ret_mrr", r["mrr"], sync_dist=True)
            score = r["mrr"] if gloss_wer is None else (r["mrr"] + max(0.0, 1 - gloss_wer)) / 2
            self.log(MONITOR, score, sync_dist=True)



class SentenceTask(Task):
    name, schema, default_config = "sentence", SentenceConfig, "sentence"
    monitor, mode, panels = MONITOR, "max", SENTENCE_PANELS
    module_class, datamodule_class = SentenceModule, SentenceDataModule

    def prepare(self, samples: Sequence[Sample], cfg: SentenceConfig, vocab: Vocabulary | None,
                stats: FeatureStats | None, scan_cache: Path | None = None) -> SentenceData:
        return prepare_sentence_data(samples, cfg, vocab=vocab, stats=stats, scan_cache=scan_cache)

    def finish(self, out: Path, data: SentenceData, module: SentenceModule, trainer: L.Trainer,
               samples: Sequence[Sample], metrics: dict[str, Any]) -> None:
        build_sentence_bundle(out, data.config, data.vocab, data.stats, data.prep, data.splits, module.model.eval(),
                              [s for s in samples if s.split == "test"], metrics)

    def load_predictor(self, run: Path, name: str, device: str = "cpu", backend: str = "torch") -> SentencePredictor:
        bundle = load_sentence_bundle(run, device)
        return SentencePredictor(name, bundle, InferenceEngine.from_bundle(bundle, run, backend, device))

    def evaluate(self, run: Path, samples: Sequence[Sample], split: str, output: Path | None = None,
                 backend: str = "torch", **options: Any) -> dict[str, Any]:
        """Retrieval, decisions, alignment and translation (:func:`evaluate_sentence_samples`)."""
        given = [k for k, v in options.items() if v is not None]
        if given:
            raise SignlabError(f"a sentence model takes no {', '.join('--' + k.replace('_', '-') for k in given)}: "
                               f"those options are for gloss models")
        bundle = load_sentence_bundle(run)
        return evaluate_sentence_samples(bundle, InferenceEngine.from_bundle(bundle, run, backend), samples, split, output)

    def export(self, run: Path) -> tuple[list[Path], float]:
        from signlab.export import export_onnx, onnx_runner, verify

        model = load_sentence_bundle(run).model
        path = export_onnx(model, run / "encoder.onnx")
        return [path], verify(model, onnx_runner(path))

    def summary(self, r: dict[str, Any]) -> str:
        from signlab.report import percent

        d, retrieval = r["decisions"], r["retrieval"]
        unknown = f"; refuses {percent(d.get('unknown_rejected'))} of {d['unknown_clips']} unknown" if d.get("unknown_clips") else ""
        found = f"retrieval top-1 {retrieval['top1']:.3f} (MRR {retrieval['mrr']:.3f}); " if retrieval else ""
        return (f"{found}engine accepts {percent(d['accept_rate'])} of known, {percent(d['accepted_accuracy'])} of its "
                f"answers right{unknown}; translation WER {r['translation']['wer']:.1f}%, BLEU {r['translation']['bleu']:.1f}")


    def report_sections(self, run: Any, clips: dict[str, str] | None) -> list[tuple[str, str]]:
        from signlab.report_page import sentence_sections

        return sentence_sections(run)


class CandidateAnswer(BaseModel):
    rank: int
    clip_id: str
    sentence: str
    text: str
    similarity: float
    cosine: float
    dtw_distance: float | None = None
    gloss_fit: float | None = None


class SentenceAnswer(Answer):
    """A sentence model's answer: the phrase-book sentence accepted (or why none was), its
    candidates, and the free translation."""

    task: Literal["sentence"]
    accepted: bool
    reason: str
    sentence: str | None
    text: str | None
    confidence: float
    motion: float
    margin: float | None
    prototype_similarity: float | None
    candidates: list[CandidateAnswer]
    translation: str | None


class SentencePredictor(Predictor):
    """A sentence bundle's answers: the retrieved sentence with its decision, and the generated text."""

    task, answer_schema = "sentence", SentenceAnswer

    def __init__(self, name: str, bundle: SentenceBundle, engine: InferenceEngine, topk: int = 5):
        super().__init__(name, bundle.prep, bundle.config, len(bundle.vocab), bundle.metrics)
        self.bundle, self.engine, self.topk = bundle, engine, topk

    def prepare(self, features: np.ndarray, where: str) -> np.ndarray | None:
        return self.engine.prepare(features, where)  # None: no signer in the clip

    def predict(self, clips: Sequence[np.ndarray | None]) -> list[dict[str, Any]]:
        """Retrieval, decision and translation, from one encoding of each clip."""
        seen = [c for c in clips if c is not None]
        answers = []
        if seen:
            enc = self.engine.encode(seen, keep_context=True)
            answers = [{**p.as_dict(), "translation": t}
                       for p, t in zip(self.engine.decide_encoded(seen, enc, self.topk), translate_encoded(self.bundle, enc))]
        found = iter(answers)
        return [{**no_signer().as_dict(), "translation": None} if c is None else next(found) for c in clips]

    def describe(self, answer: dict[str, Any]) -> str:
        verdict = "accepted" if answer.get("accepted") else f"rejected ({answer.get('reason')})"
        return (f"{answer.get('text') or answer.get('translation') or '?'}  [{verdict}, confidence "
                f"{answer.get('confidence', 0):.2f}]")
