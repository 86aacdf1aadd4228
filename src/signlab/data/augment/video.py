"""The ASL seed's video augmentation (``SignLanguageAugmentation``: light, medium, heavy) for clips
that go through a frozen feature extractor (I3D): ``extract i3d --views K`` writes K augmented
feature views of each clip, and training draws one a clip each epoch.

Same transforms, probabilities and strengths as the seed (rotation, scale, colour jitter, noise,
blur and cutout; speed, temporal crop, frame drop / repeat, temporal mask; never a horizontal
flip), done the way a video pipeline does them rather than frame by frame in float64:

* the temporal transforms only build an index of source frames, gathered once;
* rotation and scale are one affine warp per frame, on uint8 pixels;
* brightness, contrast and saturation are one 3x4 colour matrix (saturation blends with the grey
  image, as torchvision does, instead of a round trip through HSV per frame);
* Gaussian noise is a window of a bank of 4M normal draws in whole pixel levels (uint8 pixels
  cannot hold more), at a random offset for each frame, added with saturation: within a frame
  every value's noise is independent, and drawing 22M values a clip (the seed's way, 200 ms) is
  what made noise the slowest transform;
* a float clip is converted to uint8 frame by frame as it is gathered, and back through a lookup
  table: one pass each way.

Speed changes pick the nearest frame (the seed blends neighbours, which ghosts moving hands).
Input: (T, H, W, 3) uint8, or float in [0, 1]; output: the same dtype and range.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

GREY = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class VideoRecipe:
    """One intensity of the seed's recipe: each transform's strength and probability (0: off)."""

    rotation: float = 0.0
    rotation_p: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    scale_p: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    color_p: float = 0.0
    noise: float = 0.0
    noise_p: float = 0.0
    blur_p: float = 0.0
    cutout: float = 0.0
    cutout_p: float = 0.0
    speeds: tuple[float, ...] = (1.0,)
    speed_p: float = 0.0
    crop: float = 1.0
    crop_p: float = 0.0
    jitter: float = 0.0
    jitter_p: float = 0.0
    mask_len: int = 0
    mask_p: float = 0.0


RECIPES = {
    "light": VideoRecipe(brightness=0.1, contrast=0.1, color_p=0.3, noise=0.02, noise_p=0.2),
    "medium": VideoRecipe(rotation=10, rotation_p=0.5, scale=(0.95, 1.05), scale_p=0.3, brightness=0.2, contrast=0.2,
                          saturation=0.1, color_p=0.5, noise=0.03, noise_p=0.3, speeds=(0.9, 0.95, 1.0, 1.05, 1.1),
                          speed_p=0.5, crop=0.85, crop_p=0.3, jitter=0.05, jitter_p=0.3),
    "heavy": VideoRecipe(rotation=15, rotation_p=0.6, scale=(0.9, 1.1), scale_p=0.5, brightness=0.3, contrast=0.3,
                         saturation=0.2, color_p=0.6, noise=0.05, noise_p=0.4, blur_p=0.2, cutout=0.15, cutout_p=0.3,
                         speeds=(0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15), speed_p=0.6, crop=0.8, crop_p=0.4, jitter=0.08,
                         jitter_p=0.4, mask_len=5, mask_p=0.2),
}

NOISE_BANK = 1 << 22  # normal draws in the noise bank: 28 frames of 224 x 224 x 3


@functools.cache
def noise_bank(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """``NOISE_BANK`` draws of N(0, sigma) pixel levels (a fixed seed: a clip's noise depends only on
    where its frames read the bank), split into what to add and what to subtract, so that each is one
    saturating uint8 operation."""
    levels = np.rint(np.random.default_rng(0).standard_normal(NOISE_BANK) * sigma).clip(-255, 255)
    return levels.clip(0, None).astype(np.uint8), (-levels).clip(0, None).astype(np.uint8)


FLOAT_LEVELS = (np.arange(256) / 255).astype(np.float32)  # uint8 level -> [0, 1], the way back for float clips


class VideoAugmentation:
    """``aug(frames, rng)``: one random draw of the recipe ``intensity`` over a whole clip."""

    def __init__(self, intensity: str = "medium"):
        if intensity not in RECIPES:
            raise ValueError(f"video augmentation intensity {intensity!r}: one of {', '.join(RECIPES)}")
        self.intensity, self.r = intensity, RECIPES[intensity]

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r = self.r
        index = self.frame_index(len(frames), rng)
        if frames.dtype == np.uint8:
            x = frames[index]
        else:  # gathered and converted in one pass, frame by frame
            x = np.empty((len(index), *frames.shape[1:]), np.uint8)
            for i, j in enumerate(index):
                cv2.convertScaleAbs(frames[j], dst=x[i], alpha=255.0)
        t, h, w, _ = x.shape
        angle = rng.uniform(-r.rotation, r.rotation) if rng.random() < r.rotation_p else 0.0
        scale = rng.uniform(*r.scale) if rng.random() < r.scale_p else 1.0
        if angle or scale != 1.0:  # the seed's two warps (rotate, then rescale about the centre) as one
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
            warped = np.empty_like(x)
            for i, f in enumerate(x):
                cv2.warpAffine(f, matrix, (w, h), dst=warped[i])
            x = warped
        if rng.random() < r.color_p:
            x = cv2.transform(x.reshape(t * h, w, 3), self.color_matrix(x, rng)).reshape(x.shape)
        if rng.random() < r.noise_p:
            add, subtract = noise_bank(round(r.noise * 255, 6))
            flat, n = x.reshape(t, -1), h * w * 3
            for i, start in enumerate(rng.integers(0, NOISE_BANK - n + 1, t)):
                cv2.add(flat[i], add[start : start + n], dst=flat[i])
                cv2.subtract(flat[i], subtract[start : start + n], dst=flat[i])
        if rng.random() < r.blur_p:
            x = np.stack([cv2.GaussianBlur(f, (3, 3), 0) for f in x])
        if rng.random() < r.cutout_p:
            mh, mw = int(h * rng.uniform(0.1, r.cutout)), int(w * rng.uniform(0.1, r.cutout))
            top, left = rng.integers(0, h - mh + 1), rng.integers(0, w - mw + 1)
            x[:, top : top + mh, left : left + mw] = 0
        if rng.random() < r.mask_p and t >= 4:
            n = int(rng.integers(1, min(r.mask_len, t // 4) + 1))
            start = int(rng.integers(0, t - n + 1))
            x[start : start + n] = 0
        if frames.dtype == np.uint8:
            return x
        return cv2.LUT(x.reshape(t * h, w * 3), FLOAT_LEVELS).reshape(x.shape).astype(frames.dtype, copy=False)

    def frame_index(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Which source frame each output frame is: speed change, temporal crop, drop / repeat."""
        r, index = self.r, np.arange(n)
        if rng.random() < r.speed_p:
            rate = float(rng.choice(r.speeds))
            index = np.rint(np.linspace(0, n - 1, max(1, int(n / rate)))).astype(np.int64)
        if rng.random() < r.crop_p:
            keep = max(1, int(len(index) * rng.uniform(r.crop, 1.0)))
            start = int(rng.integers(0, len(index) - keep + 1))
            index = index[start : start + keep]
        if rng.random() < r.jitter_p:
            counts = 1 - (rng.random(len(index)) < r.jitter) + (rng.random(len(index)) < r.jitter)
            if counts.any():
                index = np.repeat(index, counts)
        return index

    def color_matrix(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Brightness (+d), contrast about the clip's mean (x f), saturation (blend with grey, s) as
        one 3x4 matrix on 0..255 pixels."""
        r = self.r
        d = rng.uniform(-r.brightness, r.brightness) * 255 if r.brightness else 0.0
        f = rng.uniform(1 - r.contrast, 1 + r.contrast) if r.contrast else 1.0
        s = rng.uniform(1 - r.saturation, 1 + r.saturation) if r.saturation else 1.0
        mean = float(x[:: max(1, len(x) // 8), ::4, ::4].mean()) + d  # the brightened clip's mean, from a sample
        m = f * (s * np.eye(3, dtype=np.float32) + (1 - s) * np.ones((3, 1), np.float32) * GREY)
        offset = f * d + (1 - f) * mean
        return np.concatenate([m, np.full((3, 1), offset, np.float32)], 1)
