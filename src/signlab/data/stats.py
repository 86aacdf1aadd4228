"""Global per-dimension feature statistics, computed in one streaming pass over the train split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signlab.atomic import load_npz, save_npz
from signlab.errors import SignlabError

MIN_STD = 1e-3  # dimensions that barely move in train are not blown up at test time
UNINFORMATIVE_STD = 1e6  # a dimension constant (or never present) in train: standardised, it reads as 0


@dataclass
class FeatureStats:
    """Mean and std per feature dimension (the model's front end standardises with them)."""

    mean: np.ndarray
    std: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.mean)

    def save(self, path: str | Path) -> None:
        save_npz(path, mean=self.mean.astype(np.float32), std=self.std.astype(np.float32))

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        z = load_npz(path, ("mean", "std"), "feature statistics file (mean, std)")
        mean, std = z["mean"], z["std"]
        if mean.ndim != 1 or mean.shape != std.shape or not np.issubdtype(mean.dtype, np.floating):
            raise SignlabError(f"{path}: mean and std must be float vectors of one length, got {mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise SignlabError(f"{path}: mean / std hold NaN, inf or non-positive std values: rebuild the bundle")
        return cls(mean.astype(np.float32), std.astype(np.float32))


class RunningStats:
    """Chan et al.'s parallel mean / variance, merged chunk by chunk in float64.

    ``valid`` (same shape as the chunk) excludes values from the statistics, e.g. the zeros of
    a hand that was not detected. A dimension never seen, or the same in every frame (a corpus that
    fills a column it lacks with one value), gets a std so large that, standardised, it reads as 0
    whatever it holds at inference: the model learns nothing from it, so it must not see it then.
    """

    def __init__(self, dim: int):
        self.n = np.zeros(dim)
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)

    def update(self, x: np.ndarray, valid: np.ndarray | None = None) -> None:
        x = x.astype(np.float64, copy=False)
        w = np.ones_like(x) if valid is None else valid.astype(np.float64)
        n_b = w.sum(axis=0)
        mean_b = np.divide((x * w).sum(axis=0), n_b, out=np.zeros_like(n_b), where=n_b > 0)
        self.merge(n_b, mean_b, (((x - mean_b) ** 2) * w).sum(axis=0))

    def merge(self, n_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        """Add the statistics of another part of the data (its counts, means and squared deviations)."""
        n = self.n + n_b
        delta = mean_b - self.mean
        frac = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
        self.mean = self.mean + delta * frac
        self.m2 = self.m2 + m2_b + delta**2 * self.n * frac
        self.n = n

    def finalize(self) -> FeatureStats:
        var = np.divide(self.m2, self.n, out=np.zeros_like(self.m2), where=self.n > 0)
        std = np.where(var > 1e-12, np.maximum(np.sqrt(var), MIN_STD), UNINFORMATIVE_STD)
        return FeatureStats(self.mean.astype(np.float32), std.astype(np.float32))
