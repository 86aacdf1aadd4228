"""Augmentation for sign language at pose and feature level, plus batch mixing.

Every transform takes a seeded :class:`numpy.random.Generator`; :class:`AugmentedDataset`
seeds one per (seed, epoch, sample), so a run is reproducible whatever the number of DataLoader
workers. There is no horizontal flip: the dominant hand carries meaning (:class:`Mirror` exists
for pose, off unless asked for, and swaps the hands).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from signlab.config import AugmentationConfig
from signlab.data.augment.base import Augmentation, Compose
from signlab.data.augment.features import (
    FeatureAugmentation,
    FeatureDropout,
    FeatureNoise,
    TemporalFeatureMask,
)
from signlab.data.augment.mixing import BatchMix, Mixed
from signlab.data.augment.pose import (
    HandDropout,
    Mirror,
    PoseAugmentation,
    PoseNoise,
    RandomPoseScale,
    RandomRotation3D,
    RandomShear,
    RandomTranslation,
)
from signlab.data.augment.temporal import (
    FrameDropout,
    FrameShift,
    TemporalMask,
    TimeWarp,
    resample,
)

__all__ = [
    "Augmentation",
    "AugmentedDataset",
    "BatchMix",
    "Compose",
    "FeatureAugmentation",
    "FeatureDropout",
    "FeatureNoise",
    "FrameDropout",
    "FrameShift",
    "HandDropout",
    "Mirror",
    "Mixed",
    "PoseAugmentation",
    "PoseNoise",
    "RandomPoseScale",
    "RandomRotation3D",
    "RandomShear",
    "RandomTranslation",
    "TemporalFeatureMask",
    "TemporalMask",
    "TimeWarp",
    "recipe",
    "resample",
]


def recipe(pose_layout: bool, cfg: AugmentationConfig = AugmentationConfig()) -> Augmentation:
    """The training recipe for a kind of features: pose/holistic-540 (``pose_layout``), or any other."""
    return PoseAugmentation(**cfg.pose.model_dump()) if pose_layout else FeatureAugmentation(**cfg.features.model_dump())


class AugmentedDataset(Dataset):
    """Wraps a dataset of dicts and augments each item's ``features`` with ``transform``.

    ``usable(index, frames)`` may veto an augmented clip (e.g. sped up too far for its CTC
    targets); the item is then returned as it is.
    """

    def __init__(self, base: Dataset, transform: Augmentation, *, seed: int = 0,
                 usable: Callable[[int, int], bool] | None = None):
        self.base, self.transform, self.seed, self.usable, self.epoch = base, transform, seed, usable, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.base[index])
        x = item["features"]
        arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        out = self.transform(arr, np.random.default_rng([self.seed, self.epoch, index]))
        if out is not arr and (self.usable is None or self.usable(index, len(out))):
            item["features"] = torch.from_numpy(np.ascontiguousarray(out)) if isinstance(x, torch.Tensor) else out
        return item
