"""The ASL seed's video augmentation (``SignLanguageAugmentation``: light, medium, heavy) for clips
that go through a frozen feature extractor (I3D): ``extract i3d --views K`` writes K augmented
feature views of each clip, and training draws one a clip each epoch.

Same transforms, probabilities and strengths as the seed (rotation, scale, colour jitter, noise,
blur and cutout; speed, temporal crop, frame drop / repeat, temporal mask; never a horizontal
flip), done the way a video pipeline does them rather than frame by frame in float64:

* every random choice is drawn first; then the clip goes through all its transforms a chunk of
  8 frames at a time, while the chunk is in the CPU's cache (gathered, converted to uint8,
  warped, coloured, noised, back to float), instead of one pass over the whole clip per
  transform; chunks are spread over ``threads`` threads, with the same result on any number;
* the temporal transforms only build an index of source frames;
* rotation and scale are one warp, its pixel map computed once a clip, and a chunk is warped as
  one image whose 24 channels are its frames (one lookup of where each pixel reads, not eight);
* brightness, contrast and saturation are one 3x4 colour matrix (saturation blends with the grey
  image, as torchvision does, instead of a round trip through HSV per frame), contrast about the
  mean of a sample of the source frames;
* Gaussian noise is a window of a bank of 4M normal draws in whole pixel levels (uint8 pixels
  cannot hold more), at a random offset for each frame, added with saturation: within a frame
  every value's noise is independent, and drawing 22M values a clip (the seed's way) is what made
  noise the slowest transform;
* a float clip goes to uint8 and back through a lookup table, frame by frame.

Speed changes pick the nearest frame (the seed blends neighbours, which ghosts moving hands).
Input: (T, H, W, 3) uint8, or float in [0, 1]; output: the same dtype and range.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
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


def warp_maps(angle: float, scale: float, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The seed's two warps (rotate by ``angle`` degrees, then rescale about the centre) as one,
    in OpenCV's fixed-point maps: where each output pixel reads, computed once a clip rather than
    by ``warpAffine`` in every frame (the same bilinear warp, to 1/32 of a pixel)."""
    inverse = cv2.invertAffineTransform(cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    (a, b, c), (d, e, f) = inverse.astype(np.float32)
    return cv2.convertMaps(a * xs + b * ys + c, d * xs + e * ys + f, cv2.CV_16SC2)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool a process for each thread count: starting threads for every clip costs ~10%."""
    return ThreadPoolExecutor(threads, thread_name_prefix="video-augment")


FLOAT_LEVELS = (np.arange(256) / 255).astype(np.float32)  # uint8 level -> [0, 1], the way back for float clips
CHUNK = 8  # frames that go through the transforms together (warped as the 24 channels of one image)


class VideoAugmentation:
    """``aug(frames, rng)``: one random draw of the recipe ``intensity`` over a whole clip."""

    def __init__(self, intensity: str = "medium", threads: int = 1):
        if intensity not in RECIPES:
            raise ValueError(f"video augmentation intensity {intensity!r}: one of {', '.join(RECIPES)}")
        self.intensity, self.r, self.threads = intensity, RECIPES[intensity], threads

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r = self.r
        index = self.frame_index(len(frames), rng)
        t, h, w = len(index), *frames.shape[1:3]
        angle = rng.uniform(-r.rotation, r.rotation) if rng.random() < r.rotation_p else 0.0
        scale = rng.uniform(*r.scale) if rng.random() < r.scale_p else 1.0
        warp = warp_maps(angle, scale, w, h) if angle or scale != 1.0 else None
        colour = None
        if rng.random() < r.color_p:  # contrast's pivot from every 4th pixel of 8 frames, gathered alone
            colour = self.color_matrix(frames[index[:: max(1, t // 8)], ::4, ::4], rng)
        noise = rng.integers(0, NOISE_BANK - h * w * 3 + 1, t) if rng.random() < r.noise_p else None
        blur = rng.random() < r.blur_p
        cutout = None
        if rng.random() < r.cutout_p:
            mh, mw = int(h * rng.uniform(0.1, r.cutout)), int(w * rng.uniform(0.1, r.cutout))
            top, left = rng.integers(0, h - mh + 1), rng.integers(0, w - mw + 1)
            cutout = np.s_[top : top + mh, left : left + mw]
        masked = np.zeros(t, bool)
        if rng.random() < r.mask_p and t >= 4:
            n = int(rng.integers(1, min(r.mask_len, t // 4) + 1))
            start = int(rng.integers(0, t - n + 1))
            masked[start : start + n] = True
        x = np.empty((t, h, w, 3), np.uint8)  # the clip in uint8 pixels
        out = x if frames.dtype == np.uint8 else np.empty((t, h, w, 3), np.float32)
        add, subtract = noise_bank(round(r.noise * 255, 6)) if noise is not None else (None, None)

        def run(start: int, stop: int) -> None:
            """Frames ``start`` to ``stop`` through every transform while they are in the cache."""
            for i in range(start, stop):
                if frames.dtype == np.uint8:
                    x[i] = frames[index[i]]
                else:
                    cv2.convertScaleAbs(frames[index[i]], dst=x[i], alpha=255.0)
            if warp is not None:  # the chunk's frames side by side as the channels of one image: one remap
                warped = cv2.remap(cv2.merge(list(x[start:stop])), *warp, cv2.INTER_LINEAR)
                cv2.mixChannels([warped], list(x[start:stop]), [c for k in range(3 * (stop - start)) for c in (k, k)])
            for i in range(start, stop):
                f = x[i]
                if colour is not None:
                    cv2.transform(f, colour, dst=f)
                if noise is not None:
                    flat, at = f.reshape(-1), noise[i]
                    cv2.add(flat, add[at : at + flat.size], dst=flat)
                    cv2.subtract(flat, subtract[at : at + flat.size], dst=flat)
                if blur:
                    f[:] = cv2.GaussianBlur(f, (3, 3), 0)
                if cutout is not None:
                    f[cutout] = 0
                if masked[i]:
                    f[:] = 0
                if out is not x:
                    cv2.LUT(f.reshape(h, w * 3), FLOAT_LEVELS, dst=out[i].reshape(h, w * 3))

        chunks = [(a, min(t, a + CHUNK)) for a in range(0, t, CHUNK)]
        if self.threads > 1 and len(chunks) > 1:
            list(_pool(self.threads).map(lambda c: run(*c), chunks))
        else:
            for c in chunks:
                run(*c)
        return out.astype(frames.dtype, copy=False)

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

    def color_matrix(self, sample: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Brightness (+d), contrast about the clip's mean (x f; the mean of ``sample``, pixels of a
        few of its frames), saturation (blend with grey, s) as one 3x4 matrix on 0..255 pixels."""
        r = self.r
        d = rng.uniform(-r.brightness, r.brightness) * 255 if r.brightness else 0.0
        f = rng.uniform(1 - r.contrast, 1 + r.contrast) if r.contrast else 1.0
        s = rng.uniform(1 - r.saturation, 1 + r.saturation) if r.saturation else 1.0
        levels = 1 if sample.dtype == np.uint8 else 255
        mean = float(sample.mean()) * levels + d  # the brightened clip's mean
        m = f * (s * np.eye(3, dtype=np.float32) + (1 - s) * np.ones((3, 1), np.float32) * GREY)
        offset = f * d + (1 - f) * mean
        return np.concatenate([m, np.full((3, 1), offset, np.float32)], 1)
