"""Feature-level augmentations for pre-extracted (T, D) features such as I3D's."""

from __future__ import annotations

from signlab.config import FeatureAugmentConfig
from signlab.data.augment.base import Augmentation, Compose
from signlab.data.augment.temporal import TemporalMask


class FeatureDropout(Augmentation):
    """Zero a random ``rate`` of the feature dimensions for the whole clip, rescaling the rest."""

    def __init__(self, rate: float = 0.1, p: float = 0.5):
        self.rate, self.p = rate, p

    def apply(self, x, rng):
        keep = (rng.random(x.shape[-1]) >= self.rate).astype(x.dtype) / x.dtype.type(1 - self.rate)
        return x * keep


class FeatureNoise(Augmentation):
    def __init__(self, std: float = 0.05, p: float = 0.3):
        self.std, self.p = std, p

    def apply(self, x, rng):
        return x + rng.normal(0, self.std, x.shape).astype(x.dtype)  # float32 in, float32 out


class TemporalFeatureMask(TemporalMask):
    """Zero segments of frames; see :class:`TemporalMask`."""

    def __init__(self, num_masks: int = 1, max_len: int = 3, p: float = 0.3):
        super().__init__(num_masks, max_len, p)


class FeatureAugmentation(Compose):
    """The ASL seed's feature recipe (``mode='train'``; nothing otherwise): any field of
    :class:`~signlab.config.FeatureAugmentConfig` as a keyword, 0 turning a transform off."""

    def __init__(self, mode: str = "train", **options):
        c = FeatureAugmentConfig(**options)
        steps: list[Augmentation] = []
        if mode == "train":
            if c.dropout:
                steps.append(FeatureDropout(c.dropout, p=0.5))
            if c.noise:
                steps.append(FeatureNoise(c.noise, p=c.p))
            if c.temporal_mask:
                steps.append(TemporalFeatureMask(1, c.temporal_mask, p=c.p))
        super().__init__(steps)
