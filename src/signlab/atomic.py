"""Files written whole or not at all (a temporary file beside the target, renamed over it), and
read back with one clear error whatever is wrong inside them."""

from __future__ import annotations

import codecs
import json
import os
import pickle
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from signlab.errors import SignlabError


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open ``.NAME.PID.partial`` beside ``path`` for binary writing; when the block ends, flush it
    to disk and rename it over ``path``. If the block raises, the partial file is removed and
    ``path`` keeps what it held before (a crash leaves at most a ``.partial`` file). Processes that
    write the same file at once (ranks of one run) each rename a whole file of their own. The file
    gets the usual permissions (0666 less the umask), so a service running as another user can
    read a bundle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with tmp.open("wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, array)


def save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.savez(f, **arrays)


# what a damaged .npy / .npz can raise from inside NumPy and zipfile
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)


def load_npz(path: str | Path, names: Sequence[str], what: str, optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays ``names`` of ``path`` (no pickles), and those of ``optional`` it has; a missing,
    truncated or foreign file is a SignlabError that names it and ``what`` it should hold."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with z:
            missing = [n for n in names if n not in z.files]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)} (has {', '.join(z.files) or 'nothing'})")
            return {n: z[n] for n in [*names, *(o for o in optional if o in z.files)]}
    except _NPZ_ERRORS as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SignlabError(f"{path} is not a readable {what} ({reason}): rebuild it, or copy it again") from None


def load_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    try:
        return json.loads(decode_utf8(path.read_bytes(), path, what))
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SignlabError(f"{path} is not a readable {what} ({reason}): rebuild it, or copy it again") from None


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file (a BOM is allowed); a folder, a missing file or another encoding is a
    SignlabError that says so."""
    if path.is_dir():
        raise SignlabError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise SignlabError(f"{what} {path} not found")
    return decode_utf8(path.read_bytes(), path, what)


def decode_utf8(data: bytes, path: Path, what: str) -> str:
    """``data`` (the bytes of ``path``) as text; UTF-16 or Latin-1 is an error naming the line."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise SignlabError(f"{what} {path} is UTF-16 text: save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SignlabError(f"{what} {path}, line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 (Latin-1 or "
                           "Windows-1252?): save the file as UTF-8 (e.g. iconv -f LATIN1 -t UTF-8)") from None
