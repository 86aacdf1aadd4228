"""Corpora distributed as videos with annotations (How2Sign, WLASL), How2Sign's OpenPose keypoints,
and Sign Language Transformers' feature pickles."""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import pickle
import re
from pathlib import Path

import numpy as np

from signlab.atomic import read_text_file
from signlab.corpora.core import Clip, Excluded, Found, require
from signlab.data.features import FeatureError
from signlab.errors import SignlabError
from signlab.extract.video import VIDEO_EXTENSIONS

H2S_SPLITS = {"train": "train", "val": "dev", "test": "test"}
# How2Sign's SENTENCE_ID names one clip, not a sentence said by several signers: kept under its own
# column, since ``sentence_id`` is what the sentence pipeline groups clips of the same sentence by.
HOW2SIGN_ID = "how2sign_sentence_id"
H2S_COLUMNS = ["VIDEO_ID", "VIDEO_NAME", "SENTENCE_ID", "SENTENCE_NAME", "START_REALIGNED", "END_REALIGNED", "SENTENCE"]


def _how2sign_rows(root: Path) -> list[tuple[str, Path, int, dict[str, str]]]:
    """(split, file, line, row) of How2Sign's realigned sentence files (tab-separated)."""
    files = {split: [p for p in root.rglob(f"how2sign_realigned_{name}.csv")] for name, split in H2S_SPLITS.items()}
    if not any(files.values()):
        raise SignlabError(f"{root} does not look like How2Sign: no how2sign_realigned_{{train,val,test}}.csv found "
                           "(the realigned sentence files, tab-separated)")
    out = []
    for split, paths in files.items():
        for path in paths:
            reader = csv.DictReader(io.StringIO(read_text_file(path, "How2Sign sentence file"), newline=""), delimiter="\t",
                                    quoting=csv.QUOTE_NONE)
            if not reader.fieldnames or not set(H2S_COLUMNS) <= {c.strip() for c in reader.fieldnames}:
                raise SignlabError(f"{path}: expected the tab-separated columns {', '.join(H2S_COLUMNS)}")
            out += [(split, path, line, {k.strip(): (v or "").strip() for k, v in row.items() if k})
                    for line, row in enumerate(reader, start=2)]
    return out


def how2sign(root: Path) -> Found:
    """How2Sign videos: each sentence's own clip (``<SENTENCE_NAME>.mp4`` anywhere under the root,
    as the sentence-level release names them), else its time range (``START_REALIGNED`` to
    ``END_REALIGNED``, seconds) in the whole video ``<VIDEO_NAME>.mp4``. No glosses: text only."""
    rows = _how2sign_rows(root)
    videos = {p.stem: p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS}
    clips, excluded = [], Excluded()
    for split, path, line, r in rows:
        name = r["SENTENCE_NAME"]
        clip = Clip(name, split, text=r["SENTENCE"], signer=r["VIDEO_ID"], extra={HOW2SIGN_ID: r["SENTENCE_ID"]})
        own = videos.get(name) or videos.get(f"{name}-rgb_front")
        if own is not None:
            clip.video, clip.source = own, str(own.relative_to(root))
        elif r["VIDEO_NAME"] in videos:
            whole = videos[r["VIDEO_NAME"]]
            try:
                clip.start_time, clip.end_time = float(r["START_REALIGNED"]), float(r["END_REALIGNED"])
            except ValueError:
                excluded.add("bad_row", path.name, line, name, "START_REALIGNED / END_REALIGNED are not seconds")
                continue
            clip.video, clip.source = whole, str(whole.relative_to(root))
        else:
            excluded.add("missing", path.name, line, name, f"no video {name}.mp4 or {r['VIDEO_NAME']}.mp4 under {root}")
            continue
        clips.append(clip)
    return Found(clips, excluded)


# ----------------------------------------------------------------------------- OpenPose keypoints

OPENPOSE_PARTS = (("pose_keypoints_2d", 25), ("hand_left_keypoints_2d", 21), ("hand_right_keypoints_2d", 21),
                  ("face_keypoints_2d", 70))
OPENPOSE_DIM = 3 * sum(n for _, n in OPENPOSE_PARTS)  # 411: x, y (pixels), confidence of 137 points
HOW2SIGN_SIZE = (1280, 720)  # How2Sign's rgb_front videos, which its keypoints were computed on

# OpenPose -> MediaPipe Holistic, point by point (both say "left" for the signer's left).
# BODY_25: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles, heels, big toes.
BODY25_TO_POSE = {0: 0, 16: 2, 15: 5, 18: 7, 17: 8, 5: 11, 2: 12, 6: 13, 3: 14, 7: 15, 4: 16, 12: 23, 9: 24,
                  13: 25, 10: 26, 14: 27, 11: 28, 21: 29, 24: 30, 19: 31, 22: 32}
# The face's 68 points (dlib's order) that have a counterpart among signlab's 94 MediaPipe face
# points: brows, eye corners, the lips' corners and midlines, nose tip, chin. The rest of the 94
# stay missing (zeros), which the layout allows for a single landmark.
DLIB_TO_MESH = {17: 70, 18: 63, 19: 105, 20: 66, 21: 107, 22: 336, 23: 296, 24: 334, 25: 293, 26: 300,
                36: 33, 39: 133, 42: 362, 45: 263, 48: 61, 54: 291, 51: 0, 57: 17, 62: 13, 66: 14, 30: 1, 8: 152}


def _openpose_tables() -> tuple[np.ndarray, np.ndarray]:
    """Point index in the 137 OpenPose points -> point index in the 169 of :mod:`signlab.pose` (-1: none)."""
    from signlab import pose

    mesh_slot = {int(m): i for i, m in enumerate(pose.FACE_INDICES)}
    target = np.full(137, -1)
    for op, mp in BODY25_TO_POSE.items():
        target[op] = mp
    target[25:46] = pose.POSE_POINTS + np.arange(21)  # left hand: the same 21 points in the same order
    target[46:67] = pose.POSE_POINTS + 21 + np.arange(21)
    for dlib, mesh in DLIB_TO_MESH.items():
        target[67 + dlib] = pose.POSE_POINTS + 42 + mesh_slot[mesh]
    kept = np.flatnonzero(target >= 0)
    return kept, target[kept]


def openpose_to_holistic(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, 411) OpenPose rows (pixels) as (T, 540) features in the Holistic layout: x / width, y /
    height as MediaPipe gives them, z 0, a body point's confidence as its visibility; a point
    OpenPose did not find (confidence 0) is missing (zeros). Body-relative normalisation, hand
    shapes, part masks and motion segmentation then work as on signlab's own extraction."""
    from signlab import pose

    kept, target = _openpose_tables()
    pts = rows.reshape(len(rows), 137, 3)[:, kept]
    found = pts[..., 2] > 0
    xyz = np.zeros((len(rows), pose.NUM_POINTS, 3), np.float32)
    xyz[:, target, 0] = np.where(found, pts[..., 0] / width, 0)
    xyz[:, target, 1] = np.where(found, pts[..., 1] / height, 0)
    out = np.zeros((len(rows), pose.POSE_FEATURE_DIM), np.float32)
    out[:, pose.XYZ_COLUMNS] = xyz
    body = target < pose.POSE_POINTS
    out[:, pose.VISIBILITY_COLUMNS[target[body]]] = np.where(found[:, body], pts[:, body, 2], 0)
    return out


def openpose_frame(path: Path) -> np.ndarray | None:
    """One OpenPose JSON frame as a (411,) row (body 25, left hand 21, right hand 21, face 70; x,
    y, confidence; a point not found is zeros), or None when nobody is in the frame. Two people
    is an error: which one signs is not known."""
    try:
        people = json.loads(path.read_bytes())["people"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SignlabError(f"{path} is not an OpenPose keypoint file ({exc})") from None
    if not people:
        return None
    if len(people) > 1:
        raise FeatureError("several_people", f"{path}: {len(people)} people in the frame; which one signs is not known")
    row = []
    for key, n in OPENPOSE_PARTS:
        values = np.asarray(people[0].get(key) or np.zeros(3 * n), np.float32)
        if values.shape != (3 * n,):
            raise SignlabError(f"{path}: {key} holds {values.size} numbers, expected {3 * n}")
        row.append(values)
    return np.concatenate(row)


def read_openpose_clip(folder: Path, size: tuple[int, int] = HOW2SIGN_SIZE) -> np.ndarray:
    """A How2Sign keypoint folder (``<...>_<frame>_keypoints.json``, one a frame) as (T, 540) in the
    Holistic layout (:func:`openpose_to_holistic`, ``size``: the video's width and height); frames
    nobody is in are zeros, a clip nobody is in is an error."""
    frames = sorted(folder.glob("*_keypoints.json"), key=lambda p: int(re.findall(r"(\d+)_keypoints", p.name)[-1]))
    if not frames:
        raise SignlabError(f"{folder} holds no *_keypoints.json frames")
    rows = [openpose_frame(f) for f in frames]
    if all(r is None for r in rows):
        raise FeatureError("no_signer", f"{folder}: nobody is in any of its {len(frames)} frames")
    return openpose_to_holistic(np.stack([np.zeros(OPENPOSE_DIM, np.float32) if r is None else r for r in rows]), *size)


def how2sign_openpose(root: Path) -> Found:
    """How2Sign's OpenPose keypoints (``openpose_output/json/<SENTENCE_NAME>/...``) with the
    realigned sentence files: one folder of JSON frames a sentence, in the Holistic layout."""
    from signlab.kinds import HOLISTIC

    rows = _how2sign_rows(root)
    folders = {p.name: p for p in root.rglob("*") if p.is_dir() and any(p.glob("*_keypoints.json"))}
    clips, excluded = [], Excluded()
    for split, path, line, r in rows:
        name = r["SENTENCE_NAME"]
        folder = folders.get(name) or folders.get(f"{name}-rgb_front")
        if folder is None:
            excluded.add("missing", path.name, line, name, f"no keypoint folder {name} under {root}")
            continue
        clips.append(Clip(name, split, text=r["SENTENCE"], signer=r["VIDEO_ID"], source=str(folder.relative_to(root)),
                          load=read_openpose_clip, item=folder, extra={HOW2SIGN_ID: r["SENTENCE_ID"]}))
    return Found(clips, excluded, HOLISTIC.name)


# ----------------------------------------------------------------------------- WLASL

NSLT = ("nslt_100.json", "nslt_300.json", "nslt_1000.json", "nslt_2000.json")


def wlasl(root: Path, subset: int | None = None) -> Found:
    """WLASL: ``WLASL_v0.3.json`` (glosses, each with instances ``{video_id, split, signer_id,
    frame_start (1-based), frame_end (-1: the last), ...}``) and ``videos/<video_id>.mp4``; with
    ``subset`` (100, 300, 1000, 2000) only the instances of ``nslt_<subset>.json``, split as it says."""
    require(root, "WLASL", "WLASL_v0.3.json")
    try:
        entries = json.loads(read_text_file(root / "WLASL_v0.3.json", "WLASL index"))
        instances = [(e["gloss"], i) for e in entries for i in e["instances"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise SignlabError(f"{root / 'WLASL_v0.3.json'} is not WLASL's index ({exc})") from None
    chosen = None
    if subset is not None:
        name = f"nslt_{subset}.json"
        require(root, f"WLASL's {subset}-gloss subset", name)
        chosen = {vid: v["subset"] for vid, v in json.loads(read_text_file(root / name, "WLASL subset")).items()}
    videos = {p.stem: p for p in root.rglob("*.mp4")}
    clips, excluded = [], Excluded()
    for gloss, inst in instances:
        vid = str(inst.get("video_id", ""))
        if chosen is not None and vid not in chosen:
            continue
        split = H2S_SPLITS.get(chosen[vid] if chosen else str(inst.get("split", "")))
        if split is None:
            excluded.add("no_split", "WLASL_v0.3.json", vid, vid, f"split {inst.get('split')!r}")
            continue
        if vid not in videos:
            excluded.add("missing", "WLASL_v0.3.json", vid, vid, f"videos/{vid}.mp4 not found (not every WLASL video "
                                                                  "can still be downloaded)")
            continue
        start, end = int(inst.get("frame_start", 1)), int(inst.get("frame_end", -1))
        clips.append(Clip(vid, split, (gloss.upper(),), gloss, str(inst.get("signer_id", "")),
                          str(videos[vid].relative_to(root)), videos[vid], start - 1, None if end < 0 else end))
    return Found(clips, excluded)


# ----------------------------------------------------------------------------- Sign Language Transformers


def _storage_from_bytes(data: bytes):
    """What ``torch.storage._load_from_bytes`` does, with torch's weights-only unpickler."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


class AllowListUnpickler(pickle.Unpickler):
    """Builds tensors, lists, dicts, strings and numbers, and nothing else: any other class a
    pickle names is refused, so a crafted file runs no code."""

    def find_class(self, module: str, name: str):
        import collections

        import torch

        allowed = {("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
                   ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
                   ("collections", "OrderedDict"): collections.OrderedDict}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refused to build {module}.{name} (only tensors, lists, dicts and strings)")
        return allowed[(module, name)]


def read_slt_file(path: Path) -> list[dict]:
    """A Sign Language Transformers feature file: a gzip-pickled list of ``{name, signer, gloss,
    text, sign}`` dicts, read through :class:`AllowListUnpickler`."""
    try:
        with gzip.open(path, "rb") as f:
            data = AllowListUnpickler(f).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, AttributeError, RuntimeError) as exc:
        raise SignlabError(f"{path} is not a readable Sign Language Transformers file ({exc})") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) and {"name", "gloss", "sign"} <= set(d) for d in data):
        raise SignlabError(f"{path}: expected a list of dicts with name, gloss and sign (Sign Language Transformers' format)")
    return data


def _slt_features(item: tuple[Path, int]) -> np.ndarray:
    path, index = item
    sign = _slt_cache(path)[index]["sign"]
    return np.asarray(sign.float().numpy() if hasattr(sign, "numpy") else sign, np.float32)


_slt_cache = functools.lru_cache(maxsize=1)(read_slt_file)  # each worker reads a file once


def slt(root: Path) -> Found:
    """Sign Language Transformers' feature files (``*.train``, ``*.dev``, ``*.test``, gzip-pickled;
    the published PHOENIX-2014-T features): each clip's (T, 1024) ``sign`` tensor as its
    features (kind ``slt-1024``), its ``gloss`` and ``text``."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and re.search(r"\.(train|dev|test)(\.|$)", p.name))
    if not files:
        raise SignlabError(f"{root} does not look like Sign Language Transformers' features: no file named "
                           "*.train, *.dev or *.test (e.g. phoenix14t.pami0.dev)")
    clips, excluded = [], Excluded()
    for path in files:
        split = re.search(r"\.(train|dev|test)(\.|$)", path.name).group(1)
        for i, d in enumerate(read_slt_file(path)):
            name = str(d["name"]).split("/", 1)[-1]
            if getattr(d["sign"], "numel", lambda: np.size(d["sign"]))() == 0:
                excluded.add("empty", path.name, i, name, "the sign tensor is empty (an annotations-only file)")
                continue
            clips.append(Clip(name, split, tuple(str(d["gloss"]).split()), str(d.get("text", "")), str(d.get("signer", "")),
                              path.name, load=_slt_features, item=(path, i)))
    return Found(clips, excluded, "slt-1024")
