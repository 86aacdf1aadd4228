"""Corpora distributed as folders of frames with annotation files: PHOENIX-2014, PHOENIX-2014-T,
CSL-Daily. Their frames are extracted as the video they are (pose or I3D)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from signlab.atomic import read_text_file
from signlab.corpora.core import Clip, Excluded, Found, frame_folder_clip, require
from signlab.errors import SignlabError

SPLITS = {"train": "train", "dev": "dev", "val": "dev", "test": "test"}


def read_table(path: Path, header: list[str], what: str) -> list[dict[str, str]]:
    """A ``|``-separated annotation file whose first line must be ``header``; rows with the wrong
    number of fields are a one-line error naming the line."""
    text = read_text_file(path, what)
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="|", quoting=csv.QUOTE_NONE))
    if not rows or [c.strip() for c in rows[0]] != header:
        raise SignlabError(f"{path}: expected the header {'|'.join(header)}, found {'|'.join(rows[0]) if rows else 'nothing'}")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise SignlabError(f"{path}, line {line}: {len(row)} fields where the header has {len(header)}")
        out.append({"line": str(line), **dict(zip(header, (c.strip() for c in row)))})
    return out


FRAMES = Path("features") / "fullFrame-210x260px"


def phoenix_2014(root: Path) -> Found:
    """PHOENIX-2014 (multisigner): ``annotations/manual/{train,dev,test}.corpus.csv``
    (``id|folder|signer|annotation``), frames in ``features/fullFrame-210x260px/<split>/<folder>``."""
    manual = Path("annotations") / "manual"
    require(root, "PHOENIX-2014", *(str(manual / f"{s}.corpus.csv") for s in ("train", "dev", "test")))
    clips, excluded = [], Excluded()
    for split in ("train", "dev", "test"):
        path = root / manual / f"{split}.corpus.csv"
        for row in read_table(path, ["id", "folder", "signer", "annotation"], "PHOENIX-2014 annotation file"):
            clip = Clip(row["id"], split, tuple(row["annotation"].split()), signer=row["signer"],
                        source=str(FRAMES / split / _without_glob(row["folder"])))
            if frame_folder_clip(clip, root / clip.source, excluded, path.name, int(row["line"])):
                clips.append(clip)
    return Found(clips, excluded)


def phoenix_2014_t(root: Path) -> Found:
    """PHOENIX-2014-T: ``annotations/manual/PHOENIX-2014-T.{train,dev,test}.corpus.csv``
    (``name|video|start|end|speaker|orth|translation``), frames in
    ``features/fullFrame-210x260px/<split>/<name>/images0001.png ...``. The ``video`` column says
    ``<name>/1/*.png``, the released folders have no ``/1/``: either is found."""
    manual = Path("annotations") / "manual"
    require(root, "PHOENIX-2014-T", *(str(manual / f"PHOENIX-2014-T.{s}.corpus.csv") for s in ("train", "dev", "test")))
    clips, excluded = [], Excluded()
    header = ["name", "video", "start", "end", "speaker", "orth", "translation"]
    for split in ("train", "dev", "test"):
        path = root / manual / f"PHOENIX-2014-T.{split}.corpus.csv"
        for row in read_table(path, header, "PHOENIX-2014-T annotation file"):
            as_written = FRAMES / split / _without_glob(row["video"])
            released = FRAMES / split / row["name"]
            folder = as_written if (root / as_written).is_dir() else released
            clip = Clip(row["name"], split, tuple(row["orth"].split()), row["translation"], row["speaker"], str(folder))
            if frame_folder_clip(clip, root / folder, excluded, path.name, int(row["line"])):
                clips.append(clip)
    return Found(clips, excluded)


def csl_daily(root: Path) -> Found:
    """CSL-Daily: ``sentence_label/video_map.txt`` (``index|name|length|gloss|char|word|postag``),
    ``sentence_label/split_1.txt`` (``name|split``), frames in ``sentence/frames_512x512/<name>/``
    (30 frames a second). The text is the sentence's characters, unspaced."""
    labels = Path("sentence_label")
    require(root, "CSL-Daily", str(labels / "video_map.txt"), str(labels / "split_1.txt"))
    splits = {r["name"]: r["split"] for r in read_table(root / labels / "split_1.txt", ["name", "split"], "CSL-Daily split file")}
    path = root / labels / "video_map.txt"
    clips, excluded = [], Excluded()
    for row in read_table(path, ["index", "name", "length", "gloss", "char", "word", "postag"], "CSL-Daily label file"):
        split = SPLITS.get(splits.get(row["name"], "").lower())
        if split is None:
            excluded.add("no_split", path.name, row["line"], row["name"], f"{row['name']} is not in split_1.txt")
            continue
        performer = re.search(r"_(P\d+)_", row["name"])  # S<sentence>_P<performer>_T<take>
        clip = Clip(row["name"], split, tuple(row["gloss"].split()), "".join(row["char"].split()),
                    performer.group(1) if performer else "", str(Path("sentence") / "frames_512x512" / row["name"]),
                    extra={"words": row["word"]})
        if frame_folder_clip(clip, root / clip.source, excluded, path.name, int(row["line"])):
            clips.append(clip)
    return Found(clips, excluded, frame_rate=30.0)


def _without_glob(folder: str) -> Path:
    """``<name>/1/*.png`` -> ``<name>/1``: the folder an annotation's frame pattern names."""
    parts = Path(folder).parts
    return Path(*[p for p in parts if "*" not in p])
