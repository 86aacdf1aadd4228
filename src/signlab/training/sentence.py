"""Training the sentence model (``signlab sentence train``) on the same trainer as the gloss model.

Loss = ``lambda * SupCon(two views) + (1 - lambda) * text CE + mask_weight * masked-frame``
(the SignTalk seed's weights by default). The best checkpoint is the one with the best
validation retrieval (MRR of dev clips among the training clips, or among each other).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from signlab.config import SentenceConfig, parse_config
from signlab.data import pose
from signlab.data.augment import Compose, FeatureAugmentation, PoseAugmentation
from signlab.data.features import Preprocessor, ScanResult, report_exclusions, scan
from signlab.data.manifest import Sample, read_manifests
from signlab.data.sentence import (
    ClassBalancedSampler,
    SentenceDataset,
    sentence_collate,
    sentence_key,
    split_by_sentence,
    split_by_signer,
    variations,
)
from signlab.data.stats import FeatureStats, RunningStats
from signlab.errors import SignlabError
from signlab.losses import SupConLoss
from signlab.metrics import retrieval_metrics
from signlab.models.sentence import SignTranslationModel
from signlab.training.data import resolve_for_data
from signlab.training.module import adamw, warmup_cosine
from signlab.vocab import PAD, Vocabulary, tokenize_words

log = logging.getLogger(__name__)

MONITOR = "val_ret_mrr"  # validation retrieval MRR: finer-grained than top-1 on a few dev clips


@dataclass
class SentenceData:
    config: SentenceConfig  # model.input_dim and model.subsampling resolved
    prep: Preprocessor
    stats: FeatureStats
    vocab: Vocabulary  # words of the spoken-language text
    labels: dict[str, int]  # sentence key -> class index
    splits: dict[str, ScanResult]  # train, dev
    dev_against_train: bool  # dev sentences are known from training: retrieve dev clips among training clips

    @property
    def excluded(self):
        return [e for r in self.splits.values() for e in r.excluded]


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
                          stats: FeatureStats | None = None) -> SentenceData:
    train_rows, dev_rows = assign_splits(samples, cfg)
    if not train_rows:
        raise SignlabError("no training rows")
    cfg = resolve_for_data(cfg, train_rows)
    dim = cfg.model.input_dim
    prep = Preprocessor(dim, cfg.data.pose_normalization)

    def check(sample: Sample, features: np.ndarray) -> tuple[str, str] | None:
        if not sample.text:
            return "no_text", f"{sample.where}: the text / sentence column is empty"
        motion = pose.mean_motion(features) if cfg.data.motion_floor else None
        if motion is not None and motion < cfg.data.motion_floor:
            return "low_motion", f"{sample.where}: mean motion {motion:.2e} < {cfg.data.motion_floor:.2e}"
        return None

    running = RunningStats(dim) if stats is None else None
    cache = int(cfg.data.cache_gb * 2**30)
    splits = {"train": scan(train_rows, prep, check=check, stats=running, cache_bytes=cache, desc="scanning train"),
              "dev": scan(dev_rows, prep, check=check, cache_bytes=cache, desc="scanning dev")}
    for name, rows in (("train", train_rows), ("dev", dev_rows)):
        report_exclusions(splits[name].excluded, name, len(rows))
        if not splits[name].samples:
            raise SignlabError(f"no usable {name} rows left (see the warnings above)")
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
    return SentenceData(cfg, prep, stats or running.finalize(), vocab, labels, splits, dev_against_train=known > 0)


def view_transforms(cfg: SentenceConfig, dim: int) -> tuple[Compose, Compose]:
    """Two different augmentations for the two views, as in the seed: view A gets timing and
    noise, view B timing and geometry (rotation, scale, shear, translation)."""
    if not cfg.data.augmentation:
        return Compose([]), Compose([])
    if dim != pose.POSE_FEATURE_DIM:
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
        return SentenceDataset(d.splits[split], d.prep, d.vocab, d.labels, d.config.data.seq_len, views, d.config.training.seed)

    def train_dataloader(self) -> DataLoader:
        d, t = self.data, self.data.config.training
        ds = self._dataset("train", view_transforms(d.config, d.prep.dim))
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


class SentenceModule(L.LightningModule):
    def __init__(self, config: dict[str, Any], vocab_tokens: list[str], input_dim: int, stats: FeatureStats):
        super().__init__()
        self.save_hyperparameters(ignore=["stats"])
        self.cfg: SentenceConfig = parse_config(config, schema=SentenceConfig)
        self.model = SignTranslationModel(input_dim, len(vocab_tokens), self.cfg.model)
        self.model.frontend.normalize.set_stats(stats.mean, stats.std)
        self.supcon = SupConLoss(self.cfg.loss.temperature)
        self.ce = torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=self.cfg.loss.label_smoothing)
        self._val: dict[int, list[tuple[torch.Tensor, ...]]] = {0: [], 1: []}

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
        return {"loss": total, "supcon": supcon, "ce": ce, "mask": mask}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch)
        if not torch.isfinite(losses["loss"]):
            raise SignlabError(f"the loss became {losses['loss'].item()} on the batch holding {', '.join(batch['ids'][:5])}")
        for name, value in losses.items():
            self.log(f"train_{name}", value, prog_bar=name == "loss", batch_size=len(batch["ids"]), on_epoch=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(batch["ids"]))
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

    def on_validation_epoch_end(self) -> None:
        if not self._val[0]:
            return
        emb, labels, a, b = (torch.cat(x) for x in zip(*self._val[0]))
        gallery = [torch.cat(x) for x in zip(*self._val[1])] if self._val[1] else None
        self._val = {0: [], 1: []}
        sims = a @ b.T
        self.log("val_inst_top1", (sims.argmax(1) == torch.arange(len(a), device=a.device)).float().mean(), sync_dist=True)
        self.log("val_pos_sim", sims.diag().mean(), sync_dist=True)
        off = sims.masked_fill(torch.eye(len(a), dtype=torch.bool, device=a.device), -1.0)
        self.log("val_neg_sim", off.max(1).values.mean() if len(a) > 1 else torch.tensor(0.0), sync_dist=True)
        if (self.current_epoch + 1) % self.cfg.training.retrieval_eval_every == 0 or self.trainer.sanity_checking:
            g = (None, None) if gallery is None else (gallery[0].cpu().numpy(), gallery[1].cpu().numpy())
            r = retrieval_metrics(emb.cpu().numpy(), labels.cpu().numpy(), *g)
            self.log("val_ret_top1", r["top1"], prog_bar=True, sync_dist=True)
            self.log("val_ret_mrr", r["mrr"], sync_dist=True)

    def configure_optimizers(self):
        t = self.cfg.training
        opt = adamw(self, t)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, math.ceil(total / max(1, self.trainer.max_epochs or t.epochs)))
        if t.scheduler == "warm_restarts":
            sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                opt, T_0=t.scheduler_t0 * per_epoch, T_mult=t.scheduler_tmult, eta_min=t.lr * t.scheduler_eta_min_scale
            )
        else:
            warmup = max(1, round(t.warmup_epochs * per_epoch))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup, total, t.scheduler == "cosine"))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def train_sentence(manifests: Sequence[str | Path], cfg: SentenceConfig, out: str | Path, *, resume: bool = False,
                   features_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Train the sentence model; RUN becomes a sentence bundle with its embedding bank."""
    from signlab.inference.engine import build_sentence_bundle
    from signlab.report import SENTENCE_PANELS, plot_training_curves, write_history_csv
    from signlab.training.run import (
        check_run_dir,
        fit,
        make_trainer,
        run_inputs,
        save_run_inputs,
    )

    out = Path(out)
    latest = check_run_dir(out, resume)
    L.seed_everything(cfg.training.seed, workers=True, verbose=False)
    samples = read_manifests(manifests, features_dir)
    vocab, stats = run_inputs(out, resume)
    data = prepare_sentence_data(samples, cfg, vocab=vocab, stats=stats)
    cfg = data.config
    save_run_inputs(out, cfg, data.vocab, data.stats)
    trainer, best = make_trainer(cfg.training, out, MONITOR, "max", progress)
    module = SentenceModule(cfg.to_dict(), data.vocab.tokens, data.prep.dim, data.stats)
    metrics = fit(trainer, best, module, SentenceDataModule(data), latest, resume)
    if metrics is None:
        return out
    build_sentence_bundle(out, cfg, data, module.model.eval(), samples, metrics)
    plot_training_curves(out / "metrics.jsonl", out / "curves.png", SENTENCE_PANELS)
    write_history_csv(out / "metrics.jsonl", out / "training_history.csv")
    return out
