"""Loading and validating feature files, and scanning a manifest's files once before training.

Every problem is tied to the manifest row and comes with what to do about it. A bad row is
excluded and counted, never replaced by a dummy sample.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import multiprocessing
import os
import pickle
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np
from rich.progress import track

from signlab import pose
from signlab.atomic import load_npz, save_npz, write_text
from signlab.data import shards
from signlab.data.manifest import Sample
from signlab.data.stats import RunningStats
from signlab.errors import SignlabError
from signlab.kinds import AUTO, FeatureKind, config_kind, feature_kind, guessed

log = logging.getLogger(__name__)

ADVICE = {
    "missing": "check the features column (relative to the manifest's folder) or extract the file",
    "corrupt": "re-extract the file",
    "shape": "features must be a 2-D array (frames, dims)",
    "empty": "the clip has no frames: re-extract it or drop the row",
    "dim": "every file must have the same feature dimension as the model input",
    "nonfinite": "re-extract the file; NaN/inf usually come from a failed extraction",
    "no_body": "no frame shows the signer's shoulders: re-extract the clip or drop the row",
    "no_glosses": "add the glosses or drop the row",
    "no_text": "add the text or drop the row",
    "not_one_sign": "an isolated-sign corpus has one gloss a clip: split the clip, or train the gloss task on it",
    "too_short": "the clip has fewer frames than its glosses need for CTC: check the row's "
    "glosses, or lower model.subsampling",
    "low_motion": "the clip hardly moves (a still or failed recording); lower data.motion_floor to keep it",
}


class FeatureError(SignlabError):
    """A feature file that cannot be used; ``kind`` is a key of :data:`ADVICE`."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def mask_path(features: Path) -> Path:
    """Where the extractor writes a pose clip's part mask."""
    return features.with_name(features.stem + ".mask.npy")


def view_path(features: Path, view: int) -> Path:
    """Where ``extract i3d --views K`` writes augmented view ``view`` (1..K-1) of a clip."""
    return features.with_name(f"{features.stem}.view{view}.npy")


def load_features(path: str | Path, expected_dim: int | None = None, span: tuple[int, int] | None = None) -> np.ndarray:
    """Read a feature file as float32 (T, D), validating it: ``.npy``, a MediaPipe Holistic
    ``.pose`` file (read into the 540-dim pose layout), or with ``span`` a clip of a packed
    store's shard (:mod:`signlab.data.shards`)."""
    if span is not None:
        try:  # checked when it was packed: only its width can be wrong for this reader
            arr = shards.read_clip(path, span)
        except SignlabError as exc:
            raise FeatureError("corrupt", str(exc)) from exc
        if expected_dim is not None and arr.shape[1] != expected_dim:
            raise FeatureError("dim", f"{path} has {arr.shape[1]} dims per frame, expected {expected_dim}")
        return arr
    path = Path(path)
    if not path.is_file():
        raise FeatureError("missing", f"{path} not found")
    try:
        if path.suffix == ".pose":
            from signlab.data.pose_files import read_pose_file

            arr = read_pose_file(path)
        else:
            arr = np.load(path, allow_pickle=False)
    except SignlabError as exc:
        raise FeatureError("corrupt", str(exc)) from exc
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise FeatureError("corrupt", f"{path} cannot be read ({exc})") from exc
    return check_features(arr, str(path), expected_dim)


def check_features(arr, where: str, expected_dim: int | None = None) -> np.ndarray:
    """``arr`` as float32 (T, D) if it is usable features, else a :class:`FeatureError` that
    names ``where``: the checks every entry point applies, files and Python API alike."""
    if not isinstance(arr, np.ndarray):
        try:
            arr = np.asarray(arr)
        except (ValueError, TypeError) as exc:
            raise FeatureError("shape", f"{where}: not an array of numbers ({exc})") from None
    if arr.ndim != 2:
        raise FeatureError("shape", f"{where} has shape {arr.shape}, expected (frames, dims)")
    if arr.shape[0] == 0:
        raise FeatureError("empty", f"{where} has 0 frames")
    if expected_dim is not None and arr.shape[1] != expected_dim:
        raise FeatureError("dim", f"{where} has {arr.shape[1]} dims per frame, expected {expected_dim}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise FeatureError("corrupt", f"{where} holds {arr.dtype} values, not real numbers")
    arr = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        frames = np.flatnonzero(bad.any(axis=1))
        raise FeatureError(
            "nonfinite", f"{where} has {int(bad.sum())} NaN/inf values (first in frame {frames[0]})"
        )
    return arr


@dataclass
class Preprocessor:
    """What happens to every clip of a kind before statistics and batching: pose becomes body-relative."""

    kind: FeatureKind
    pose_normalize: bool = True

    @classmethod
    def for_config(cls, cfg) -> Preprocessor:
        """The preprocessing a resolved gloss or sentence config asks for."""
        return cls(config_kind(cfg), cfg.data.pose_normalization)

    @property
    def dim(self) -> int:
        return self.kind.dim

    @property
    def is_pose(self) -> bool:
        return self.kind.pose

    def read(self, path: str | Path, span: tuple[int, int] | None = None) -> np.ndarray:
        """A feature file (``span``: a packed clip), checked; for pose, with the part mask the
        extractor wrote beside it (``<clip>.mask.npy``, (T, 4): pose, hands, face) applied, so a
        part it marks as missing is missing whatever the file holds (packing applied it already)."""
        raw = load_features(path, self.dim, span)
        if not self.is_pose or span is not None:
            return raw
        mask = mask_path(Path(path))
        if not mask.is_file():
            return raw
        try:
            parts = np.load(mask, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FeatureError("corrupt", f"{mask} cannot be read ({exc})") from exc
        if parts.shape != (len(raw), len(pose.PARTS)) or parts.dtype != bool:
            raise FeatureError("corrupt", f"{mask} should be a ({len(raw)}, {len(pose.PARTS)}) bool array for its "
                                          f"{len(raw)} frames, got {parts.shape} {parts.dtype}: extract the clip again")
        return pose.apply_part_mask(raw, parts)

    @property
    def key(self) -> str:
        """What decides the preprocessed values: the kind, and body normalisation for pose."""
        return f"{self.kind.name} normalized" if self.is_pose and self.pose_normalize else self.kind.name

    def sample(self, s: Sample) -> np.ndarray:
        """Row ``s``'s features, read, checked and preprocessed."""
        return self(self.read(s.features, s.span), s.where)

    def __call__(self, raw: np.ndarray, where: str = "") -> np.ndarray:
        if not (self.is_pose and self.pose_normalize):
            return raw
        out = pose.normalize_body(raw)
        if out is None:
            raise FeatureError("no_body", f"{where}: no frame shows the signer's shoulders")
        return out

    def present(self, frames: np.ndarray) -> np.ndarray | None:
        """Which values belong to detected parts (pose input only)."""
        return pose.value_mask(frames) if self.is_pose else None


@dataclass
class Exclusion:
    sample: Sample
    kind: str
    message: str

    @property
    def reason(self) -> str:
        """The message without the row's location, for lines that name the row already."""
        return self.message.removeprefix(f"{self.sample.where}: ")


@dataclass
class ScanResult:
    """The usable samples of one split, their lengths and (when small enough) their arrays."""

    samples: list[Sample]
    lengths: list[int]
    arrays: list[np.ndarray] | None
    excluded: list[Exclusion] = field(default_factory=list)

    def features(self, index: int, prep: Preprocessor) -> np.ndarray:
        """Preprocessed features of sample ``index``: from memory, or read again."""
        if self.arrays is not None:
            return self.arrays[index]
        return prep.sample(self.samples[index])

    def all_features(self, prep: Preprocessor) -> list[np.ndarray]:
        return self.arrays if self.arrays is not None else [self.features(i, prep) for i in range(len(self.samples))]

    def without(self, bad: np.ndarray, why: Callable[[int], tuple[str, str]]) -> ScanResult:
        """The samples not marked ``bad`` (a boolean per sample); sample ``i`` marked joins the
        exclusions with ``why(i)``: (kind, message)."""
        drop = np.flatnonzero(bad).tolist()
        if not drop:
            return self
        keep = np.flatnonzero(~bad).tolist()
        return ScanResult([self.samples[i] for i in keep], [self.lengths[i] for i in keep],
                          None if self.arrays is None else [self.arrays[i] for i in keep],
                          self.excluded + [Exclusion(self.samples[i], *why(i)) for i in drop])



Check = Callable[[Sample, int], "tuple[str, str] | None"]  # (row, frames): a reason to leave a readable row out


# The rows each task needs (module-level, so that a scan by worker processes can take them along).
def has_glosses(sample: Sample, frames: int) -> tuple[str, str] | None:
    return None if sample.glosses else ("no_glosses", f"{sample.where}: the glosses column is empty")


def has_text(sample: Sample, frames: int) -> tuple[str, str] | None:
    return None if sample.text else ("no_text", f"{sample.where}: the text / sentence column is empty")


def one_sign(sample: Sample, frames: int) -> tuple[str, str] | None:
    if len(sample.glosses) == 1:
        return None
    return "not_one_sign", f"{sample.where}: an isolated-sign clip has one gloss, this row has {len(sample.glosses)}"


def scan(
    samples: Sequence[Sample],
    prep: Preprocessor,
    *,
    check: Check | None = None,
    motion_floor: float = 0.0,
    stats: RunningStats | None = None,
    cache_bytes: int = 2 << 30,
    workers: int = 1,
    saved_scan: Path | None = None,
    desc: str = "scanning features",
    progress: bool = True,
) -> ScanResult:
    """Load and validate every file once, feeding ``stats`` (train split) on the way, and
    keep the preprocessed arrays in memory if they fit in ``cache_bytes``.

    ``check(sample, frames)`` may exclude a readable row (no glosses, too short for CTC...) by
    returning ``(kind, message)``; ``motion_floor`` excludes clips that move less (``low_motion``).
    The rows of a packed store, packed with this preprocessing, are not read for any of this: their
    lengths, motion and train statistics are in its index (:func:`scan_packed`). ``workers``: more
    than one (0: :func:`scan_processes` chooses) scans a split of over :data:`SCAN_CHUNK` rows in
    that many processes, saving the result in ``saved_scan`` (:func:`scan_parallel`); ``check`` must then
    be a module-level function, which the worker processes import.
    """
    packed = scan_packed(samples, prep, check, motion_floor, stats)
    if packed is not None:
        return packed
    workers = workers or scan_processes(len(samples))
    if workers > 1 and len(samples) > SCAN_CHUNK:
        return scan_parallel(samples, prep, check, motion_floor, stats, workers, saved_scan, desc)
    kept, lengths, arrays, excluded = [], [], [], []
    total = 0
    for s in track(samples, description=desc, transient=True, disable=not progress):
        try:
            arr = prep.sample(s)
        except FeatureError as exc:
            excluded.append(Exclusion(s, exc.kind, str(exc)))
            continue
        problem = (check(s, len(arr)) if check else None) or low_motion(s, arr, prep, motion_floor)
        if problem:
            excluded.append(Exclusion(s, *problem))
            continue
        if stats is not None:
            stats.update(arr, prep.present(arr))
        kept.append(s)
        lengths.append(len(arr))
        if arrays is not None:
            total += arr.nbytes
            arrays.append(arr)
            if total > cache_bytes:
                arrays = None  # too big to hold: the dataset reads files on demand
    return ScanResult(kept, lengths, arrays, excluded)


SCAN_CHUNK = 500  # rows a worker process scans at a time
PARALLEL_ROWS = 2000  # data.scan_workers 0 (auto) scans a split of this many rows in parallel
_SCAN_CACHE = 1  # version of the scan cache's layout


def scan_processes(rows: int) -> int:
    """How many processes ``data.scan_workers: 0`` scans ``rows`` loose rows with: one a core, up
    to 8, for a split of at least :data:`PARALLEL_ROWS` rows (reading files waits on the disk, so
    more processes than cores still help a little, but the statistics use the cores); else one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, cores) if rows >= PARALLEL_ROWS else 1


@dataclass
class _Part:
    """A scan of some rows, by their positions among the rows scanned: what a worker sends back, and
    what the scan cache holds. ``stats``: the running statistics of the kept rows (a train split's
    statistics are needed unless a resumed run has them: always computed, so one cache serves both)."""

    kept: list[int]
    lengths: list[int]
    excluded: list[tuple[int, str, str]]
    stats: RunningStats


def _scan_part(samples: list[Sample], prep: Preprocessor, check: Check | None, motion_floor: float) -> _Part:
    """A worker's scan of ``samples`` (nothing held in memory)."""
    running = RunningStats(prep.dim)
    result = scan(samples, prep, check=check, motion_floor=motion_floor, stats=running, cache_bytes=0, progress=False)
    where = {id(s): i for i, s in enumerate(samples)}
    return _Part([where[id(s)] for s in result.samples], result.lengths,
                 [(where[id(e.sample)], e.kind, e.message) for e in result.excluded], running)


def scan_parallel(samples: Sequence[Sample], prep: Preprocessor, check: Check | None, motion_floor: float,
                  stats: RunningStats | None, workers: int, saved_scan: Path | None, desc: str) -> ScanResult:
    """:func:`scan` by ``workers`` processes, :data:`SCAN_CHUNK` rows at a time. The arrays are not
    kept (a clip is read when it is needed). With ``saved_scan`` (a file beside the run), the result is
    written there, and read back instead of scanning when the rows, their files (size and time of
    change), the preprocessing, the check and the motion floor are the same, e.g. when a run resumes."""
    samples = list(samples)
    key = _scan_key(samples, prep, check, motion_floor)
    part = _read_scan_cache(saved_scan, key, len(samples), prep.dim) if saved_scan is not None else None
    if part is not None:
        log.info("%s: the scan of %d rows read from %s", desc, len(samples), saved_scan)
    else:
        chunks = [samples[i: i + SCAN_CHUNK] for i in range(0, len(samples), SCAN_CHUNK)]
        # spawn: a fresh interpreter per worker, safe whatever threads this process has started
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(track(pool.map(_scan_part, chunks, repeat(prep), repeat(check), repeat(motion_floor)),
                               total=len(chunks), description=f"{desc} ({workers} processes)", transient=True))
        part = _Part([], [], [], RunningStats(prep.dim))
        for start, p in zip(range(0, len(samples), SCAN_CHUNK), parts):
            part.kept += [start + i for i in p.kept]
            part.lengths += p.lengths
            part.excluded += [(start + i, kind, message) for i, kind, message in p.excluded]
            part.stats.merge(p.stats.n, p.stats.mean, p.stats.m2)
        if saved_scan is not None:
            _write_scan_cache(saved_scan, key, part)
    if stats is not None:
        stats.merge(part.stats.n, part.stats.mean, part.stats.m2)
    return ScanResult([samples[i] for i in part.kept], part.lengths, None,
                      [Exclusion(samples[i], kind, message) for i, kind, message in part.excluded])


def _scan_key(samples: Sequence[Sample], prep: Preprocessor, check: Check | None, motion_floor: float) -> str:
    """What a scan's result depends on, hashed: the rows, their files' sizes and times of change
    (the pose part masks' too), the preprocessing, the check's name and the motion floor."""
    h = hashlib.sha256(repr((_SCAN_CACHE, prep.key, prep.dim, check and f"{check.__module__}.{check.__qualname__}",
                             motion_floor)).encode())
    for s in samples:
        files = [s.features, mask_path(s.features)] if prep.is_pose else [s.features]
        changed = []
        for f in files:
            try:
                st = os.stat(f)
                changed.append((st.st_size, st.st_mtime_ns))
            except OSError:
                changed.append(None)
        h.update(repr((s.source, s.row, s.id, str(s.features), s.glosses, s.text, changed)).encode())
    return h.hexdigest()


def _write_scan_cache(path: Path, key: str, part: _Part) -> None:
    save_npz(path, key=np.array(key), kept=np.array(part.kept, np.int64), lengths=np.array(part.lengths, np.int64),
             excluded=np.array(json.dumps(part.excluded)), n=part.stats.n, mean=part.stats.mean, m2=part.stats.m2)


def _read_scan_cache(path: Path, key: str, rows: int, dim: int) -> _Part | None:
    """The cached scan in ``path`` if it was made with ``key``; None (and the scan is made again)
    if there is none, it is another scan's, or it cannot be read (said in the log)."""
    if not path.is_file():
        return None
    try:
        z = load_npz(path, ["key", "kept", "lengths", "excluded", "n", "mean", "m2"], "scan cache")
        if str(z["key"]) != key:
            log.info("%s is the scan of other rows or files: scanning again", path)
            return None
        excluded = [(int(i), str(kind), str(message)) for i, kind, message in json.loads(str(z["excluded"]))]
        kept, lengths = z["kept"].tolist(), z["lengths"].tolist()
        if len(kept) != len(lengths) or sorted(kept + [i for i, _, _ in excluded]) != list(range(rows)):
            raise ValueError(f"it does not account for each of the {rows} rows once")
        stats = RunningStats(dim)
        stats.merge(*(z[k].astype(np.float64).reshape(dim) for k in ("n", "mean", "m2")))
    except (SignlabError, ValueError, TypeError) as exc:
        log.warning("%s cannot be used (%s): scanning again", path, exc)
        return None
    return _Part(kept, lengths, excluded, stats)


def low_motion(s: Sample, features: np.ndarray | float, prep: Preprocessor, floor: float) -> tuple[str, str] | None:
    """The ``low_motion`` exclusion of row ``s`` when its clip (``features``, or its mean motion
    already measured) moves less than ``floor`` on average."""
    if not floor:
        return None
    motion = features if isinstance(features, float) else pose.mean_motion(features, prep.is_pose)
    return ("low_motion", f"{s.where}: mean motion {motion:.2e} < {floor:.2e}") if motion < floor else None


def scan_packed(samples: Sequence[Sample], prep: Preprocessor, check: Check | None, motion_floor: float,
                stats: RunningStats | None) -> ScanResult | None:
    """:func:`scan` of rows that all come from one store packed with ``prep``'s preprocessing, from
    its index alone: lengths and motion as packed, and the train statistics when the rows are exactly
    the store's train split (None: the rows must be read). Nothing is held in memory: a packed clip
    is one read from a shard whenever it is needed."""
    if not samples or any(s.span is None for s in samples) or len({f.parent for f in {s.features for s in samples}}) > 1:
        return None
    info = shards.open_store(samples[0].features.parent)
    if info.prep_key != prep.key:
        return None
    kept, excluded = [], []
    for s in samples:
        problem = (check(s, s.span[1]) if check else None) or low_motion(s, float(s.extra["motion"]), prep, motion_floor)
        if problem:
            excluded.append(Exclusion(s, *problem))
        else:
            kept.append(s)
    if stats is not None:
        if not (len(kept) == info.splits.get("train") and all(s.split == "train" for s in kept)):
            return None  # another set of rows than the one the statistics describe
        stats.merge(*info.train_stats())
    return ScanResult(kept, [s.span[1] for s in kept], None, excluded)


def scan_split(samples: Sequence[Sample], prep: Preprocessor, split: str, *, report: bool = True,
               **options) -> ScanResult:
    """:func:`scan` of one split's rows (``options`` as there), its exclusions reported in one
    warning unless ``report`` is False (already done); a split with no usable row left is an error."""
    result = scan(samples, prep, desc=f"scanning {split}", **options)
    if report:
        report_exclusions(result.excluded, split, len(samples))
    if not result.samples:
        raise SignlabError(f"no usable {split} rows left (see the warnings above for why each was excluded)")
    return result


def resolve_kind(samples: Sequence[Sample], configured: str) -> FeatureKind:
    """The feature kind of these rows: ``configured`` unless it is ``auto``, else the kind the rows
    declare (they must agree), else a guess from the width, logged so that it can be corrected."""
    dim = infer_dim(samples)
    declared = sorted({s.kind for s in samples if s.kind})
    if len(declared) > 1:
        raise SignlabError(f"the manifest rows declare different feature kinds ({', '.join(declared)}): "
                           "one model reads one kind of features")
    if configured != AUTO:
        if declared and declared[0] != configured:
            raise SignlabError(f"data.feature_kind is {configured} but the manifest declares {declared[0]}")
        return feature_kind(configured, dim, "data.feature_kind")
    if declared:
        return feature_kind(declared[0], dim, f"the manifest's features ({samples[0].where})")
    kind = guessed(dim)
    log.info("features: %d values a frame and no feature_kind in the manifest, so read as %s; if they are not, "
             "declare it (manifest column feature_kind, or --set data.feature_kind=custom-%d)", dim, kind.name, dim)
    return kind


def infer_dim(samples: Sequence[Sample]) -> int:
    """The feature dimension of the first readable file (others are checked against it)."""
    for s in samples:
        try:
            return load_features(s.features, span=s.span).shape[1]
        except FeatureError:
            continue
    raise SignlabError(
        f"none of the {len(samples)} feature files could be read; first: {samples[0].where} -> "
        f"{samples[0].features}" if samples else "the manifest has no rows"
    )


def write_exclusions(path: Path, excluded: Sequence[Exclusion]) -> None:
    """``excluded.csv``: every row left out, and why."""
    buffer = io.StringIO()
    w = csv.writer(buffer)
    w.writerow(["source", "row", "id", "split", "reason", "message"])
    for e in excluded:
        w.writerow([e.sample.source, e.sample.row, e.sample.id, e.sample.split, e.kind, e.reason])
    write_text(path, buffer.getvalue())


def report_exclusions(excluded: Sequence[Exclusion], split: str, total: int) -> None:
    """One warning per split: how many rows were excluded, why, and the first few of each kind."""
    if not excluded:
        return
    counts = Counter(e.kind for e in excluded)
    lines = [f"{split}: excluded {len(excluded)} of {total} rows ({', '.join(f'{k}: {n}' for k, n in counts.items())})"]
    for kind in counts:
        examples = [e for e in excluded if e.kind == kind][:3]
        for e in examples:
            lines.append(f"  {e.sample.where}: {e.reason}")
        lines.append(f"  -> {ADVICE[kind]}")
    log.warning("\n".join(lines))
