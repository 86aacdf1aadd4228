"""What every augmentation shares: a probability, a seeded generator, composition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Augmentation:
    """A random transform applied with probability ``p``.

    ``aug(x, rng)`` returns a new array (never modifies ``x``) of the same dtype, value range and
    layout; all randomness comes from ``rng``, a :class:`numpy.random.Generator`, so the same
    seed gives the same output.
    """

    p: float = 1.0

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return x
        return self.apply(x, rng)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Compose(Augmentation):
    """Apply each transform in turn (each with its own probability)."""

    def __init__(self, transforms: Sequence[Augmentation]):
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __len__(self) -> int:
        return len(self.transforms)
