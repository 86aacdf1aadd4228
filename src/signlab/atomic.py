"""Files written whole or not at all (a temporary file beside the target, renamed over it), and
read back with one clear error whatever is wrong inside them."""

from __future__ import annotations

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
    """Open ``.NAME.partial`` beside ``path`` for binary writing; when the block ends, flush it
    to disk and rename it over ``path``. If the block raises, the partial file is removed and
    ``path`` keeps what it held before (a crash leaves at most a ``.partial`` file). The file
    gets the usual permissions (0666 less the umask), so a service running as another user can
    read a bundle."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
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


def load_npz(path: str | Path, names: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """The arrays ``names`` of ``path`` (no pickles); a missing, truncated or foreign file is a
    SignlabError that names it and ``what`` it should hold."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with z:
            missing = [n for n in names if n not in z.files]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)} (has {', '.join(z.files) or 'nothing'})")
            return {n: z[n] for n in names}
    except _NPZ_ERRORS as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SignlabError(f"{path} is not a readable {what} ({reason}): rebuild it, or copy it again") from None


def load_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise SignlabError(f"{path} is not a readable {what} ({reason}): rebuild it, or copy it again") from None
