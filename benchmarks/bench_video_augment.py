"""Video augmentation for I3D views: signlab's against the ASL seed's own code, in one run.

Each side augments the same float32 clips of 150 x 224 x 224 x 3 in [0, 1] (the seed's input) with
its ``medium`` recipe (and ``light`` / ``heavy`` with ``--intensities``), one clip after another,
alternating sides; clips per second is the number of clips over the time taken, so every
transform is paid at its own probability; signlab's on one thread and on one a core (what
``extract i3d`` gives it with one worker). The seed's code is :mod:`seed_video_augmentation`,
unchanged. Then the cost of one I3D feature view: ``extract i3d --views K`` on a real clip, per
view (augmentation + extraction, random I3D weights, this machine's CPU).

    python benchmarks/bench_video_augment.py [--clips 20] [--intensities medium] [--views 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_video_augmentation as seed  # noqa: E402
from common import REPO  # noqa: E402


def clips_per_second(clips: list[np.ndarray], intensity: str, threads: int) -> tuple[float, float, float]:
    """(signlab on one thread, signlab on ``threads``, seed) clips/s over ``clips``, alternating clip by clip."""
    from signlab.data.augment.video import VideoAugmentation

    sides = [VideoAugmentation(intensity), VideoAugmentation(intensity, threads), seed.SignLanguageAugmentation("train", intensity)]
    random.seed(0)
    np.random.seed(0)
    rngs = [np.random.default_rng(0), np.random.default_rng(0)]
    for ours, rng in zip(sides, rngs):
        ours(clips[0], rng)  # the noise bank and the thread pool, made once
    spent = [0.0] * len(sides)
    for clip in clips:
        for side, aug in enumerate(sides):
            started = time.perf_counter()
            out = aug(clip, rngs[side]) if side < 2 else aug(clip)
            spent[side] += time.perf_counter() - started
            assert out.shape[1:] == clip.shape[1:] and (side == 2 or out.dtype == np.float32)
    return tuple(len(clips) / s for s in spent)


def view_cost(views: int) -> list[float]:
    """Seconds to extract a real clip with 1 and with ``views`` feature views (random I3D weights)."""
    from signlab.extract.runner import ExtractionJob, run_items, Item
    from signlab.extract.video import VideoOptions

    clip = REPO.parent / "shared" / "data" / "real" / "wlasl_18068.mp4"
    seconds = []
    for k in (1, views):
        with tempfile.TemporaryDirectory() as tmp:
            job = ExtractionJob("i3d", Path(tmp), VideoOptions(fps=25, size=256, crop=224), random_weights=True, views=k)
            started = time.perf_counter()
            run_items([Item(clip, Path(tmp) / "clip.npy")], job, Console(file=open("/dev/null", "w")))
            seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--intensities", default="medium")
    parser.add_argument("--views", type=int, default=3)
    args = parser.parse_args()
    if args.views < 2:
        parser.error("--views: at least 2 (the cost of a view is the difference from one)")
    rng = np.random.default_rng(1)
    base = rng.random((150, 224, 224, 3), dtype=np.float32)
    clips = [np.roll(base, k, axis=0) for k in range(args.clips)]
    console = Console(width=140)
    threads = os.cpu_count() or 1
    table = Table(title=f"video augmentation, {args.clips} float32 clips of 150 x 224 x 224 x 3")
    for col in ("recipe", "signlab clips/s, 1 thread", f"{threads} threads", "seed clips/s", "ratio, 1 thread",
                f"ratio, {threads} threads"):
        table.add_column(col, justify="left" if col == "recipe" else "right")
    for intensity in args.intensities.split(","):
        one, many, theirs = clips_per_second(clips, intensity, threads)
        table.add_row(intensity, f"{one:.2f}", f"{many:.2f}", f"{theirs:.2f}", f"{one / theirs:.1f}x", f"{many / theirs:.1f}x")
    console.print(table)
    if (REPO.parent / "shared" / "data" / "real").is_dir():
        one, many = view_cost(args.views)
        console.print(f"extract i3d of a real 83-frame WLASL clip (random weights, CPU): {one:.1f} s with 1 view, "
                      f"{many:.1f} s with {args.views}: {(many - one) / (args.views - 1):.1f} s per extra view")


if __name__ == "__main__":
    main()
