"""Google's Kaggle landmark corpora: Isolated Sign Language Recognition (``asl-signs``: one parquet
a clip, long format) and ASL Fingerspelling (parquet files of many sequences, wide format).

Both hold MediaPipe Holistic landmarks (normalised image coordinates, NaN where a part was not
found), so they are mapped into the ``pose/holistic-540`` layout exactly as signlab's own
extractor writes it (:class:`signlab.extract.holistic.HolisticLandmarks`: the same 94 face points,
missing parts as zeros, masks from the NaNs): a model trained on them recognises ``signlab
recognize video.mp4``. The corpora carry no visibility, so a found body point gets 1.0 (what
MediaPipe gives the upper body). Columns are read whole with pyarrow, never row by row.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np

from signlab.atomic import read_text_file
from signlab.corpora.core import Clip, Excluded, Found, require
from signlab.data.features import FeatureError
from signlab.errors import SignlabError
from signlab.kinds import HOLISTIC

PARTS = {"pose": 33, "left_hand": 21, "right_hand": 21, "face": 468}


def _parquet():
    try:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - a dependency of signlab
        raise SignlabError("reading parquet needs pyarrow: pip install pyarrow") from exc
    return pq, pc


def holistic_features(parts: dict[str, np.ndarray], where: str) -> np.ndarray:
    """(T, 540) features from per-part (T, points, 3) coordinates with NaN where not found."""
    from signlab.extract.holistic import HolisticLandmarks
    from signlab.pose import FACE_INDICES

    missing = [p for p in PARTS if p not in parts]
    if missing:
        raise FeatureError("missing_landmarks", f"{where} has no {', '.join(missing)} landmarks (a corpus file cut "
                                                "short or converted without them)")
    parts = {**parts, "face": parts["face"][:, FACE_INDICES]}  # only the points the layout keeps are worth the work
    found = {p: ~np.isnan(a).any(-1) for p, a in parts.items()}
    filled = {p: np.where(found[p][..., None], a, 0.0).astype(np.float32) for p, a in parts.items()}
    face = np.zeros((len(filled["face"]), PARTS["face"], 3), np.float32)
    face[:, FACE_INDICES] = filled["face"]
    body = np.concatenate([filled["pose"], found["pose"][..., None].astype(np.float32)], -1)
    return HolisticLandmarks(body, face, filled["left_hand"], filled["right_hand"], np.zeros_like(body)).features()


# Every Isolated Signs file lists each frame's 543 landmarks in this order; a file that does is
# read by reshaping, any other (reordered, a part missing, frames with gaps) by placing each row
KAGGLE_ORDER = (("face", 468), ("left_hand", 21), ("pose", 33), ("right_hand", 21))
_KAGGLE_INDEX = np.concatenate([np.arange(n) for _, n in KAGGLE_ORDER])


def read_long_parquet(path: Path) -> np.ndarray:
    """One Isolated Signs clip (``frame, row_id, type, landmark_index, x, y, z``) as (T, 540)."""
    pq, _ = _parquet()
    try:
        table = pq.ParquetFile(path, read_dictionary=["type"]).read(
            columns=["frame", "type", "landmark_index", "x", "y", "z"])
    except (OSError, KeyError, ValueError) as exc:
        raise SignlabError(f"{path} is not a readable landmark parquet ({exc})") from None
    kinds = table["type"].unify_dictionaries().combine_chunks()
    names = kinds.dictionary.to_pylist()
    codes, index = kinds.indices.to_numpy(), table["landmark_index"].to_numpy().astype(np.int64)
    frame = table["frame"].to_numpy()
    xyz = np.stack([table[c].to_numpy(zero_copy_only=False) for c in ("x", "y", "z")], -1)
    per_frame = sum(n for _, n in KAGGLE_ORDER)
    if (len(frame) % per_frame == 0 and all(name in names for name, _ in KAGGLE_ORDER)
            and _kaggle_layout(codes, index, frame, [names.index(name) for name, _ in KAGGLE_ORDER])):
        xyz = xyz.reshape(-1, per_frame, 3)
        bounds = np.cumsum([0, *(n for _, n in KAGGLE_ORDER)])
        return holistic_features({name: xyz[:, a:b] for (name, _), a, b in zip(KAGGLE_ORDER, bounds, bounds[1:])},
                                 str(path))
    frames, row = np.unique(frame, return_inverse=True)
    parts = {}
    for code, name in enumerate(names):
        if name not in PARTS:
            continue
        sel = codes == code
        if index[sel].min() < 0 or index[sel].max() >= PARTS[name]:
            raise SignlabError(f"{path}: {name} landmark_index outside 0..{PARTS[name] - 1}")
        part = np.full((len(frames), PARTS[name], 3), np.nan)
        part[row[sel], index[sel]] = xyz[sel]
        parts[name] = part
    return holistic_features(parts, str(path))


def _kaggle_layout(codes: np.ndarray, index: np.ndarray, frame: np.ndarray, order: list[int]) -> bool:
    """Whether the rows are whole frames in increasing order, each in :data:`KAGGLE_ORDER`."""
    per_frame = len(_KAGGLE_INDEX)
    expected = np.repeat(order, [n for _, n in KAGGLE_ORDER])
    frame = frame.reshape(-1, per_frame)
    return bool((codes.reshape(-1, per_frame) == expected).all() and (index.reshape(-1, per_frame) == _KAGGLE_INDEX).all()
                and (frame == frame[:, :1]).all() and (np.diff(frame[:, 0]) > 0).all())


@functools.lru_cache(maxsize=1)
def _wide_file(path: Path) -> tuple[np.ndarray, dict[int, slice], dict[str, np.ndarray]]:
    """A fingerspelling parquet, read once per worker: its sequence ids, each one's rows, and
    every landmark column."""
    pq, _ = _parquet()
    table = pq.read_table(path)
    if "sequence_id" not in table.column_names or "frame" not in table.column_names:
        raise SignlabError(f"{path}: expected the columns sequence_id and frame (ASL Fingerspelling's wide layout)")
    seq = table["sequence_id"].to_numpy()
    order = np.lexsort((table["frame"].to_numpy(), seq))
    seq = seq[order]
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    bounds = {int(seq[s]): slice(s, e) for s, e in zip(starts, [*starts[1:], len(seq)])}
    columns = {name: table[name].to_numpy(zero_copy_only=False)[order] for name in table.column_names
               if name[:2] in ("x_", "y_", "z_")}
    return seq, bounds, columns


def read_wide_sequence(item: tuple[Path, int]) -> np.ndarray:
    """One fingerspelling sequence (wide columns ``x_face_0 ... z_right_hand_20``) as (T, 540)."""
    path, sequence = item
    _, bounds, columns = _wide_file(path)
    if sequence not in bounds:
        raise SignlabError(f"{path} holds no sequence {sequence}")
    rows = bounds[sequence]
    parts = {}
    for part, n in PARTS.items():
        names = [[f"{axis}_{part}_{i}" for axis in "xyz"] for i in range(n)]
        if all(c in columns for point in names for c in point):
            parts[part] = np.stack([np.stack([columns[c][rows] for c in point], -1) for point in names], 1)
    return holistic_features(parts, f"{path} (sequence {sequence})")


def _csv_rows(path: Path, needed: set[str], what: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(read_text_file(path, what).splitlines()))
    if not rows or not needed <= set(rows[0]):
        raise SignlabError(f"{path}: expected the columns {', '.join(sorted(needed))}")
    return rows


def signer_splits(signers: list[str], held_out: float = 0.1) -> dict[str, str]:
    """Whole participants to dev and test (about ``held_out`` of them each, at least one), so
    evaluation is on people the model never saw; the rest train. Sorted ids, so it is stable."""
    ordered = sorted(set(signers), key=lambda s: (len(s), s))
    n = max(1, round(held_out * len(ordered))) if len(ordered) >= 3 else 0
    return {s: "test" if i < n else "dev" if i < 2 * n else "train" for i, s in enumerate(ordered)}


def asl_signs(root: Path) -> Found:
    """Isolated Signs: ``train.csv`` (``path, participant_id, sequence_id, sign``) and one parquet a
    clip. The corpus has no splits: whole participants are held out for dev and test."""
    require(root, "Google's Isolated Sign Language Recognition corpus (asl-signs)", "train.csv")
    rows = _csv_rows(root / "train.csv", {"path", "participant_id", "sequence_id", "sign"}, "asl-signs train.csv")
    return _participant_clips(root, rows, lambda r: (
        f"{r['participant_id']}/{r['sequence_id']}", (r["sign"],), r["sign"], read_long_parquet, root / r["path"]))


def asl_fingerspelling(root: Path) -> Found:
    """ASL Fingerspelling: ``train.csv`` (``path, file_id, sequence_id, participant_id, phrase``),
    parquet files of many sequences. Glosses are the phrase's characters (a space is ``_``);
    whole participants are held out for dev and test."""
    require(root, "Google's ASL Fingerspelling corpus", "train.csv")
    rows = _csv_rows(root / "train.csv", {"path", "file_id", "sequence_id", "participant_id", "phrase"},
                     "ASL Fingerspelling train.csv")
    return _participant_clips(root, rows, lambda r: (
        f"{r['file_id']}/{r['sequence_id']}", tuple("_" if c == " " else c for c in r["phrase"]), r["phrase"],
        read_wide_sequence, (root / r["path"], int(r["sequence_id"]))))


def _participant_clips(root: Path, rows: list[dict[str, str]], describe) -> Found:
    """Clips of a Kaggle ``train.csv`` whose parquet file exists, whole participants held out for dev
    and test; ``describe(row)`` gives (clip id, glosses, text, loader, what the loader reads)."""
    split = signer_splits([r["participant_id"] for r in rows])
    clips, excluded = [], Excluded()
    for line, r in enumerate(rows, start=2):
        clip_id, glosses, text, load, item = describe(r)
        if not (root / r["path"]).is_file():
            excluded.add("missing", "train.csv", line, clip_id, f"{root / r['path']} not found")
            continue
        clips.append(Clip(clip_id, split[r["participant_id"]], glosses, text, r["participant_id"], r["path"],
                          load=load, item=item))
    return Found(clips, excluded, HOLISTIC.name)
