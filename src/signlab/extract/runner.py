"""Batch extraction over many videos: shards, worker processes, skipping, atomic writes, a summary.

A video is a file FFmpeg reads or a folder of PNG / JPEG frames. Outputs mirror the inputs' folder
structure under ``out`` (``clips/a/b.mp4`` given as ``clips`` becomes ``out/a/b.npy``, and so does
the frame folder ``clips/a/b/``); corpus preparation gives its own :class:`Item` list instead. A file is written to a temporary name and renamed when complete, so an
interrupted run never leaves half a file, and a re-run skips what is already there. One bad video
never stops the run: it is reported, with its reason, in the summary and in ``failures.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import multiprocessing as mp
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from signlab.atomic import save_npy
from signlab.data.augment.video import VideoAugmentation
from signlab.data.features import mask_path, view_path
from signlab.data.pose_files import write_pose_file
from signlab.errors import SignlabError
from signlab.extract.holistic import clip_statistics
from signlab.extract.video import (
    VIDEO_EXTENSIONS,
    VideoError,
    VideoOptions,
    is_frame_folder,
    iter_frames,
    probe,
)
from signlab.kinds import HOLISTIC, I3D
from signlab.pose import part_mask


@dataclass
class ExtractionJob:
    kind: Literal["pose", "i3d"]
    out: Path
    video: VideoOptions = VideoOptions()
    workers: int = 1
    shard: tuple[int, int] = (0, 1)  # (i, n): this run takes videos i, i + n, i + 2n, ...
    write_pose: bool = False  # pose: also write pose-format .pose files
    model_complexity: int = 1  # pose
    weights: Path | None = None  # i3d; None only with random_weights
    random_weights: bool = False  # i3d: for tests and benchmarks, features are meaningless
    stack_size: int = 16
    step_size: int = 4
    batch_size: int = 8
    device: str = "cpu"
    views: int = 1  # i3d: clean features plus views - 1 augmented ones (the seed's video recipe)
    augment: str = "medium"  # i3d views: light, medium or heavy


@dataclass(frozen=True)
class Item:
    """One video to extract into ``output``, optionally a frame range (0-based, end exclusive) or a
    time range (seconds) of it."""

    video: Path
    output: Path
    start: int | None = None
    end: int | None = None
    start_time: float | None = None
    end_time: float | None = None

    def options(self, base: VideoOptions) -> VideoOptions:
        return dataclasses.replace(base, start=self.start, end=self.end, start_time=self.start_time,
                                   end_time=self.end_time)


@dataclass
class Outcome:
    video: Path
    output: Path
    status: Literal["done", "skipped", "failed"]
    reason: str = ""
    message: str = ""
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)


def plan(inputs: Sequence[str | Path], out: Path, shard: tuple[int, int] = (0, 1)) -> list[tuple[Path, Path]]:
    """(video, output .npy) pairs for this shard; outputs keep the inputs' sub-folders."""
    pairs: dict[Path, Path] = {}
    for item in map(Path, inputs):
        if is_frame_folder(item):
            pairs[item] = out / f"{item.name}.npy"
        elif item.is_dir():
            videos = [p for p in item.rglob("*") if (p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
                      or is_frame_folder(p)]
            for v in videos:
                pairs[v] = out / v.relative_to(item).with_suffix(".npy")
        else:
            pairs[item] = out / item.with_suffix(".npy").name  # missing or not a video: reported when processed
    seen: dict[Path, Path] = {}
    for video, target in pairs.items():
        if target in seen:
            raise SignlabError(f"{video} and {seen[target]} would both be written to {target}: give their folder "
                               "instead of the files, or extract them into different --out folders")
        seen[target] = video
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise SignlabError(f"--shard {i}/{n}: expected i/n with 0 <= i < n")
    ordered = sorted(pairs.items())
    return [pair for k, pair in enumerate(ordered) if k % n == i]


# ----------------------------------------------------------------------------- one worker process

_extractor: Any = None
_augment: VideoAugmentation | None = None


def _init_worker(job: ExtractionJob, threads: int) -> None:
    """Build the extractor (and the views' augmentation) once per process, on its share of the cores."""
    global _extractor, _augment
    if job.kind == "pose":
        from signlab.extract.holistic import HolisticExtractor

        _extractor = HolisticExtractor(job.model_complexity)
    else:
        import torch

        from signlab.extract.i3d import I3DExtractor

        torch.set_num_threads(threads)
        _augment = VideoAugmentation(job.augment, threads)
        _extractor = I3DExtractor(None if job.random_weights else job.weights, job.device, job.stack_size,
                                  job.step_size, job.batch_size)


def _process(args: tuple[ExtractionJob, Item]) -> Outcome:
    job, item = args
    video, output, opts = item.video, item.output, item.options(job.video)
    started = time.perf_counter()
    try:
        if job.kind == "pose":
            landmarks = _extractor.landmarks(iter_frames(video, opts))
            features = landmarks.features()
            if not part_mask(features)[:, 0].any():  # no body in any frame: nobody to extract
                raise VideoError("no_signer", f"MediaPipe found no body in any of the {len(features)} frames "
                                              "(is someone in the picture, lit and in focus?)")
            if job.write_pose:
                info = probe(video, opts.frame_rate)
                write_pose_file(output.with_suffix(".pose"), landmarks, opts.fps or info.fps, info.width, info.height)
            save_npy(mask_path(output), part_mask(features))
            save_npy(output, features)  # last: its presence means the video is complete
            stats = clip_statistics(features)
        else:
            frames = np.stack(list(iter_frames(video, opts)))
            for k in range(1, job.views):  # views first: the clean features' file says the video is complete
                # seeded by the clip's path in the output folder: the same views wherever the corpus is extracted
                seen = _augment(frames, np.random.default_rng([zlib.crc32(os.path.relpath(output, job.out).encode()), k]))
                save_npy(view_path(output, k), _extractor.extract(seen))
            features = _extractor.extract(frames)
            save_npy(output, features)
            stats = {"num_frames": len(frames), "num_windows": len(features), "views": job.views}
        return Outcome(video, output, "done", seconds=time.perf_counter() - started, stats=stats)
    except VideoError as exc:
        return Outcome(video, output, "failed", exc.kind, str(exc), time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run; the reason is reported
        return Outcome(video, output, "failed", "error", f"{type(exc).__name__}: {exc}", time.perf_counter() - started)


# ----------------------------------------------------------------------------- the run


def run_extraction(inputs: Sequence[str | Path], job: ExtractionJob, console: Console | None = None) -> list[Outcome]:
    pairs = plan(inputs, job.out, job.shard)
    if not pairs:
        raise SignlabError(f"no videos found in {', '.join(map(str, inputs))} (extensions: {', '.join(VIDEO_EXTENSIONS)}, "
                           "or folders of PNG / JPEG frames)")
    return run_items([Item(v, o) for v, o in pairs], job, console)


def run_items(items: Sequence[Item], job: ExtractionJob, console: Console | None = None) -> list[Outcome]:
    """Extract every item whose output is not there yet (in ``job.workers`` processes), then write
    the manifest and failures of this shard and print the summary."""
    console = console or Console()
    if job.kind == "i3d" and job.weights is None and not job.random_weights:
        raise SignlabError("I3D needs weights: --weights rgb_imagenet.pt (the PyTorch port of DeepMind's "
                           "Kinetics-400 I3D); --random-weights only for testing the pipeline")
    if job.views > 1 and job.kind != "i3d":
        raise SignlabError("--views is for I3D features (a frozen extractor sees augmented videos); pose is augmented "
                           "in training itself")
    try:
        VideoAugmentation(job.augment)
    except ValueError as exc:
        raise SignlabError(f"--augment: {exc}") from None
    todo = [i for i in items if not i.output.exists()]
    outcomes = [Outcome(i.video, i.output, "skipped", message="already extracted") for i in items if i.output.exists()]
    workers = max(1, min(job.workers, len(todo) or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers > 1:  # the cores are shared: one decoding thread per worker
        job = dataclasses.replace(job, video=dataclasses.replace(job.video, decode_threads=threads))
    columns = [TextColumn(f"extracting {job.kind}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=len(todo))
        tasks = [(job, i) for i in todo]
        if workers == 1:
            _init_worker(job, threads)
            results = map(_process, tasks)
            for r in results:
                outcomes.append(r)
                progress.advance(task)
        else:
            with mp.get_context("spawn").Pool(workers, _init_worker, (job, threads)) as pool:
                for r in pool.imap_unordered(_process, tasks):
                    outcomes.append(r)
                    progress.advance(task)
    for o in outcomes:
        if o.status == "skipped":
            o.stats = _stats_from_output(job, o.output)
    outcomes.sort(key=lambda o: str(o.video))
    write_manifest(job, outcomes)
    console.print(summary_table(job, outcomes))
    return outcomes


def _stats_from_output(job: ExtractionJob, output: Path) -> dict[str, Any]:
    features = np.load(output)
    if job.kind == "pose":
        return clip_statistics(features)
    return {"num_windows": len(features)}


def manifest_name(job: ExtractionJob) -> str:
    i, n = job.shard
    return "manifest.csv" if n == 1 else f"manifest.shard-{i}-of-{n}.csv"


def write_manifest(job: ExtractionJob, outcomes: Sequence[Outcome]) -> Path:
    """One row per extracted video, paths relative to ``out``; failures go to failures.csv."""
    job.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for o in outcomes:
        if o.status == "failed":
            continue
        row = {"id": o.output.relative_to(job.out).with_suffix("").as_posix(), "video_file": str(o.video),
               "feature_path": o.output.relative_to(job.out).as_posix(),
               "feature_kind": (HOLISTIC if job.kind == "pose" else I3D).name}
        if job.kind == "pose":
            row["mask_path"] = mask_path(o.output).relative_to(job.out).as_posix()
        row["fps"] = job.video.fps or ""
        rows.append({**row, **o.stats})
    path = job.out / manifest_name(job)
    with path.open("w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    failures = [o for o in outcomes if o.status == "failed"]
    fail_path = job.out / manifest_name(job).replace("manifest", "failures")
    if failures:
        with fail_path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["video_file", "reason", "message"])
            writer.writerows((str(o.video), o.reason, o.message) for o in failures)
    elif fail_path.exists():
        fail_path.unlink()
    return path


def summary_table(job: ExtractionJob, outcomes: Sequence[Outcome]) -> Table:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    done = [o for o in outcomes if o.status == "done"]
    secs = sum(o.seconds for o in done)
    table = Table(title=f"{job.kind} extraction -> {job.out}: {counts['done']} done, {counts['skipped']} skipped, "
                        f"{counts['failed']} failed" + (f" ({secs:.1f} s of work)" if done else ""))
    table.add_column("video")
    table.add_column("status")
    table.add_column("reason / note")
    for o in outcomes:
        if o.status == "failed" or len(outcomes) <= 20:
            note = o.message if o.status != "done" else ", ".join(f"{k} {v:.3g}" for k, v in list(o.stats.items())[:4])
            said = not o.reason or note.startswith(o.reason)  # "truncated (23 of 97 frames): ..." names itself
            table.add_row(o.video.name, o.status, note if said else f"{o.reason}: {note}")
    return table

