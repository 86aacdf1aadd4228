"""Pose-level augmentations for the 540-dim holistic layout, in body-relative coordinates.

Only x, y, z move; visibility values never change, and undetected parts stay all-zero so their
mask survives. Nothing mirrors the signer unless :class:`Mirror` is asked for, and then the
left and right hands (and every left / right landmark) swap as well.
"""

from __future__ import annotations

import numpy as np

from signlab import pose
from signlab.config import PoseAugmentConfig
from signlab.data.augment.base import Augmentation, Compose
from signlab.data.augment.temporal import FrameDropout, FrameShift, TimeWarp

LEFT_HAND = pose.HAND_POINT_SLICES["left_hand"]
RIGHT_HAND = pose.HAND_POINT_SLICES["right_hand"]
FACE = slice(pose.POSE_POINTS + 2 * pose.HAND_POINTS, pose.NUM_POINTS)


class PointTransform(Augmentation):
    """Moves the detected points of every frame with one draw per clip."""

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pts = pose.points(x)
        detected = pose.point_mask(x)[..., None]
        moved = self.move(pts, rng)
        return pose.with_points(x, np.where(detected, moved, 0).astype(x.dtype))

    def move(self, pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


def _depth_anchors(pts: np.ndarray) -> np.ndarray:
    """(T, 169) z offset that turns MediaPipe's relative depths into one frame's depths:
    hand z is relative to its wrist (pose 15 / 16), face z to the head (pose nose)."""
    offset = np.zeros(pts.shape[:2], pts.dtype)
    offset[:, LEFT_HAND] = pts[:, pose.LEFT_WRIST, 2:3]
    offset[:, RIGHT_HAND] = pts[:, pose.RIGHT_WRIST, 2:3]
    offset[:, FACE] = pts[:, pose.NOSE, 2:3]
    return offset


class RandomRotation3D(PointTransform):
    """Rotate the body about the shoulders' midpoint by up to ``degrees`` around each axis."""

    def __init__(self, degrees: float | tuple[float, float, float] = 10.0, p: float = 0.5):
        self.degrees, self.p = degrees, p

    def move(self, pts, rng):
        limits = np.radians(np.broadcast_to(self.degrees, 3))
        return rotate(pts, *rng.uniform(-limits, limits))


def rotate(pts: np.ndarray, ax: float, ay: float, az: float) -> np.ndarray:
    """(T, 169, 3) body-relative points turned by ``ax``, ``ay``, ``az`` radians about the x, y
    and z axes through the origin (the shoulders' midpoint), depths made absolute first so that
    hands and face turn with the body and keep their shape."""
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rot = (rz @ ry @ rx).astype(pts.dtype)
    absolute = pts.copy()
    absolute[..., 2] += _depth_anchors(pts)
    turned = absolute @ rot.T
    turned[..., 2] -= _depth_anchors(turned)  # back to MediaPipe's relative depths
    return turned


class RandomPoseScale(PointTransform):
    """Scale the whole body by a factor in [1 - max_scale, 1 + max_scale]."""

    def __init__(self, max_scale: float = 0.1, p: float = 0.5):
        self.max_scale, self.p = max_scale, p

    def move(self, pts, rng):
        return pts * np.float32(rng.uniform(1 - self.max_scale, 1 + self.max_scale))


class RandomShear(PointTransform):
    """Shear in the image plane: x += a * y, y += b * x with |a|, |b| <= max_shear."""

    def __init__(self, max_shear: float = 0.1, p: float = 0.5):
        self.max_shear, self.p = max_shear, p

    def move(self, pts, rng):
        a, b = rng.uniform(-self.max_shear, self.max_shear, 2)
        out = pts.copy()
        out[..., 0] = pts[..., 0] + a * pts[..., 1]
        out[..., 1] = pts[..., 1] + b * pts[..., 0]
        return out


class RandomTranslation(PointTransform):
    """Shift in the image plane by up to ``max_shift`` shoulder widths."""

    def __init__(self, max_shift: float = 0.05, p: float = 0.5):
        self.max_shift, self.p = max_shift, p

    def move(self, pts, rng):
        shift = np.zeros(3, pts.dtype)
        shift[:2] = rng.uniform(-self.max_shift, self.max_shift, 2)
        return pts + shift


class PoseNoise(PointTransform):
    """Independent Gaussian jitter on every detected coordinate (landmark noise)."""

    def __init__(self, sigma: float = 0.01, p: float = 0.5):
        self.sigma, self.p = sigma, p

    def move(self, pts, rng):
        return pts + rng.normal(0, self.sigma, pts.shape).astype(pts.dtype)


class HandDropout(Augmentation):
    """A missed hand detection: one hand all-zero for a run of up to ``max_frames`` frames."""

    def __init__(self, max_frames: int = 8, p: float = 0.3):
        self.max_frames, self.p = max_frames, p

    def apply(self, x, rng):
        part = pose.PART_SLICES["left_hand" if rng.random() < 0.5 else "right_hand"]
        n = int(rng.integers(1, max(1, min(self.max_frames, len(x))) + 1))
        start = int(rng.integers(0, len(x) - n + 1))
        out = x.copy()
        out[start : start + n, part] = 0
        return out


class Mirror(Augmentation):
    """Left-right mirror image: x -> -x, and every left / right landmark (hands included) swaps.

    Off unless asked for: it turns a right-handed signer into a left-handed one.
    """

    def __init__(self, p: float = 0.5):
        self.p = p

    def apply(self, x, rng):
        pts = pose.points(x)[:, pose.POINT_MIRROR]
        pts[..., 0] *= -1
        out = pose.with_points(x, pts)
        out[:, pose.VISIBILITY_COLUMNS] = x[:, pose.VISIBILITY_COLUMNS[pose.POSE_MIRROR]]
        return out  # a missing part's zeros become -0.0, which still reads as undetected


def _present(x: np.ndarray) -> np.ndarray:
    return pose.value_mask(x)


class PoseAugmentation(Compose):
    """The pose recipe (after the SignTalk seed's CELL 5): any field of
    :class:`~signlab.config.PoseAugmentConfig` as a keyword, 0 turning a transform off."""

    def __init__(self, **options):
        c = PoseAugmentConfig(**options)
        p = c.p
        recipe = [  # (strength, transform), in the order they run; 0 / False = off
            (c.time_warp, lambda v: TimeWarp(v, p=p, present=_present)), (c.frame_dropout, lambda v: FrameDropout(v, p=p)),
            (c.temporal_shift, lambda v: FrameShift(v, p=p)), (c.rotation, lambda v: RandomRotation3D(v, p=p)),
            (c.scale, lambda v: RandomPoseScale(v, p=p)), (c.shear, lambda v: RandomShear(v, p=p)),
            (c.translation, lambda v: RandomTranslation(v, p=p)), (c.noise, lambda v: PoseNoise(v, p=p)),
            (c.hand_dropout, lambda v: HandDropout(v, p=p)), (c.mirror, lambda v: Mirror(p=0.5)),
        ]
        steps: list[Augmentation] = [make(v) for v, make in recipe if np.any(v)]
        super().__init__(steps)
