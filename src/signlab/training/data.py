"""From manifest rows and a config to usable splits: scanned, filtered, with vocabulary and stats."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset

from signlab.atomic import write_text
from signlab.config import Config, SentenceConfig
from signlab.data.augment import AugmentedDataset
from signlab.data.dataset import (
    GlossDataset,
    LengthBucketBatchSampler,
    hybrid_collate_fn,
)
from signlab.data.features import (
    Exclusion,
    Preprocessor,
    ScanResult,
    infer_dim,
    report_exclusions,
    scan,
)
from signlab.data.manifest import Sample
from signlab.data.stats import FeatureStats, RunningStats
from signlab.errors import SignlabError
from signlab.models import auto_subsampling, subsampled_lengths
from signlab.vocab import Vocabulary

log = logging.getLogger(__name__)
C = TypeVar("C", Config, SentenceConfig)


def ctc_min_frames(glosses: Sequence[str]) -> int:
    """CTC needs one frame per label plus a blank between two equal neighbours."""
    return len(glosses) + sum(a == b for a, b in zip(glosses, glosses[1:]))


@dataclass
class GlossData:
    config: Config  # with model.input_dim and model.subsampling resolved for this data
    prep: Preprocessor
    stats: FeatureStats
    vocab: Vocabulary
    splits: dict[str, ScanResult]

    @property
    def excluded(self) -> list[Exclusion]:
        return [e for r in self.splits.values() for e in r.excluded]

    def write_exclusions(self, path: Path) -> None:
        buffer = io.StringIO()
        w = csv.writer(buffer)
        w.writerow(["source", "row", "id", "split", "reason", "message"])
        for e in self.excluded:
            w.writerow([e.sample.source, e.sample.row, e.sample.id, e.sample.split, e.kind, e.reason])
        write_text(path, buffer.getvalue())


def resolve_for_data(cfg: C, samples: Sequence[Sample]) -> C:
    """A copy of ``cfg`` (gloss or sentence) with ``model.input_dim`` (checked against the features
    when set) and ``model.subsampling: auto`` (4 for the 540-dim pose layout, 1 otherwise) filled in."""
    found = infer_dim(samples)
    if cfg.model.input_dim is not None and cfg.model.input_dim != found:
        raise SignlabError(
            f"the features have {found} dims per frame but model.input_dim is {cfg.model.input_dim}: "
            f"pass --set model.input_dim={found} (or null to take it from the data)"
        )
    cfg = cfg.model_copy(deep=True)
    cfg.model.input_dim = found
    if cfg.model.subsampling == "auto":
        cfg.model.subsampling = auto_subsampling(found)
    return cfg


def prepare_gloss_data(
    samples: Sequence[Sample],
    cfg: Config,
    *,
    vocab: Vocabulary | None = None,
    stats: FeatureStats | None = None,
) -> GlossData:
    """Scan the train and dev splits once, exclude unusable rows (reported with their reason),
    and build the vocabulary and feature statistics from train unless they are given."""
    by_split = {s: [x for x in samples if x.split == s] for s in ("train", "dev")}
    for split, rows in by_split.items():
        if not rows:
            raise SignlabError(
                f"the manifest has no {split!r} rows; training needs train rows, and dev rows to pick the "
                "best checkpoint and stop early"
            )
    cfg = resolve_for_data(cfg, by_split["train"])
    dim = cfg.model.input_dim
    prep = Preprocessor(dim, cfg.data.pose_normalization)
    factor, max_frames = cfg.model.subsampling, cfg.data.max_frames

    def check(sample: Sample, features: np.ndarray) -> tuple[str, str] | None:
        frames = len(features)
        if not sample.glosses:
            return "no_glosses", f"{sample.where}: the glosses column is empty"
        need, have = ctc_min_frames(sample.glosses), subsampled_lengths(min(frames, max_frames), factor)
        if have < need:
            return "too_short", (
                f"{sample.where}: {len(sample.glosses)} glosses need {need} CTC frames but the clip gives {have} "
                f"({frames} frames, resampled to at most {max_frames}, subsampled x{factor})"
            )
        return None

    running = RunningStats(dim) if stats is None else None
    cache = int(cfg.data.cache_gb * 2**30)
    splits = {"train": scan(by_split["train"], prep, check=check, stats=running, cache_bytes=cache, desc="scanning train")}
    splits["dev"] = scan(by_split["dev"], prep, check=check, cache_bytes=cache, desc="scanning dev")
    for split, result in splits.items():
        report_exclusions(result.excluded, split, len(by_split[split]))
        if not result.samples:
            raise SignlabError(f"no usable {split} rows left (see the warnings above for why each was excluded)")
    if vocab is None:
        vocab = Vocabulary.build((s.glosses for s in splits["train"].samples), cfg.data.min_gloss_count)
    unknown = vocab.unknown(g for s in splits["dev"].samples for g in s.glosses)
    if unknown:
        log.warning(
            "dev: %d gloss types never occur in train (e.g. %s); the model cannot output them, so they count "
            "as errors in dev WER", len(unknown), ", ".join(sorted(unknown)[:5]),
        )
    return GlossData(cfg, prep, stats or running.finalize(), vocab, splits)


class GlossDataModule(L.LightningDataModule):
    """Length-bucketed loaders; each DDP process takes its own share of the batches. With
    ``data.augmentation`` the training clips are augmented (``augmentation`` section), except
    when that would make a clip too short for its CTC targets."""

    def __init__(self, data: GlossData):
        super().__init__()
        self.data, self.cfg = data, data.config

    def _loader(self, split: str, train: bool) -> DataLoader:
        d, t = self.data, self.cfg.training
        ds: Dataset = GlossDataset(d.splits[split], d.prep, d.vocab, self.cfg.data.max_frames)
        lengths = ds.lengths
        if train and self.cfg.data.augmentation:
            factor = self.cfg.model.subsampling
            need = [ctc_min_frames(s.glosses) for s in d.splits[split].samples]

            def usable(index: int, frames: int) -> bool:  # still long enough for its CTC targets?
                return subsampled_lengths(min(frames, self.cfg.data.max_frames), factor) >= need[index]

            ds = AugmentedDataset(ds, config=self.cfg.augmentation, seed=t.seed, usable=usable)
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
