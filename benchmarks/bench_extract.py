"""Feature extraction speed on CPU: MediaPipe Holistic pose and I3D.

1. Pose, one process: signlab's extractor against calling MediaPipe Holistic directly on the
   same decoded frames, alternating, in one run (target: at least 0.9 of MediaPipe's rate).
2. Pose, whole runs (decode + extract + write) over several copies of a clip with --workers 1
   and 2 (target: near-linear gain).
3. I3D (random weights, 16-frame windows at 224 x 224, batches of 8): windows per second.

Uses the How2Sign clip in ../shared/data/real when present.

    python benchmarks/bench_extract.py [--copies 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from signlab.extract.holistic import HolisticExtractor
from signlab.extract.i3d import I3DExtractor
from signlab.extract.runner import ExtractionJob, run_extraction
from signlab.extract.video import VideoOptions, read_video

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "-d5dN54tH2E_12-1-rgb_front.mp4"


def direct_mediapipe(frames: np.ndarray) -> None:
    from mediapipe.python.solutions import holistic

    with holistic.Holistic(static_image_mode=False, model_complexity=1) as graph:
        for frame in frames:
            graph.process(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not CLIP.is_file():
        print(f"skipped: {CLIP} not found (this benchmark needs a real signer, ../shared/data/real)")
        return
    console = Console()
    frames = read_video(CLIP, VideoOptions(fps=25))
    n = len(frames)
    extractor = HolisticExtractor()
    times: dict[str, list[float]] = {"MediaPipe called directly": [], "signlab HolisticExtractor": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        direct_mediapipe(frames)
        times["MediaPipe called directly"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        extractor.landmarks(frames).features()
        times["signlab HolisticExtractor"].append(time.perf_counter() - t0)
    rate = {k: n / min(v) for k, v in times.items()}
    table = Table(title=f"pose extraction, one process: {CLIP.name} ({n} frames of 1280 x 720 at 25 fps), best of {args.repeats}")
    table.add_column("extractor")
    table.add_column("frames / s", justify="right")
    for k, v in rate.items():
        table.add_row(k, f"{v:.1f}")
    console.print(table)
    console.print(f"signlab / direct: {rate['signlab HolisticExtractor'] / rate['MediaPipe called directly']:.2f} (target >= 0.9)")

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "videos"
        src.mkdir()
        for i in range(args.copies):
            shutil.copy(CLIP, src / f"clip{i}.mp4")
        wall = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            run_extraction([src], ExtractionJob("pose", Path(tmp) / f"out{workers}", VideoOptions(fps=25), workers=workers),
                           Console(quiet=True))
            wall[workers] = time.perf_counter() - t0
    table = Table(title=f"whole pose runs over {args.copies} copies of the clip (decode + extract + write)")
    for col in ("workers", "wall time (s)", "frames / s", "gain"):
        table.add_column(col, justify="right")
    for w, secs in wall.items():
        table.add_row(str(w), f"{secs:.1f}", f"{args.copies * n / secs:.1f}", f"{wall[1] / secs:.2f}x")
    console.print(table)

    clip = read_video(CLIP, VideoOptions(fps=25, size=256, crop=224))
    i3d = I3DExtractor(None, stack_size=16, step_size=4, batch_size=8)
    i3d.extract(clip[:16])  # warm-up
    t0 = time.perf_counter()
    features = i3d.extract(clip)
    secs = time.perf_counter() - t0
    console.print(f"I3D (random weights), {len(clip)} frames -> {len(features)} windows of 16 x 224 x 224 in {secs:.1f} s: "
                  f"{len(features) / secs:.2f} windows/s, {len(clip) / secs:.1f} video frames/s "
                  f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
