"""Temporal augmentations for any (T, D) array: pose or other features.

Each keeps at least one frame and never wraps the end of a clip round to its start. Index
arrays are computed once per clip and applied with one gather; no per-frame Python loops.
Resampling interpolates linearly, except, with a ``present`` mask (pose), between a detected
and an undetected value, where it takes the nearest frame: a hand is either there or not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from signlab.data.augment.base import Augmentation

PresentFn = Callable[[np.ndarray], np.ndarray]


def resample(x: np.ndarray, new_len: int, present: PresentFn | None = None) -> np.ndarray:
    """Linear resampling of axis 0 to ``new_len`` (>= 1) frames; dtype is kept."""
    t = len(x)
    new_len = max(1, int(new_len))
    if new_len == t:
        return x
    pos = np.linspace(0, t - 1, new_len)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1)).astype(np.float32)
    mask = present(x) if present is not None else None
    out = np.empty((new_len, *x.shape[1:]), x.dtype)
    step = max(1, (1 << 20) // max(1, x[0].size))  # ~4 MB of float32 at a time, so it stays in cache
    for s in range(0, new_len, step):
        sl = slice(s, s + step)
        a, b = x[lo[sl]].astype(np.float32), x[hi[sl]].astype(np.float32)
        blend = a + (b - a) * w[sl]
        if mask is not None:
            blend = np.where(mask[lo[sl]] & mask[hi[sl]], blend, np.where(w[sl] >= 0.5, b, a))
        out[sl] = blend
    return out


class TimeWarp(Augmentation):
    """Stretch or squeeze time by a factor drawn from [1 - max_warp, 1 + max_warp]."""

    def __init__(self, max_warp: float = 0.15, p: float = 0.5, present: PresentFn | None = None):
        self.max_warp, self.p, self.present = max_warp, p, present

    def apply(self, x, rng):
        return resample(x, round(len(x) * (1 + rng.uniform(-self.max_warp, self.max_warp))), self.present)


class FrameDropout(Augmentation):
    """Drop each frame with ``drop_prob`` (a jittery camera or a slow extractor); one always stays."""

    def __init__(self, drop_prob: float = 0.1, p: float = 0.5):
        self.drop_prob, self.p = drop_prob, p

    def apply(self, x, rng):
        keep = rng.random(len(x)) >= self.drop_prob
        rng.random(len(x))  # a draw this transform once made: seeded runs stay as they were
        if not keep.any():
            keep[rng.integers(len(x))] = True
        return x[keep]


class FrameShift(Augmentation):
    """Shift the clip by up to ``max_shift`` frames, holding the first or last frame.

    The seed's ``np.roll`` moved the end of the last sign to the start of the first.
    """

    def __init__(self, max_shift: int = 4, p: float = 0.5):
        self.max_shift, self.p = max_shift, p

    def apply(self, x, rng):
        shift = int(rng.integers(-self.max_shift, self.max_shift + 1))
        index = np.clip(np.arange(len(x)) - shift, 0, len(x) - 1)
        return x[index]


class TemporalMask(Augmentation):
    """Zero ``num_masks`` segments of up to ``max_mask_len`` frames (SpecAugment on time).

    A segment is at most a quarter of the clip; clips shorter than 4 frames are left alone
    (the seed crashed on them).
    """

    def __init__(self, num_masks: int = 2, max_mask_len: int = 10, p: float = 0.5):
        self.num_masks, self.max_mask_len, self.p = num_masks, max_mask_len, p

    def apply(self, x, rng):
        t = len(x)
        longest = min(self.max_mask_len, t // 4)
        if longest < 1:
            return x
        lengths = rng.integers(1, longest + 1, self.num_masks)
        starts = rng.integers(0, t - lengths + 1)
        frames = np.arange(t)
        masked = ((frames[None] >= starts[:, None]) & (frames[None] < (starts + lengths)[:, None])).any(0)
        out = x.copy()
        out[masked] = 0
        return out
