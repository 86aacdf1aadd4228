"""Manifests: which clip is which, where its features are, and what was signed.

Two formats are read as they are:

* signlab's CSV (header row; columns ``id, split, features`` plus ``glosses`` for recognition,
  ``text`` (or ``sentence``) for translation, ``signer``, ``sentence_id``; extra columns are
  kept). ``features`` (or ``feature_path``, the SignTalk seed's name, which ``signlab extract``
  writes) is relative to the manifest's folder.
* the PHOENIX-2014-T corpus files (``name|video|start|end|speaker|orth|translation``), whose
  split comes from the file name (``...train.corpus.csv``) and whose features are looked up as
  ``FEATURES_DIR/<name>.npy`` (FEATURES_DIR defaults to the corpus file's folder).

A packed store (:mod:`signlab.data.shards`: a folder with ``index.json``) is read wherever a
manifest is: its rows point into its shards (:attr:`Sample.span`).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from signlab.atomic import read_text_file
from signlab.data import shards
from signlab.errors import SignlabError

SPLITS = ("train", "dev", "test")
PHOENIX_HEADER = ["name", "video", "start", "end", "speaker", "orth", "translation"]
PACKED_COLUMNS = ("first", "frames", "motion")  # a store's clips.csv: where each clip is in its shard
_CORE_COLUMNS = {"id", "split", "features", "feature_path", "feature_kind", "glosses", "text", "signer"}


@dataclass(slots=True)
class Sample:
    """One manifest row. Treat it as read-only: it is not frozen only because a frozen dataclass
    sets each field through ``object.__setattr__``, a cost paid per row at start-up on a large store."""

    id: str
    split: str
    features: Path
    glosses: tuple[str, ...] = ()
    text: str = ""
    signer: str = ""
    kind: str = ""  # the feature kind the row declares (signlab.kinds), "" when it does not
    source: str = ""  # manifest file name
    row: int = 0  # line number in that file (the header is line 1)
    span: tuple[int, int] | None = None  # packed clips: (first row, frames) in the shard ``features`` names
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.row} (id {self.id})"


def read_manifests(paths: Iterable[str | Path], features_dir: str | Path | None = None) -> list[Sample]:
    """Read and concatenate manifests; ids must be unique across all of them."""
    samples = [s for p in paths for s in read_manifest(p, features_dir)]
    ids = [s.id for s in samples]
    if len(set(ids)) < len(ids):
        dupes = [i for i, c in Counter(ids).items() if c > 1]
        first = next(s for s in samples if s.id == dupes[0])
        raise SignlabError(
            f"{len(dupes)} ids appear more than once (e.g. {dupes[0]!r} at {first.where}); "
            "make the id column unique"
        )
    return samples


def read_manifest(path: str | Path, features_dir: str | Path | None = None) -> list[Sample]:
    """One manifest's rows: signlab's CSV, a PHOENIX corpus file, or a packed store (its folder or
    its ``index.json``)."""
    path = Path(path)
    if shards.is_store(path):
        return _read_store(path)
    text = read_text_file(path, "manifest")
    first = text.partition("\n")[0].strip()
    if first.split("|") == PHOENIX_HEADER:
        return _read_phoenix(path, text, Path(features_dir) if features_dir else path.parent)
    return _read_csv(path, text, Path(features_dir) if features_dir else path.parent)


def _read_store(path: Path) -> list[Sample]:
    """The rows of the store at ``path`` (its folder or its ``index.json``), each with its span,
    checked against the shards."""
    root = path if path.is_dir() else path.parent
    info = shards.open_store(root)
    samples = _read_csv(root / shards.CLIPS, read_text_file(root / shards.CLIPS, "store clip list"), root, packed=True)
    shards.check_spans(root, info, samples)
    return samples


def _read_csv(path: Path, text: str, base: Path, packed: bool = False) -> list[Sample]:
    try:
        return _parse_csv(path, text, base, packed)
    except csv.Error as exc:
        raise SignlabError(f"manifest {path} is not valid CSV ({exc}): check its quoting") from None


def _parse_csv(path: Path, text: str, base: Path, packed: bool) -> list[Sample]:
    """The rows of a signlab CSV (a store's clip list when ``packed``). Columns are looked up once,
    by position (a row read as a dict costs more than the rest of its parsing); blank lines are
    skipped, missing trailing cells are empty, as ``csv.DictReader`` reads them."""
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise SignlabError(f"manifest {path} is empty: it needs a header row with id,split,features,...")
        at = {name: i for i, name in enumerate(header)}  # a repeated column: the last one, as DictReader
        feature_column = "feature_path" if "feature_path" in at and "features" not in at else "features"
        missing = {"id", "split", feature_column, *(PACKED_COLUMNS if packed else ())} - set(at)
        if missing:
            raise SignlabError(
                f"manifest {path} lacks the column(s) {sorted(missing)}; its header is "
                f"{header}. See README 'Data formats'."
            )
        width, core = len(header), _CORE_COLUMNS | ({"first", "frames"} if packed else set())
        extra_columns = [(name, i) for name, i in at.items() if name not in core]
        # positions of the core columns; width = an always-empty cell for a column the manifest lacks
        id_, split_, feat, gl, text_, sentence, signer, kind, first, frames = (at.get(c, width) for c in (
            "id", "split", feature_column, "glosses", "text", "sentence", "signer", "feature_kind", "first", "frames"))
        samples, bad_split, shard_paths = [], [], {}  # a store's rows share a few shard paths
        line = 1
        for row in reader:
            if not row:
                continue
            line += 1
            row = row[:width]  # cells past the header are not read, as DictReader leaves them out
            row += [""] * (width + 1 - len(row))  # missing cells, and the empty one at ``width``
            split = row[split_].strip().lower()
            if split not in SPLITS:
                bad_split.append(f"line {line}: {row[split_]!r}")
                continue
            span = None
            if packed:
                try:
                    span = int(row[first]), int(row[frames])
                except ValueError:
                    raise SignlabError(f"{path}, line {line}: first and frames must be whole numbers; the store's "
                                       "index is damaged: pack it again") from None
                features = shard_paths.get(row[feat]) or shard_paths.setdefault(row[feat], base / row[feat])
            else:
                features = base / row[feat].strip()
            samples.append(Sample(
                row[id_].strip() or f"line{line}", split, features, tuple(row[gl].split()),
                (row[text_] or row[sentence]).strip(), row[signer].strip(), row[kind].strip(), path.name, line, span,
                {name: row[i] for name, i in extra_columns},
            ))
    if bad_split:
        raise SignlabError(
            f"manifest {path}: split must be one of {SPLITS}; found {', '.join(bad_split[:5])}"
            + (f" and {len(bad_split) - 5} more" if len(bad_split) > 5 else "")
        )
    return samples


def _read_phoenix(path: Path, text: str, features_dir: Path) -> list[Sample]:
    split = next((s for s in SPLITS if f".{s}." in path.name), None)
    if split is None:
        raise SignlabError(
            f"cannot tell the split of PHOENIX corpus file {path.name}: its name should contain "
            "'.train.', '.dev.' or '.test.' as in the corpus release"
        )
    samples = []
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f, delimiter="|", quoting=csv.QUOTE_NONE)
        for line, row in enumerate(reader, start=2):
            name = (row["name"] or "").strip()
            if not name or row["orth"] is None:
                raise SignlabError(f"PHOENIX corpus file {path}, line {line}: expected {len(PHOENIX_HEADER)} "
                                   f"'|'-separated fields ({'|'.join(PHOENIX_HEADER)})")
            samples.append(
                Sample(
                    id=name,
                    split=split,
                    features=features_dir / f"{name}.npy",
                    glosses=tuple((row["orth"] or "").split()),
                    text=(row["translation"] or "").strip(),
                    signer=row["speaker"] or "",
                    source=path.name,
                    row=line,
                    extra={"video": row["video"] or ""},
                )
            )
    return samples
