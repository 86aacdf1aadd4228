"""Files written whole or not at all: a temporary file beside the target, renamed over it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open ``.NAME.partial`` beside ``path`` for binary writing; when the block ends, flush it
    to disk and rename it over ``path``. If the block raises, the partial file is removed and
    ``path`` keeps what it held before (a crash leaves at most a ``.partial`` file)."""
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


def save_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.save(f, array)
