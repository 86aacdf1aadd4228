"""Corpora as they are distributed, one command away: ``signlab corpus prepare NAME ROOT --out DIR``.

Each importer reads its corpus's own layout (:data:`CORPORA`) and :func:`signlab.corpora.core.prepare`
makes features and a signlab manifest of it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from signlab.corpora.core import Found, PrepareOptions, prepare
from signlab.corpora.frames import csl_daily, phoenix_2014, phoenix_2014_t
from signlab.corpora.kaggle import asl_fingerspelling, asl_signs
from signlab.corpora.videos import how2sign, how2sign_openpose, slt, wlasl
from signlab.errors import SignlabError

CORPORA: dict[str, Callable[..., Found]] = {
    "phoenix-2014": phoenix_2014,
    "phoenix-2014-t": phoenix_2014_t,
    "csl-daily": csl_daily,
    "how2sign": how2sign,
    "how2sign-openpose": how2sign_openpose,
    "wlasl": wlasl,
    "asl-signs": asl_signs,
    "asl-fingerspelling": asl_fingerspelling,
    "slt": slt,
}

__all__ = ["CORPORA", "PrepareOptions", "find", "prepare"]


def find(name: str, root: str | Path, subset: int | None = None) -> Found:
    """What the importer ``name`` finds under ``root``."""
    if name not in CORPORA:
        raise SignlabError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    if subset is not None and name != "wlasl":
        raise SignlabError(f"--subset picks one of WLASL's nslt splits; {name} has none")
    return CORPORA[name](Path(root), subset) if name == "wlasl" else CORPORA[name](Path(root))
