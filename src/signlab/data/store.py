"""``signlab pack``: a manifest's clips, read, checked and measured once as training would, written
into a packed store (:mod:`signlab.data.shards` has the format). A shard is written as a
``.partial`` file, flushed to disk and renamed when whole, then ``shard-K.json`` (its clips,
exclusions and statistics) beside it, and ``index.json`` last: packing again with the same inputs
keeps every whole shard and goes on from the first clip not in one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from signlab import pose
from signlab.atomic import save_npz, write_json, write_text
from signlab.data.features import (
    Exclusion,
    FeatureError,
    Preprocessor,
    report_exclusions,
    resolve_kind,
    write_exclusions,
)
from signlab.data.manifest import PACKED_COLUMNS, Sample, read_manifests
from signlab.data.shards import CLIPS, DTYPES, FORMAT, INDEX, VERSION, forget, open_store
from signlab.data.stats import RunningStats
from signlab.errors import SignlabError
from signlab.kinds import AUTO

log = logging.getLogger(__name__)

FLOAT16_MAX = float(np.finfo(np.float16).max)
_NOT_PACKED = {"views"}  # augmented feature views stay beside the loose files: a store holds the clean clips


def pack(manifests: Sequence[Path], out: Path, *, feature_kind: str = AUTO, dtype: str = "float32",
         shard_gb: float = 1.0, features_dir: Path | None = None, console: Console | None = None) -> Path:
    """Pack the rows of ``manifests`` into a store in ``out``: every clip
    read, checked and preprocessed once, as training would; returns ``out``. Packing again with the
    same inputs keeps the whole shards and packs the rest."""
    if dtype not in DTYPES:
        raise SignlabError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    samples = read_manifests(manifests, features_dir)
    if not samples:
        raise SignlabError("the manifests have no rows to pack")
    prep = Preprocessor(resolve_kind(samples, feature_kind))
    store_dtype = np.dtype(dtype)
    row_bytes, shard_bytes = prep.dim * store_dtype.itemsize, max(1, int(shard_gb * 2**30))
    fingerprint = _fingerprint(samples, prep.key, dtype, shard_bytes)
    out.mkdir(parents=True, exist_ok=True)
    forget(out)
    if (out / INDEX).is_file():
        if open_store(out).fingerprint == fingerprint:
            log.info("%s already holds these clips, packed the same way", out)
            return out
        raise SignlabError(f"{out} holds a store packed from other rows or options: pack into another --out, or "
                           "delete it first")
    done = _whole_shards(out, fingerprint, row_bytes)
    if done:
        log.info("%s: keeping %d whole shards (%d clips) from an earlier packing", out, len(done),
                 sum(len(d["clips"]) for d in done))
    start = time.perf_counter()
    shard = _ShardWriter(out, len(done), fingerprint, prep.dim)
    next_clip = done[-1]["end"] if done else 0
    for i in track(range(next_clip, len(samples)), description=f"packing {len(samples) - next_clip} clips",
                   console=console, transient=True):
        s = samples[i]
        try:
            raw = prep.read(s.features, s.span)
            if store_dtype == np.float16 and np.abs(raw).max() > FLOAT16_MAX:
                raise SignlabError(f"{s.where}: values beyond float16's range (+-{FLOAT16_MAX:g}): pack with "
                                   "--dtype float32")
            stored = raw.astype(store_dtype)
            x = prep(stored.astype(np.float32), s.where)  # measured on what training will read
        except FeatureError as exc:
            shard.excluded.append([i, exc.kind, str(exc)])
            continue
        if shard.rows and (shard.rows + len(stored)) * row_bytes > shard_bytes:
            done.append(shard.close(i))
            shard = _ShardWriter(out, len(done), fingerprint, prep.dim)
        shard.add(i, stored, pose.mean_motion(x, prep.is_pose), x if s.split == "train" else None, prep)
    if shard.rows or shard.excluded or not done:
        done.append(shard.close(len(samples)))
    else:  # everything was in whole shards already
        shard.discard()
    excluded = [Exclusion(samples[i], kind, message) for d in done for i, kind, message in d["excluded"]]
    report_exclusions(excluded, "pack", len(samples))
    packed = [(i, d["file"], first, frames, motion) for d in done for i, first, frames, motion in d["clips"]]
    if not packed:
        raise SignlabError(f"none of the {len(samples)} rows could be packed: see the warnings above")
    _write_clips(out / CLIPS, samples, packed, prep.kind.name)
    write_exclusions(out / "excluded.csv", excluded)
    stats = RunningStats(prep.dim)
    for d in done:
        stats.merge(*(np.asarray(v, np.float64) for v in d["stats"]))
    save_npz(out / "stats.npz", n=stats.n, mean=stats.mean, m2=stats.m2)
    splits = {}
    for i, *_ in packed:
        splits[samples[i].split] = splits.get(samples[i].split, 0) + 1
    write_json(out / INDEX, {"format": FORMAT, "version": VERSION, "feature_kind": prep.kind.name, "dim": prep.dim,
                             "dtype": dtype, "prep": prep.key, "splits": splits, "fingerprint": fingerprint,
                             "shards": [{"file": d["file"], "rows": d["rows"]} for d in done]})
    for d in done:
        (out / f"{Path(d['file']).stem}.json").unlink()
    size = sum(d["rows"] for d in done) * row_bytes
    (console or Console(stderr=True)).print(
        f"packed {len(packed)} clips ({', '.join(f'{k} {v}' for k, v in splits.items())}) into {len(done)} shard(s) of "
        f"{dtype}, {size / 2**20:,.1f} MiB, in {time.perf_counter() - start:.1f} s; {len(excluded)} rows excluded")
    return out


class _ShardWriter:
    """One shard being written: ``.shard-K.bin.partial`` until :meth:`close`."""

    def __init__(self, out: Path, number: int, fingerprint: str, dim: int):
        self.file = f"shard-{number:05d}.bin"
        self.path, self.out, self.fingerprint = out / self.file, out, fingerprint
        self.partial = out / f".{self.file}.partial"
        self.f = self.partial.open("wb")
        self.rows, self.clips, self.excluded, self.stats = 0, [], [], RunningStats(dim)

    def add(self, index: int, stored: np.ndarray, motion: float, train: np.ndarray | None, prep) -> None:
        self.f.write(np.ascontiguousarray(stored).tobytes())
        self.clips.append([index, self.rows, len(stored), motion])
        self.rows += len(stored)
        if train is not None:
            self.stats.update(train, prep.present(train))

    def discard(self) -> None:
        self.f.close()
        self.partial.unlink()

    def close(self, end: int) -> dict:
        """Flush the shard to disk, rename it whole, and record what it holds (clips ``< end`` are done)."""
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.partial, self.path)
        record = {"fingerprint": self.fingerprint, "file": self.file, "rows": self.rows, "end": end, "clips": self.clips,
                  "excluded": self.excluded, "stats": [self.stats.n.tolist(), self.stats.mean.tolist(), self.stats.m2.tolist()]}
        write_json(self.out / f"{self.path.stem}.json", record)
        return record


def _whole_shards(out: Path, fingerprint: str, row_bytes: int) -> list[dict]:
    """The shards an earlier packing of the same inputs finished, in order; anything after the first
    one that is not whole (and every ``.partial`` file) is removed."""
    done = []
    for number in range(10**5):
        record_path, shard = out / f"shard-{number:05d}.json", out / f"shard-{number:05d}.bin"
        try:
            record = json.loads(record_path.read_text())
            whole = (record["fingerprint"] == fingerprint and shard.stat().st_size == record["rows"] * row_bytes)
        except (OSError, ValueError, KeyError, TypeError):
            whole = False
        if not whole:
            break
        done.append(record)
    for stale in [*out.glob(".shard-*.partial"), *out.glob("shard-*.bin"), *out.glob("shard-*.json")]:
        if int(stale.name.split("-")[1][:5]) >= len(done) or stale.name.startswith("."):
            stale.unlink()
    return done


def _fingerprint(samples: Sequence[Sample], prep_key: str, dtype: str, shard_bytes: int) -> str:
    h = hashlib.sha1(f"{VERSION}|{prep_key}|{dtype}|{shard_bytes}".encode())
    for s in samples:
        h.update(f"{s.id}|{s.split}|{s.features}|{s.span}|{' '.join(s.glosses)}|{s.text}|{s.signer}\n".encode())
    return h.hexdigest()


def _write_clips(path: Path, samples: Sequence[Sample], packed: list, kind: str) -> None:
    extra = sorted({k for i, *_ in packed for k in samples[i].extra if k not in _NOT_PACKED and k not in PACKED_COLUMNS})
    if any(int(samples[i].extra.get("views") or 1) > 1 for i, *_ in packed):
        log.info("the rows' augmented feature views (column views) are not packed: training from the store reads the "
                 "clean clips")
    buffer = io.StringIO()
    w = csv.writer(buffer)
    w.writerow(["id", "split", "features", "feature_kind", "glosses", "text", "signer", *PACKED_COLUMNS, *extra])
    for i, file, first, frames, motion in packed:
        s = samples[i]
        w.writerow([s.id, s.split, file, kind, " ".join(s.glosses), s.text, s.signer, first, frames, repr(motion),
                    *(s.extra.get(k, "") for k in extra)])
    write_text(path, buffer.getvalue())


