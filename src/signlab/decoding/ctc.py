"""CTC decoding."""

from __future__ import annotations

import torch
from torch import Tensor

from signlab.vocab import BLANK


def ctc_greedy_decode(logits: Tensor, lengths: Tensor) -> list[list[int]]:
    """Best label per frame, repeats merged, blanks removed; (B, T, V) -> B id lists.

    Vectorised over the batch: only the final split into per-sample lists is Python.
    """
    best = logits.argmax(-1)  # (B, T)
    valid = torch.arange(best.size(1), device=best.device)[None] < lengths[:, None]
    new = torch.ones_like(best, dtype=torch.bool)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = new & (best != BLANK) & valid
    counts = keep.sum(1).tolist()
    return [ids.tolist() for ids in best[keep].split(counts)]
