"""Batch-level sample mixing: MixUp and CutMix over time, with the loss weight each needs.

A mixed batch keeps every sample's own targets and adds a partner's: the loss is
``lam * L(targets) + (1 - lam) * L(partner targets)``. The mixed clip is as long as the longer
of the two, so both target sequences stay feasible for CTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Mixed:
    features: Tensor  # (B, T, D)
    lengths: Tensor  # (B,)
    partner: Tensor  # (B,) index of each sample's partner in the batch
    lam: float  # weight of the sample's own targets


@dataclass
class BatchMix:
    mixup: float = 0.0  # probability that a batch is mixed with MixUp
    cutmix: float = 0.0  # probability that it is mixed with CutMix over time (if not MixUp)
    alpha: float = 0.2  # lam ~ Beta(alpha, alpha), folded to >= 0.5 so the own targets dominate

    def __call__(self, features: Tensor, lengths: Tensor, rng: np.random.Generator) -> Mixed | None:
        u = rng.random()
        if u >= self.mixup + self.cutmix or len(lengths) < 2:
            return None
        lam = float(rng.beta(self.alpha, self.alpha))
        lam = max(lam, 1 - lam)
        partner = torch.from_numpy(rng.permutation(len(lengths))).to(lengths.device)
        mixed_len = torch.maximum(lengths, lengths[partner])
        if u < self.mixup:
            out = lam * features + (1 - lam) * features[partner]
        else:  # CutMix over time: a stretch of the partner replaces the same stretch of the clip
            t = features.size(1)
            width = max(1, int(round((1 - lam) * t)))
            start = int(rng.integers(0, t - width + 1))
            out = features.clone()
            out[:, start : start + width] = features[partner, start : start + width]
            lam = 1 - width / t
        return Mixed(out, mixed_len, partner, lam)
