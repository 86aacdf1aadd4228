"""Corpus preparation throughput: `signlab corpus prepare` against the obvious per-file loop, in one run.

1. **Kaggle Isolated Signs, 10,000 parquet clips.** The real clips in ``../shared/data/real/asl-signs``
   hard-linked under new participant ids until there are ``--clips`` of them (the files are real,
   the page cache is warm: labelled so). The reference is the loop every Kaggle notebook starts
   from (``pd.read_parquet(path, columns=["x", "y", "z"])`` reshaped to 543 landmarks a frame),
   followed by the same mapping into ``pose/holistic-540`` and ``np.save``: the same files out.
   signlab's side is the whole command (Python start-up, manifest, masks, atomic writes).
2. **A frame-folder corpus** (PHOENIX-2014-T's layout, ``--frame-clips`` folders of real PNG frames):
   decoding the frames, signlab's reader against ``cv2.imread`` over the sorted files, then the
   whole `prepare` with MediaPipe extraction (the part that dominates), per 1,000 clips.

    python benchmarks/bench_corpora.py [--out runs/bench_corpora] [--clips 10000] [--workers 2] [--frame-clips 8]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO
from rich.console import Console
from rich.table import Table

REAL = REPO.parent / "shared" / "data" / "real"
ROWS_PER_FRAME = 543  # Kaggle's order: face 468, left hand 21, pose 33, right hand 21


def kaggle_tree(root: Path, clips: int) -> Path:
    """``clips`` Isolated Signs clips in the corpus's layout, hard links to the real ones."""
    real = list(csv.DictReader((REAL / "asl-signs" / "train.csv").open()))
    if (root / "train.csv").is_file() and sum(1 for _ in (root / "train.csv").open()) == clips + 1:
        return root
    rows = []
    for i in range(clips):
        src = real[i % len(real)]
        participant = str(10000 + i // 100)  # 100 clips a participant
        path = f"train_landmark_files/{participant}/{i}.parquet"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        if not (root / path).exists():
            os.link(REAL / "asl-signs" / src["path"], root / path)
        rows.append({"path": path, "participant_id": participant, "sequence_id": str(i), "sign": src["sign"]})
    with (root / "train.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def pandas_loop(root: Path, out: Path) -> int:
    """The obvious loop: one ``pd.read_parquet`` a clip, reshaped, mapped, saved."""
    import pandas as pd

    from signlab.corpora.kaggle import holistic_features

    out.mkdir(parents=True, exist_ok=True)
    train = pd.read_csv(root / "train.csv")
    for path, sequence in zip(train["path"], train["sequence_id"]):
        data = pd.read_parquet(root / path, columns=["x", "y", "z"])
        xyz = data.values.reshape(len(data) // ROWS_PER_FRAME, ROWS_PER_FRAME, 3)
        parts = {"face": xyz[:, :468], "left_hand": xyz[:, 468:489], "pose": xyz[:, 489:522], "right_hand": xyz[:, 522:]}
        np.save(out / f"{sequence}.npy", holistic_features(parts, str(path)))
    return len(train)


def signlab_prepare(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "signlab.cli", "corpus", "prepare", *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
    return time.perf_counter() - started


def phoenix_tree(root: Path, clips: int, frames: int) -> tuple[Path, list[Path]]:
    """PHOENIX-2014-T's layout with ``clips`` train folders of real PNG frames (a WLASL clip at 210 x 260)."""
    from PIL import Image

    from signlab.extract.video import VideoOptions, read_video

    video = read_video(REAL / "wlasl_18068.mp4", VideoOptions(size=260))
    images = [Image.fromarray(f).resize((210, 260)) for f in video[:frames]]
    folders = []
    manual = root / "annotations" / "manual"
    manual.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        names = [f"{split}_clip{i}" for i in range(clips if split == "train" else 1)]
        lines = ["name|video|start|end|speaker|orth|translation"]
        for name in names:
            folder = root / "features" / "fullFrame-210x260px" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k, image in enumerate(images, start=1):
                if not (folder / f"images{k:04d}.png").exists():
                    image.save(folder / f"images{k:04d}.png")
            folders.append(folder)
            lines.append(f"{name}|{name}/1/*.png|-1|-1|Signer01|REGEN WIND|es regnet")
        (manual / f"PHOENIX-2014-T.{split}.corpus.csv").write_text("\n".join(lines) + "\n")
    return root, folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_corpora"))
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frame-clips", type=int, default=8, help="train frame folders (one dev, one test)")
    parser.add_argument("--frames", type=int, default=48, help="frames a folder")
    args = parser.parse_args()
    if not (REAL / "asl-signs").is_dir():
        raise SystemExit(f"{REAL} not found: this benchmark reads the real Kaggle and WLASL samples")
    import shutil

    out = args.out.resolve()
    table = Table(title="corpus preparation (this machine; files in the page cache: warm)")
    for col in ("corpus", "method", "clips", "seconds", "clips / s", "per 1,000 clips"):
        table.add_column(col, justify="left" if col in ("corpus", "method") else "right")

    def row(corpus: str, method: str, n: int, seconds: float) -> None:
        table.add_row(corpus, method, f"{n:,}", f"{seconds:.1f}", f"{n / seconds:.1f}", f"{1000 * seconds / n:.0f} s")

    root = kaggle_tree(out / "asl-signs", args.clips)
    for side in ("pandas", "signlab"):
        shutil.rmtree(out / f"kaggle_{side}", ignore_errors=True)
    started = time.perf_counter()
    n = pandas_loop(root, out / "kaggle_pandas")
    row("Isolated Signs (parquet)", "pandas loop, one process", n, time.perf_counter() - started)
    seconds = signlab_prepare("asl-signs", str(root), "--out", str(out / "kaggle_signlab"), "--workers", "1")
    row("Isolated Signs (parquet)", "signlab corpus prepare --workers 1", n, seconds)
    shutil.rmtree(out / "kaggle_signlab")
    seconds = signlab_prepare("asl-signs", str(root), "--out", str(out / "kaggle_signlab"), "--workers", str(args.workers))
    row("Isolated Signs (parquet)", f"signlab corpus prepare --workers {args.workers}", n, seconds)
    manifest = list(csv.DictReader((out / "kaggle_signlab" / "manifest.csv").open()))
    first = manifest[0]
    same = np.array_equal(np.load(out / "kaggle_signlab" / first["features"]),
                          np.load(out / "kaggle_pandas" / f"{first['id'].split('/')[1]}.npy"))

    import cv2

    from signlab.extract.video import VideoOptions, read_video

    root, folders = phoenix_tree(out / "phoenix", args.frame_clips, args.frames)
    frames = len(folders) * args.frames
    started = time.perf_counter()
    for folder in folders:
        np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.glob("*.png"))])
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    for folder in folders:
        read_video(folder, VideoOptions())
    ours_s = time.perf_counter() - started
    shutil.rmtree(out / "phoenix_prepared", ignore_errors=True)
    prepare_s = signlab_prepare("phoenix-2014-t", str(root), "--out", str(out / "phoenix_prepared"), "--workers",
                                str(args.workers))
    console = Console(width=150)
    row(f"frame folders ({args.frames} PNG frames, 210 x 260)", "decode: cv2.imread loop", len(folders), reference_s)
    row(f"frame folders ({args.frames} PNG frames, 210 x 260)", "decode: signlab's frame-folder reader", len(folders), ours_s)
    row(f"frame folders ({args.frames} PNG frames, 210 x 260)", f"signlab corpus prepare (MediaPipe) --workers {args.workers}",
        len(folders), prepare_s)
    console.print(table)
    console.print(f"decode: {frames / reference_s:.0f} frames/s (cv2 loop) against {frames / ours_s:.0f} (signlab); "
                  f"the first clip's features from both Kaggle paths are identical: {same}")


if __name__ == "__main__":
    main()
