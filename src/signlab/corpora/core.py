"""What every corpus importer shares: the clips it finds, what it leaves out and why, and the one
routine that turns them into a signlab manifest with features.

An importer reads a corpus in its distributed layout and says, for each clip, where its signing
is: a video (or a frame or time range of one), a folder of frames, or landmarks / features in the
corpus's own files (converted here, no extraction). :func:`prepare` then makes the features
(videos and frame folders through the batch extractor, :mod:`signlab.extract.runner`; the rest
through the importer's converter, in worker processes), skipping what an earlier run finished and
writing every file whole or not at all, and writes ``manifest.csv`` (ids, splits, glosses, text,
signer, ``feature_kind``, ``features``, and ``source``: where the clip came from) and
``excluded.csv`` (every row left out: its file, its row and why).
"""

from __future__ import annotations

import csv
import io
import logging
import multiprocessing as mp
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from signlab.atomic import save_npy, write_text
from signlab.errors import SignlabError

log = logging.getLogger(__name__)

COLUMNS = ("id", "split", "features", "feature_kind", "glosses", "text", "signer", "source")


@dataclass
class Clip:
    """One clip of a corpus, and where its signing is: exactly one of ``video`` (a file or a folder
    of frames, with an optional frame or time range) or ``load`` (a picklable function of ``item``
    returning the clip's (T, D) features, for corpora that ship landmarks or features)."""

    id: str
    split: str
    glosses: tuple[str, ...] = ()
    text: str = ""
    signer: str = ""
    source: str = ""  # the corpus file the clip's signing is in, for the manifest and error messages
    video: Path | None = None
    start: int | None = None  # source frames, 0-based, end exclusive
    end: int | None = None
    start_time: float | None = None  # seconds
    end_time: float | None = None
    load: Callable[[Any], np.ndarray] | None = None
    item: Any = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def output(self) -> str:
        """The feature file's path under the output folder (ids may hold ``/``)."""
        return f"features/{self.id}.npy"


class Excluded:
    """Rows left out, by kind of problem: counted, one warning per kind, all in ``excluded.csv``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def add(self, kind: str, file: str | Path, row: int | str, clip_id: str, message: str) -> None:
        self.rows.append({"kind": kind, "file": str(file), "row": str(row), "id": clip_id, "message": message})

    def report(self, total: int) -> None:
        counts = Counter(r["kind"] for r in self.rows)
        for kind, n in counts.items():
            first = [r for r in self.rows if r["kind"] == kind][:3]
            log.warning("excluded %d of %d rows: %s (e.g. %s); all of them in excluded.csv", n, total, kind,
                        "; ".join(f"{r['file']}:{r['row']} {r['id']}: {r['message']}" for r in first))

    def write(self, path: Path) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["kind", "file", "row", "id", "message"])
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(path, buffer.getvalue())


@dataclass
class Found:
    """What an importer found on disk: the clips to prepare, the rows it had to leave out, and
    the feature kind its converter writes (None: the clips are videos, extracted as asked)."""

    clips: list[Clip]
    excluded: Excluded
    kind: str | None = None
    frame_rate: float = 25.0  # frames a second of the corpus's frame folders


def require(root: Path, corpus: str, *paths: str) -> None:
    """A one-line error when ``root`` lacks the files that make it the named corpus."""
    if not root.is_dir():
        raise SignlabError(f"corpus root {root} is not a folder")
    for p in paths:
        if not (root / p).exists():
            raise SignlabError(f"{root} does not look like {corpus}: {root / p} not found (give the folder the corpus "
                               "was unpacked into)")


def frame_folder_clip(clip: Clip, folder: Path, excluded: Excluded, file: str | Path, row: int) -> Clip | None:
    """``clip`` reading the frame folder ``folder``, or None (counted) when the folder is missing,
    holds no frames, or has a gap in its numbering."""
    from signlab.extract.video import VideoError, frame_files

    try:
        frame_files(folder)
    except VideoError as exc:
        excluded.add(exc.kind, file, row, clip.id, str(exc))
        return None
    clip.video = folder
    return clip


# ----------------------------------------------------------------------------- the preparation


@dataclass
class PrepareOptions:
    extract: str = "pose"  # for video corpora: pose (MediaPipe Holistic) or i3d
    workers: int = 1
    fps: float | None = 25.0  # resample videos and frame folders to this rate
    weights: Path | None = None  # i3d
    random_weights: bool = False
    limit: int | None = None  # at most this many clips of each split (the first ones), for a quick look
    views: int = 1  # i3d: the clean features and views - 1 augmented ones (training draws one a clip each epoch)


def _convert(args: tuple[Clip, Path]) -> tuple[str, str, str]:
    """Worker: one clip's converter run, its features written whole."""
    clip, out = args
    from signlab.data.features import FeatureError, check_features

    try:
        features = check_features(clip.load(clip.item), f"{clip.source} ({clip.id})")
    except (FeatureError, SignlabError) as exc:
        return clip.id, getattr(exc, "kind", "corrupt"), str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the corpus; the reason is reported
        return clip.id, "corrupt", f"{clip.source} ({clip.id}): {type(exc).__name__}: {exc}"
    # no part mask beside it: a converter marks a missing part by zeros, which is all a mask would say
    save_npy(out / clip.output, features)
    return clip.id, "", ""


def _convert_all(clips: Sequence[Clip], out: Path, workers: int, console: Console) -> dict[str, tuple[str, str]]:
    todo = [(c, out) for c in clips if not (out / c.output).exists()]
    failed: dict[str, tuple[str, str]] = {}
    columns = [TextColumn("converting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("", total=len(todo))
        if workers > 1 and len(todo) > 1:
            with mp.get_context("spawn").Pool(min(workers, len(todo))) as pool:
                results = list(_tracked(pool.imap_unordered(_convert, todo, chunksize=16), progress, task))
        else:
            results = list(_tracked(map(_convert, todo), progress, task))
    for clip_id, kind, message in results:
        if kind:
            failed[clip_id] = (kind, message)
    return failed


def _tracked(results, progress: Progress, task):
    for r in results:
        progress.advance(task)
        yield r


def _extract_all(clips: Sequence[Clip], out: Path, opts: PrepareOptions, frame_rate: float,
                 console: Console) -> dict[str, tuple[str, str]]:
    from signlab.extract.runner import ExtractionJob, Item, run_items
    from signlab.extract.video import VideoOptions

    job = ExtractionJob(opts.extract, out / "features", VideoOptions(fps=opts.fps, frame_rate=frame_rate),
                        opts.workers, weights=opts.weights, random_weights=opts.random_weights, views=opts.views)
    items = [Item(c.video, out / c.output, c.start, c.end, c.start_time, c.end_time) for c in clips]
    outcomes = run_items(items, job, console)
    by_output = {o.output: o for o in outcomes}
    return {c.id: (o.reason, o.message) for c in clips if (o := by_output[out / c.output]).status == "failed"}


def prepare(corpus: str, found: Found, out: Path, opts: PrepareOptions, console: Console | None = None) -> Path:
    """Features for every clip ``found`` (what is already there is kept), then ``manifest.csv`` and
    ``excluded.csv`` in ``out``; returns the manifest's path."""
    console = console or Console(stderr=True)
    clips, excluded = found.clips, found.excluded
    total = len(clips) + len(excluded.rows)
    if opts.limit is not None:
        clips = [c for split in ("train", "dev", "test") for c in [c for c in clips if c.split == split][: opts.limit]]
    ids = Counter(c.id for c in clips)
    if (dupe := next((i for i, n in ids.items() if n > 1), None)) is not None:
        raise SignlabError(f"{corpus}: the id {dupe!r} names more than one clip; the corpus's files disagree")
    out.mkdir(parents=True, exist_ok=True)
    if found.kind is None:
        if opts.extract not in ("pose", "i3d"):
            raise SignlabError(f"--extract {opts.extract}: {corpus} ships videos or frames, so features are extracted: "
                               "pose (MediaPipe Holistic) or i3d")
        failed = _extract_all(clips, out, opts, found.frame_rate, console)
        from signlab.kinds import HOLISTIC, I3D

        kind = (HOLISTIC if opts.extract == "pose" else I3D).name
    else:
        failed = _convert_all(clips, out, opts.workers, console)
        kind = found.kind
    for c in clips:
        if c.id in failed:
            excluded.add(failed[c.id][0] or "failed", c.source, "", c.id, failed[c.id][1])
    kept = [c for c in clips if c.id not in failed]
    excluded.report(total)
    views = {"views": str(opts.views)} if found.kind is None and opts.views > 1 else {}
    rows = [{"id": c.id, "split": c.split, "features": c.output, "feature_kind": kind, "glosses": " ".join(c.glosses),
             "text": c.text, "signer": c.signer, "source": c.source, **views, **c.extra} for c in kept]
    extra_columns = list(dict.fromkeys(k for r in rows for k in r if k not in COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*COLUMNS, *extra_columns], restval="")
    writer.writeheader()
    writer.writerows(rows)
    manifest = out / "manifest.csv"
    write_text(manifest, buffer.getvalue())
    excluded.write(out / "excluded.csv")
    console.print(summary(corpus, kept, excluded, out))
    if not kept:
        raise SignlabError(f"no clip of {corpus} could be prepared ({len(excluded.rows)} excluded): {out / 'excluded.csv'} "
                           "says why for each")
    for split in ("train", "dev", "test"):
        if not any(c.split == split for c in kept):
            log.warning("%s: no %s clips were prepared", corpus, split)
    return manifest


def summary(corpus: str, kept: Sequence[Clip], excluded: Excluded, out: Path) -> Table:
    table = Table(title=f"{corpus} -> {out / 'manifest.csv'}: {len(kept)} clips, {len(excluded.rows)} excluded")
    for col in ("split", "clips", "signers", "gloss types", "excluded"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split in ("train", "dev", "test"):
        rows = [c for c in kept if c.split == split]
        table.add_row(split, str(len(rows)), str(len({c.signer for c in rows if c.signer})),
                      str(len({g for c in rows for g in c.glosses})), "")
    for kind, n in Counter(r["kind"] for r in excluded.rows).items():
        table.add_row(f"excluded: {kind}", "", "", "", str(n))
    return table
