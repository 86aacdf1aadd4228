"""Video-level augmentations for clips ``(T, H, W, C)``, uint8 or float in [0, 1].

No horizontal flip: the dominant hand carries meaning. Every spatial transform draws its
parameters once per clip (the signer does not wobble from frame to frame) and then runs over
chunks of frames in float32 torch, one chunk at a time so the working set stays in cache. A
recipe (:class:`SignLanguageAugmentation`) first applies its temporal selections (crop, speed,
jitter) to the raw clip, then all its spatial steps in one pass per chunk with a single
conversion to float and back, then its temporal masks. Output has the input's dtype and range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from signlab.data.augment.base import Augmentation, Compose
from signlab.data.augment.temporal import (
    SpeedPerturbation,
    TemporalCrop,
    TemporalJitter,
    TemporalMask,
)

CHUNK = 16  # frames per step of the spatial pass (about 2.4 MB of float32 at 224 x 224)


def to_unit_float(frames: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] or float [0, 1] -> float32 [0, 1]."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) * np.float32(1 / 255)
    return frames.astype(np.float32, copy=False)


class SpatialAugmentation(Augmentation):
    """A per-pixel or geometric transform: ``draw`` once per clip, ``run`` on each chunk."""

    def draw(self, clip: np.ndarray, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def run(self, x: torch.Tensor, params: Any, gen: torch.Generator) -> torch.Tensor:
        """x: (n, C, H, W) float32 in [0, 1], channels-last in memory."""
        raise NotImplementedError

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return spatial_pass(x, [(self, self.draw(x, rng))], rng)


def spatial_pass(clip: np.ndarray, steps: Sequence[tuple[SpatialAugmentation, Any]], rng: np.random.Generator) -> np.ndarray:
    """Run ``steps`` over the clip, CHUNK frames at a time, converting each chunk once.

    Consecutive warps are composed into one, so the frames are resampled once.
    """
    steps = _compose_warps(clip.shape[1:3], steps)
    if not steps:
        return clip
    gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    out = np.empty_like(clip)
    uint8 = clip.dtype == np.uint8
    for start in range(0, len(clip), CHUNK):
        x = torch.from_numpy(clip[start : start + CHUNK]).permute(0, 3, 1, 2).float()  # channels-last view
        if uint8:
            x.mul_(1 / 255)
        for step, params in steps:
            x = step.run(x, params, gen)
        x = x.clamp(0, 1)
        if uint8:
            x = x.mul_(255).round_().to(torch.uint8)
        out[start : start + CHUNK] = x.permute(0, 2, 3, 1).numpy()
    return out


class AffineWarp(SpatialAugmentation):
    """A geometric transform about the frame centre. ``draw`` gives its 3 x 3 matrix from output to
    input coordinates (grid_sample's [-1, 1] frame, corrected for the aspect ratio); the pass turns
    a run of warps into one sampling grid."""

    def run(self, x, grid, gen):
        return F.grid_sample(x, grid.expand(x.size(0), -1, -1, -1), mode="bilinear", padding_mode="zeros",
                             align_corners=False)


def warp_matrix(shape: tuple[int, int], angle_deg: float, scale: float) -> np.ndarray:
    h, w = shape
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    return np.array([[cos, sin * h / w, 0.0], [-sin * w / h, cos, 0.0], [0.0, 0.0, 1.0]])


def _grid(shape: tuple[int, int], matrix: np.ndarray) -> torch.Tensor:
    theta = torch.tensor(matrix[:2], dtype=torch.float32)[None]
    return F.affine_grid(theta, [1, 1, *shape], align_corners=False)


def _compose_warps(shape: tuple[int, int], steps: Sequence[tuple[SpatialAugmentation, Any]]) -> list:
    """Replace warp matrices by sampling grids, one grid per run of consecutive warps."""
    out: list[tuple[SpatialAugmentation, Any]] = []
    for step, params in steps:
        if isinstance(step, AffineWarp) and out and isinstance(out[-1][0], AffineWarp):
            params = out.pop()[1] @ params  # applied in order: x(M1 @ M2 @ p)
        out.append((step, params))
    return [(s, _grid(shape, p) if isinstance(s, AffineWarp) else p) for s, p in out]


def affine_warp(x: torch.Tensor, angle_deg: float, scale: float) -> torch.Tensor:
    """Rotate and zoom (T, C, H, W) frames about their centre; what leaves the frame is black."""
    shape = tuple(x.shape[-2:])
    return AffineWarp().run(x, _grid(shape, warp_matrix(shape, angle_deg, scale)), None)


class RandomRotation(AffineWarp):
    def __init__(self, degrees: float = 10, p: float = 0.5):
        self.degrees, self.p = degrees, p

    def draw(self, clip, rng):
        return warp_matrix(clip.shape[1:3], rng.uniform(-self.degrees, self.degrees), 1.0)


class RandomScale(AffineWarp):
    """Zoom in (crop) or out (black border) about the centre, keeping the frame size."""

    def __init__(self, scale_range: tuple[float, float] = (0.9, 1.1), p: float = 0.5):
        self.scale_range, self.p = scale_range, p

    def draw(self, clip, rng):
        return warp_matrix(clip.shape[1:3], 0.0, rng.uniform(*self.scale_range))


_GRAY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


class ColorJitter(SpatialAugmentation):
    """Brightness, contrast and saturation factors in [1 - s, 1 + s], as torchvision defines them.

    Contrast blends with the clip's mean grey level, saturation with each pixel's grey value;
    all of it in [0, 1] (the seed multiplied float frames by 255 and mixed the two scales).
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.1, p: float = 0.5):
        self.brightness, self.contrast, self.saturation, self.p = brightness, contrast, saturation, p

    def draw(self, clip, rng):
        b, c, s = (rng.uniform(1 - v, 1 + v) for v in (self.brightness, self.contrast, self.saturation))
        sample = clip[:, ::4, ::4].astype(np.float32)  # the mean grey level, from every 16th pixel
        mean = float((sample[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)).mean()) if clip.shape[-1] == 3 else float(sample.mean())
        if clip.dtype == np.uint8:
            mean /= 255
        return b, c, s, mean * b

    def run(self, x, params, gen):
        b, c, s, mean = params
        x = x * b
        if x.size(1) != 3:
            return (x - mean) * c + mean
        gray = (x * _GRAY).sum(1, keepdim=True)
        gray = mean + (gray - mean) * c  # grey after the contrast change
        return gray + ((x - mean) * c + mean - gray) * s


class GaussianNoise(SpatialAugmentation):
    def __init__(self, std: float = 0.03, p: float = 0.3):
        self.std, self.p = std, p

    def draw(self, clip, rng):
        return None

    def run(self, x, params, gen):
        n, c, h, w = x.shape
        noise = torch.randn((n, h, w, c), generator=gen).permute(0, 3, 1, 2)  # same layout as x
        return x + noise * self.std


class GaussianBlur(SpatialAugmentation):
    """Separable Gaussian blur (shifted sums), sigma drawn per clip."""

    def __init__(self, kernel_size: int = 3, sigma: tuple[float, float] = (0.3, 1.2), p: float = 0.2):
        if kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd")
        self.kernel_size, self.sigma, self.p = kernel_size, sigma, p

    def draw(self, clip, rng):
        k = self.kernel_size
        g = np.exp(-((np.arange(k) - k // 2) ** 2) / (2 * rng.uniform(*self.sigma) ** 2))
        return (g / g.sum()).tolist()

    def run(self, x, g, gen):
        r = len(g) // 2
        h, w = x.shape[-2:]
        p = F.pad(x, (r, r, r, r), mode="replicate")
        rows = sum(wt * p[..., :, i : i + w] for i, wt in enumerate(g))
        return sum(wt * rows[..., i : i + h, :] for i, wt in enumerate(g))


class SpatialMask(Augmentation):
    """Black out ``num_masks`` rectangles (cutout), the same place in every frame."""

    def __init__(self, num_masks: int = 1, max_size: float = 0.2, p: float = 0.5):
        self.num_masks, self.max_size, self.p = num_masks, max_size, p

    def apply(self, x, rng):
        out = x.copy()
        h, w = x.shape[1:3]
        for _ in range(self.num_masks):
            mh = max(1, int(h * rng.uniform(min(0.1, self.max_size), self.max_size)))
            mw = max(1, int(w * rng.uniform(min(0.1, self.max_size), self.max_size)))
            y, x0 = int(rng.integers(0, h - mh + 1)), int(rng.integers(0, w - mw + 1))
            out[:, y : y + mh, x0 : x0 + mw] = 0
        return out


def _speed(rates: Sequence[float], p: float) -> SpeedPerturbation:
    return SpeedPerturbation(rates, p=p, nearest=True)  # a faster camera skips frames, it does not blend them


RECIPES = {
    "light": lambda: [ColorJitter(0.1, 0.1, 0.0, p=0.3), GaussianNoise(0.02, p=0.2)],
    "medium": lambda: [
        RandomRotation(10, p=0.5), RandomScale((0.95, 1.05), p=0.3), ColorJitter(0.2, 0.2, 0.1, p=0.5),
        GaussianNoise(0.03, p=0.3), _speed((0.9, 0.95, 1.0, 1.05, 1.1), p=0.5), TemporalCrop(0.85, p=0.3),
        TemporalJitter(0.05, 0.05, p=0.3),
    ],
    "heavy": lambda: [
        RandomRotation(15, p=0.6), RandomScale((0.9, 1.1), p=0.5), ColorJitter(0.3, 0.3, 0.2, p=0.6),
        GaussianNoise(0.05, p=0.4), GaussianBlur(3, p=0.2), SpatialMask(1, 0.15, p=0.3),
        _speed((0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15), p=0.6), TemporalCrop(0.8, p=0.4),
        TemporalJitter(0.08, 0.08, p=0.4), TemporalMask(1, 5, p=0.2),
    ],
}


class SignLanguageAugmentation(Compose):
    """The ASL seed's recipes: ``intensity`` light / medium / heavy; nothing outside ``mode='train'``.

    Runs as: frame selections (crop, speed, jitter) on the raw clip; then every spatial step,
    fused into one pass over chunks of frames; then cutouts and temporal masks.
    """

    def __init__(self, mode: str = "train", intensity: str = "medium", transforms: Sequence[Augmentation] | None = None):
        if intensity not in RECIPES:
            raise ValueError(f"intensity must be one of {sorted(RECIPES)}, got {intensity!r}")
        self.mode, self.intensity = mode, intensity
        super().__init__(transforms if transforms is not None else (RECIPES[intensity]() if mode == "train" else []))

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        fires = [(t, rng.random() < t.p) for t in self.transforms]  # decided up front, in recipe order
        for t, fire in fires:  # 1. choose frames
            if fire and isinstance(t, (SpeedPerturbation, TemporalCrop, TemporalJitter)):
                frames = t.apply(frames, rng)
        steps = [(t, t.draw(frames, rng)) for t, fire in fires if fire and isinstance(t, SpatialAugmentation)]
        frames = spatial_pass(frames, steps, rng)  # 2. one fused pass
        for t, fire in fires:  # 3. black out
            if fire and isinstance(t, (SpatialMask, TemporalMask)):
                frames = t.apply(frames, rng)
        return frames
