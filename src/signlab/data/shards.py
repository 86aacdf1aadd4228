"""The packed store's format, and reading it: a corpus's clips in a few large shard files with one
index (written by :func:`signlab.data.store.pack`), so that a run on 100,000 clips opens a few files
per process instead of 100,000 every epoch, and starts without reading every clip first (lengths,
motion and the train split's statistics are indexed)::

    STORE/shard-00000.bin  clips' frames one after another: (rows, dim) in the store's dtype, C order
    STORE/clips.csv        a signlab manifest of the packed clips, ``features`` naming each clip's
                           shard, and ``first`` / ``frames`` / ``motion``: where it is, how it moves
    STORE/stats.npz        the train split's running statistics (n, mean, m2), preprocessed
    STORE/excluded.csv     rows left out, and why
    STORE/index.json       format and version, feature kind, dim, dtype, the preprocessing the
                           statistics and motion were measured with, each shard's rows; written last

The layout is an array with offsets, as under Megatron's indexed datasets and Hugging Face datasets'
Arrow files; a clip is one ``pread`` on a descriptor each process opens once per shard (no memory
map, so a process's memory does not grow with what it has read).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signlab.atomic import load_npz, read_text_file
from signlab.errors import SignlabError

FORMAT, VERSION = "signlab-store", 1
INDEX, CLIPS = "index.json", "clips.csv"
DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class StoreIndex:
    """What ``index.json`` says, checked against the shards on disk."""

    root: Path
    kind: str
    dim: int
    dtype: np.dtype
    prep_key: str  # the preprocessing motion and statistics were measured with (Preprocessor.key)
    shards: dict[str, int]  # file name -> rows
    splits: dict[str, int]  # packed clips per split
    fingerprint: str

    @property
    def row_bytes(self) -> int:
        return self.dim * self.dtype.itemsize

    def train_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = load_npz(self.root / "stats.npz", ("n", "mean", "m2"), "store statistics (n, mean, m2)")
        if not all(z[k].shape == (self.dim,) for k in ("n", "mean", "m2")):
            raise SignlabError(f"{self.root / 'stats.npz'} does not hold {self.dim}-dim statistics: pack the store again")
        return z["n"], z["mean"], z["m2"]


_INDEXES: dict[Path, tuple[float, StoreIndex]] = {}  # this process's open stores, by folder (and index mtime)
_OPEN: dict[Path, tuple[int, StoreIndex]] = {}  # this process's open shards: descriptor, store


def is_store(path: Path) -> bool:
    """A manifest path that names a store: a folder (with ``index.json`` when packing finished) or its index."""
    return path.is_dir() or path.name == INDEX


def open_store(root: Path) -> StoreIndex:
    """The store in ``root``, its index read and every shard's size checked (once per process)."""
    index = root / INDEX
    try:
        mtime = index.stat().st_mtime
    except OSError:
        raise SignlabError(f"{root} is a folder without {INDEX}: not a manifest, nor a packed store whose packing "
                           "finished (if signlab pack stopped, run it again: it goes on where it stopped)") from None
    if root in _INDEXES and _INDEXES[root][0] == mtime:
        return _INDEXES[root][1]
    try:
        meta = json.loads(read_text_file(index, "store index"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, not {FORMAT}")
        if meta.get("version") != VERSION:
            raise SignlabError(f"{index} was written by a signlab that packs stores in version {meta.get('version')}; "
                               f"this one reads version {VERSION}: pack the manifests again")
        if meta["dtype"] not in DTYPES:
            raise ValueError(f"dtype {meta['dtype']!r}")
        info = StoreIndex(root, meta["feature_kind"], int(meta["dim"]), np.dtype(meta["dtype"]), meta["prep"],
                          {s["file"]: int(s["rows"]) for s in meta["shards"]}, dict(meta["splits"]), meta["fingerprint"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SignlabError(f"{index} is damaged ({exc}): pack the store again") from None
    for name, rows in info.shards.items():
        shard = root / name
        size = shard.stat().st_size if shard.is_file() else None
        if size != rows * info.row_bytes:
            found = "missing" if size is None else f"{size:,} bytes"
            raise SignlabError(f"shard {shard} is {found}; the index says {rows * info.row_bytes:,} ({rows} rows): the "
                               "store is incomplete or was changed: pack it again")
    _INDEXES[root] = (mtime, info)
    return info


def check_spans(root: Path, info: StoreIndex, samples) -> None:
    """That the clip list's rows (:class:`~signlab.data.manifest.Sample` with spans) tile every shard
    exactly, with a finite motion each: the index agrees with the data."""
    names = list(info.shards)
    number = {root / n: i for i, n in enumerate(names)}  # the clip list's rows share these paths
    try:
        shard = np.array([number[s.features] for s in samples], np.int64)
        motion = np.array([s.extra["motion"] for s in samples], np.float64)
    except KeyError as exc:
        raise SignlabError(f"{root / CLIPS} names {Path(exc.args[0]).name!r}, which is not a shard of the store: "
                           "pack it again") from None
    except ValueError:
        raise SignlabError(f"{root / CLIPS}: a motion value is not a number: pack the store again") from None
    first, frames = np.array([s.span for s in samples], np.int64).reshape(-1, 2).T
    order = np.lexsort((first, shard))
    start = np.r_[True, shard[order][1:] != shard[order][:-1]]  # first clip of each shard
    expected = np.where(start, 0, np.r_[0, (first + frames)[order][:-1]])
    bad = (first[order] != expected) | (frames[order] <= 0) | ~np.isfinite(motion[order])
    ends = np.r_[np.flatnonzero(start)[1:] - 1, len(order) - 1] if len(order) else np.array([], np.int64)
    short = {names[shard[order[e]]]: int((first + frames)[order[e]]) for e in ends}
    if bad.any() or any(short.get(n, 0) != rows for n, rows in info.shards.items()):
        where = samples[order[np.argmax(bad)]].where if bad.any() else next(
            f"{n}: the clips end at row {short.get(n, 0)} of its {r}" for n, r in info.shards.items() if short.get(n, 0) != r)
        raise SignlabError(f"{root / CLIPS}: the clip list disagrees with the shards at {where}: pack the store again")


def forget(root: Path) -> None:
    """Close this process's descriptors of the store in ``root`` and drop its index (it is being rewritten)."""
    _INDEXES.pop(root, None)
    for shard in [s for s in _OPEN if s.parent == root]:
        os.close(_OPEN.pop(shard)[0])


def read_clip(shard: Path, span: tuple[int, int]) -> np.ndarray:
    """Frames ``span`` = (first row, count) of a store's shard, as float32; a SignlabError if they
    are not there. The shard is opened (and its index read) on a process's first read of it."""
    if shard not in _OPEN:
        info = open_store(shard.parent)
        if shard.name not in info.shards:
            raise SignlabError(f"{shard} is not a shard of the store in {shard.parent}: pack it again")
        _OPEN[shard] = os.open(shard, os.O_RDONLY), info
    fd, info = _OPEN[shard]
    first, frames = span
    if first < 0 or frames <= 0 or first + frames > info.shards[shard.name]:
        raise SignlabError(f"{shard}: rows {first}-{first + frames} are not in the store's index: pack it again")
    clip = np.empty((frames, info.dim), info.dtype)
    if os.preadv(fd, [clip], first * info.row_bytes) != clip.nbytes:
        raise SignlabError(f"{shard} ends before row {first + frames}: it was cut short: pack the store again")
    return clip.astype(np.float32, copy=False)
