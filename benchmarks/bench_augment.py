"""Video augmentation speed: signlab's whole-clip transforms vs plain per-frame loops.

Each reference does the same maths as the signlab transform, one frame at a time in NumPy, the
way the ASL seed structures its augmentations (a Python loop over frames, float64 random draws,
a Python loop for speed perturbation and jitter). Every transform runs with probability 1 on
a 150 x 224 x 224 x 3 uint8 clip; the medium recipe runs both as "all steps fire" (the worst
case, compared with the reference) and with its real probabilities (clips per second).

    python benchmarks/bench_augment.py [--frames 150] [--size 224] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from signlab.data.augment import (
    ColorJitter,
    FeatureAugmentation,
    GaussianBlur,
    GaussianNoise,
    PoseAugmentation,
    RandomRotation,
    RandomScale,
    SignLanguageAugmentation,
    SpatialMask,
    SpeedPerturbation,
    TemporalCrop,
    TemporalJitter,
)
from signlab.data.augment.video import affine_warp, to_unit_float
from signlab.data.grammar import Grammar
from signlab.data.pose import normalize_body
from signlab.data.synthetic import SyntheticSigner, make_lexicon, sample_signer


def pose_clip() -> np.ndarray:
    g = Grammar()
    signer = SyntheticSigner(make_lexicon(g.glosses, 0), sample_signer(np.random.default_rng(0)))
    x = signer.render(tuple(g.glosses[:6]), np.random.default_rng(0))
    return normalize_body(np.resize(x, (150, 540)))

# ---------------------------------------------------------------- per-frame references


def ref_warp(frames: np.ndarray, angle: float, scale: float) -> np.ndarray:
    """Bilinear rotation + zoom about the centre, frame by frame."""
    out = []
    for frame in frames:
        f = frame.astype(np.float64) / 255
        h, w = f.shape[:2]
        a = math.radians(angle)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        sx = (np.cos(a) * (xs - cx) + np.sin(a) * (ys - cy)) / scale + cx
        sy = (-np.sin(a) * (xs - cx) + np.cos(a) * (ys - cy)) / scale + cy
        x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
        wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
        acc = np.zeros_like(f)
        for dy, dx, wgt in ((0, 0, (1 - wx) * (1 - wy)), (0, 1, wx * (1 - wy)), (1, 0, (1 - wx) * wy), (1, 1, wx * wy)):
            yy, xx = y0 + dy, x0 + dx
            ok = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
            acc += np.where(ok, f[yy.clip(0, h - 1), xx.clip(0, w - 1)], 0) * wgt
        out.append(np.clip(np.rint(acc * 255), 0, 255).astype(np.uint8))
    return np.stack(out)


def ref_color(frames, rng):
    b, c, s = rng.uniform(0.8, 1.2, 3)
    out = []
    mean = None
    for frame in frames:
        f = frame.astype(np.float64) / 255 * b
        gray = f @ np.array([0.299, 0.587, 0.114])
        if mean is None:
            mean = float(np.mean([(fr.astype(np.float64) / 255 * b) @ np.array([0.299, 0.587, 0.114]) for fr in frames]))
        f = (f - mean) * c + mean
        gray = mean + (gray - mean) * c
        f = gray[..., None] + (f - gray[..., None]) * s
        out.append(np.clip(np.rint(np.clip(f, 0, 1) * 255), 0, 255).astype(np.uint8))
    return np.stack(out)


def ref_noise(frames, rng):
    return np.stack([np.clip(np.rint((f / 255 + rng.normal(0, 0.03, f.shape)) * 255), 0, 255).astype(np.uint8) for f in frames])


def ref_blur(frames, rng, k=3):
    sigma = rng.uniform(0.3, 1.2)
    g = np.exp(-((np.arange(k) - k // 2) ** 2) / (2 * sigma**2))
    g /= g.sum()
    out = []
    for frame in frames:
        f = np.pad(frame.astype(np.float64), ((k // 2,) * 2, (k // 2,) * 2, (0, 0)), mode="edge")
        rows = sum(g[i] * f[:, i : i + frame.shape[1]] for i in range(k))
        out.append(np.clip(np.rint(sum(g[i] * rows[i : i + frame.shape[0]] for i in range(k))), 0, 255).astype(np.uint8))
    return np.stack(out)


def ref_mask(frames, rng):
    out = []
    h, w = frames.shape[1:3]
    mh, mw = int(h * rng.uniform(0.1, 0.2)), int(w * rng.uniform(0.1, 0.2))
    y, x = rng.integers(0, h - mh), rng.integers(0, w - mw)
    for frame in frames:
        f = frame.copy()
        f[y : y + mh, x : x + mw] = 0
        out.append(f)
    return np.stack(out)


def ref_speed(frames, rng):
    rate = rng.choice([0.9, 0.95, 1.05, 1.1])
    t = len(frames)
    out = []
    for idx in np.linspace(0, t - 1, int(t / rate)):
        lo, hi = int(idx), min(int(idx) + 1, t - 1)
        a = idx - lo
        out.append(np.clip(np.rint((1 - a) * frames[lo] + a * frames[hi]), 0, 255).astype(np.uint8))
    return np.stack(out)


def ref_crop(frames, rng):
    n = int(len(frames) * rng.uniform(0.85, 1.0))
    start = rng.integers(0, len(frames) - n + 1)
    return np.stack([frames[i] for i in range(start, start + n)])


def ref_jitter(frames, rng):
    out = []
    for f in frames:
        if rng.random() < 0.05:
            continue
        out.append(f)
        if rng.random() < 0.05:
            out.append(f)
    return np.stack(out)


PAIRS = [  # name, signlab transform, per-frame reference
    ("RandomRotation", RandomRotation(10, p=1), lambda f, r: ref_warp(f, r.uniform(-10, 10), 1.0)),
    ("RandomScale", RandomScale((0.95, 1.05), p=1), lambda f, r: ref_warp(f, 0.0, r.uniform(0.95, 1.05))),
    ("ColorJitter", ColorJitter(0.2, 0.2, 0.1, p=1), ref_color),
    ("GaussianNoise", GaussianNoise(0.03, p=1), ref_noise),
    ("GaussianBlur", GaussianBlur(3, p=1), ref_blur),
    ("SpatialMask", SpatialMask(1, 0.2, p=1), ref_mask),
    ("SpeedPerturbation", SpeedPerturbation((0.9, 0.95, 1.05, 1.1), p=1), ref_speed),
    ("TemporalCrop", TemporalCrop(0.85, p=1), ref_crop),
    ("TemporalJitter", TemporalJitter(0.05, 0.05, p=1), ref_jitter),
]
MEDIUM = ["RandomRotation", "RandomScale", "ColorJitter", "GaussianNoise", "SpeedPerturbation", "TemporalCrop", "TemporalJitter"]


def best_of(fn, repeats):
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(np.random.default_rng(i))
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    clip = np.random.default_rng(0).integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8)
    console = Console()

    # the two warps do the same maths: check before timing
    fast = (affine_warp(torch.from_numpy(to_unit_float(clip[:2])).permute(0, 3, 1, 2), 7.0, 1.03).permute(0, 2, 3, 1).numpy() * 255)
    diff = np.abs(fast - ref_warp(clip[:2], 7.0, 1.03).astype(np.float32))[:, 8:-8, 8:-8].mean()

    table = Table(title=f"video augmentation, one {args.frames} x {args.size} x {args.size} x 3 uint8 clip, "
                        f"{torch.get_num_threads()} threads (best of {args.repeats})")
    for col in ("transform", "per-frame reference (ms)", "signlab (ms)", "speed-up"):
        table.add_column(col, justify="left" if col == "transform" else "right")
    ref_total = ours_total = 0.0
    for name, aug, ref in PAIRS:
        ours = best_of(lambda r, aug=aug: aug.apply(clip, r), args.repeats)
        theirs = best_of(lambda r, ref=ref: ref(clip, r), args.repeats)
        if name in MEDIUM:
            ref_total, ours_total = ref_total + theirs, ours_total + ours
        table.add_row(name, f"{1000 * theirs:.0f}", f"{1000 * ours:.0f}", f"{theirs / ours:.1f}x")
    everything = SignLanguageAugmentation("train", "medium")
    for t in everything.transforms:
        t.p = 1.0
    recipe_all = best_of(lambda r: everything(clip, r), args.repeats)
    table.add_row("[bold]medium recipe, every step fires[/]", f"{1000 * ref_total:.0f}", f"{1000 * recipe_all:.0f}",
                  f"[bold]{ref_total / recipe_all:.1f}x[/]")
    console.print(table)
    recipe = SignLanguageAugmentation("train", "medium")
    n = 10
    t0 = time.perf_counter()
    for i in range(n):
        recipe(clip, np.random.default_rng(100 + i))
    per_clip = (time.perf_counter() - t0) / n
    console.print(f"medium recipe with its probabilities: {1 / per_clip:.1f} clips/s ({1000 * per_clip:.0f} ms a clip); "
                  f"every-step speed-up {ref_total / recipe_all:.1f}x (target >= 10x); "
                  f"rotation vs reference: mean |diff| {diff:.2f} grey levels")
    rng = np.random.default_rng(0)
    for name, x, aug in (("pose (150 x 540)", pose_clip(), PoseAugmentation(p=1.0)),
                         ("I3D features (150 x 1024)", rng.normal(size=(150, 1024)).astype(np.float32), FeatureAugmentation())):
        t0 = time.perf_counter()
        for i in range(200):
            aug(x, np.random.default_rng(i))
        console.print(f"{name} recipe, every step: {200 / (time.perf_counter() - t0):.0f} clips/s")


if __name__ == "__main__":
    main()
