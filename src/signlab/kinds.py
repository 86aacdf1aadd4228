"""Feature kinds: what the columns of a feature file are, said once and carried along.

A manifest row may name its kind (column ``feature_kind``; ``signlab extract`` writes it), a
config may (``data.feature_kind``), and a trained bundle always does, so normalisation,
augmentation, motion measures and extraction at inference follow what the features *are*, not how
wide they are. Known kinds:

================== ===== ======================================================================
kind               dim   what follows from it
================== ===== ======================================================================
pose/holistic-540  540   MediaPipe Holistic in :mod:`signlab.pose`'s layout: body-relative
                         normalisation, missing landmarks kept at zero, pose augmentation, hand
                         motion, ``extract pose`` on videos, 4x subsampling by default
i3d-1024           1024  I3D window features: feature augmentation, ``extract i3d`` on videos
================== ===== ======================================================================

Any other name (``custom-540``, ``openpose-274``...) is plain features of the width the data
has: standardised, feature-augmented, never extracted from video by signlab. A known kind whose
width contradicts the data is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from signlab.errors import SignlabError


@dataclass(frozen=True)
class FeatureKind:
    name: str
    dim: int
    pose: bool = False  # the Holistic layout of signlab.pose
    extractor: str | None = None  # the `signlab extract` job that makes these from video


HOLISTIC = FeatureKind("pose/holistic-540", 540, pose=True, extractor="pose")
I3D = FeatureKind("i3d-1024", 1024, extractor="i3d")
KNOWN = {k.name: k for k in (HOLISTIC, I3D)}
AUTO = "auto"  # config value: take the kind from the manifest, else from the width (logged)


def plain(dim: int) -> FeatureKind:
    return FeatureKind(f"custom-{dim}", dim)


def feature_kind(name: str, dim: int, where: str = "the features") -> FeatureKind:
    """The kind called ``name`` for ``dim``-wide features: a known kind (whose width must be
    ``dim``), or plain features under that name."""
    kind = KNOWN.get(name)
    if kind is None:
        return FeatureKind(name, dim)
    if kind.dim != dim:
        raise SignlabError(f"{where} are declared {name}, which has {kind.dim} values a frame, but they have {dim}: "
                           f"fix the declaration (e.g. feature_kind custom-{dim} for plain features)")
    return kind


def guessed(dim: int) -> FeatureKind:
    """The kind features of this width usually are, for data that does not say."""
    return next((k for k in KNOWN.values() if k.dim == dim), None) or plain(dim)


def config_kind(cfg) -> FeatureKind:
    """The kind a resolved config (a trained bundle's, or one training has filled in) reads:
    ``data.feature_kind`` at ``model.input_dim`` values a frame; ``auto`` (a bundle written before
    kinds were declared) reads as the width's usual kind."""
    name, dim = cfg.data.feature_kind, cfg.model.input_dim
    return guessed(dim) if name == AUTO else feature_kind(name, dim)
