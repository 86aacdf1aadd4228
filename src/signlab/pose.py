"""The 540-dim holistic pose layout, part masks and body-relative normalisation.

One frame is ``[pose 33 x (x, y, z, visibility) | left hand 21 x (x, y, z) | right hand 21 x
(x, y, z) | face 94 x (x, y, z)]`` = 132 + 63 + 63 + 282 = 540 values, in MediaPipe Holistic's
conventions (x, y in image units, y pointing down; "left" is the signer's left). A part that was
not detected in a frame is all zeros; so is a single landmark a source does not have (reduced
``.pose`` files). A landmark counts as present when any of its x, y, z is non-zero.

The 94 face points are the ones that carry non-manual signals: lips (40), both eyes (16 + 16),
both eyebrows (10 + 10), the nose tip (1) and the chin (152), taken from MediaPipe's own
``FACEMESH_*`` connection sets (see :data:`FACE_INDICES`).
"""

from __future__ import annotations

import numpy as np

POSE_POINTS, HAND_POINTS, FACE_POINTS = 33, 21, 94
POSE_DIM = POSE_POINTS * 4
HAND_DIM = HAND_POINTS * 3
FACE_DIM = FACE_POINTS * 3
POSE_FEATURE_DIM = POSE_DIM + 2 * HAND_DIM + FACE_DIM  # 540

PARTS = ("pose", "left_hand", "right_hand", "face")
PART_SLICES = {
    "pose": slice(0, POSE_DIM),
    "left_hand": slice(POSE_DIM, POSE_DIM + HAND_DIM),
    "right_hand": slice(POSE_DIM + HAND_DIM, POSE_DIM + 2 * HAND_DIM),
    "face": slice(POSE_DIM + 2 * HAND_DIM, POSE_FEATURE_DIM),
}

# MediaPipe pose landmark ids used by signlab.
NOSE, LEFT_SHOULDER, RIGHT_SHOULDER = 0, 11, 12
LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST = 13, 14, 15, 16

_LIPS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185,
         191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405,
         409, 415)
_LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
_RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
_LEFT_EYEBROW = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
_RIGHT_EYEBROW = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
FACE_INDICES = np.array(_LIPS + _LEFT_EYE + _RIGHT_EYE + _LEFT_EYEBROW + _RIGHT_EYEBROW + (1, 152))
assert len(FACE_INDICES) == FACE_POINTS and len(set(FACE_INDICES.tolist())) == FACE_POINTS


# Left-right mirror partners. POSE_MIRROR: MediaPipe's pose pairs (nose fixed). FACE_MIRROR: the
# partner of each of the 94 face points, by position in FACE_INDICES; derived from MediaPipe's
# contour graphs (lip cycles reflected about their midline points, each eye and eyebrow walked
# from its anchored corner alongside its partner); the tests re-check it against those graphs.
POSE_MIRROR = np.array([0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9] + [i + (1 if i % 2 else -1) for i in range(11, 33)])
FACE_MIRROR = np.array([0, 1, 2, 3, *range(22, 40), *range(4, 22), *range(56, 72), *range(40, 56), *range(82, 92),
                        *range(72, 82), 92, 93])


def _xyz_columns() -> np.ndarray:
    """Column of x, y, z for each of the 169 points."""
    cols = [np.arange(POSE_POINTS)[:, None] * 4 + np.arange(3)]
    for name in PARTS[1:]:
        n = HAND_POINTS if "hand" in name else FACE_POINTS
        cols.append(PART_SLICES[name].start + np.arange(n)[:, None] * 3 + np.arange(3))
    return np.concatenate(cols)


XYZ_COLUMNS = _xyz_columns()  # (169, 3)
VISIBILITY_COLUMNS = np.arange(POSE_POINTS) * 4 + 3
NUM_POINTS = len(XYZ_COLUMNS)
VALUE_POINT = np.zeros(POSE_FEATURE_DIM, dtype=np.int64)  # the landmark each of the 540 values belongs to
VALUE_POINT[XYZ_COLUMNS] = np.arange(NUM_POINTS)[:, None]
VALUE_POINT[VISIBILITY_COLUMNS] = np.arange(POSE_POINTS)
HAND_POINT_SLICES = {
    "left_hand": slice(POSE_POINTS, POSE_POINTS + HAND_POINTS),
    "right_hand": slice(POSE_POINTS + HAND_POINTS, POSE_POINTS + 2 * HAND_POINTS),
}
# point index -> its mirror partner, over all 169 points (pose, hands swapped, face)
POINT_MIRROR = np.concatenate([
    POSE_MIRROR, np.arange(HAND_POINTS) + POSE_POINTS + HAND_POINTS, np.arange(HAND_POINTS) + POSE_POINTS,
    FACE_MIRROR + POSE_POINTS + 2 * HAND_POINTS,
])


def points(frames: np.ndarray) -> np.ndarray:
    """(T, 540) -> (T, 169, 3) coordinates of every landmark (a copy)."""
    return frames[:, XYZ_COLUMNS]


def with_points(frames: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """A copy of ``frames`` whose coordinates are replaced by ``pts`` (visibility untouched)."""
    out = frames.copy()
    out[:, XYZ_COLUMNS] = pts
    return out


def part_mask(frames: np.ndarray) -> np.ndarray:
    """(T, 4) bool: which parts (pose, left hand, right hand, face) were detected in each frame."""
    return np.stack([np.any(frames[:, PART_SLICES[p]] != 0, axis=1) for p in PARTS], axis=1)


def apply_part_mask(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``frames`` with every part that ``mask`` (T, 4) marks as not detected set to zeros."""
    keep = np.ones(frames.shape, bool)
    for p, name in enumerate(PARTS):
        keep[:, PART_SLICES[name]] = mask[:, p : p + 1]
    return np.where(keep, frames, 0).astype(frames.dtype, copy=False)


def point_mask(frames: np.ndarray) -> np.ndarray:
    """(T, 169) bool: the landmark is present (any of its coordinates is non-zero)."""
    return np.any(frames[:, XYZ_COLUMNS] != 0, axis=-1)


def value_mask(frames: np.ndarray) -> np.ndarray:
    """(T, 540) bool: the value's landmark is present (visibility goes with its pose point)."""
    return point_mask(frames)[:, VALUE_POINT]


def shoulder_frame(frames: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Clip-level centre (x, y) between the shoulders and mean shoulder width, or None.

    Averaged over the frames where the body was detected, like pose-format's ``normalize``: a
    per-frame centre would erase the signer's own torso movement.
    """
    present = point_mask(frames)
    detected = present[:, LEFT_SHOULDER] & present[:, RIGHT_SHOULDER]
    if not detected.any():
        return None
    pts = points(frames[detected])
    left, right = pts[:, LEFT_SHOULDER, :2], pts[:, RIGHT_SHOULDER, :2]
    width = float(np.linalg.norm(left - right, axis=1).mean())
    if width < 1e-6:
        return None
    return ((left + right) / 2).mean(axis=0), width


def normalize_body(frames: np.ndarray) -> np.ndarray | None:
    """Body-relative coordinates: origin between the shoulders, unit = shoulder width.

    x and y are centred and scaled, z is scaled only (MediaPipe's z is already relative to the
    hips or the wrist). Visibility and missing landmarks (zeros) are left as they are, so the
    masks survive. Returns None when no frame shows the body's shoulders.
    """
    frame = shoulder_frame(frames)
    if frame is None:
        return None
    centre, width = frame
    pts = points(frames)
    pts[..., :2] -= centre
    pts /= width
    pts *= point_mask(frames)[..., None]  # keep missing landmarks exactly zero
    return with_points(frames, pts).astype(np.float32, copy=False)


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """(T,) L2 norm of the frame-to-frame change of all coordinates (visibility excluded).

    Only landmarks present in both frames count: a hand that appears or vanishes is a detection
    event, not motion. The first frame's energy is 0.
    """
    if len(frames) == 0:
        return np.zeros(0, np.float32)
    coords, present = points(frames), point_mask(frames)
    steady = (present[1:] & present[:-1])[..., None]
    diffs = (coords[1:] - coords[:-1]) * steady
    energy = np.linalg.norm(diffs.reshape(len(diffs), -1), axis=1)
    return np.concatenate([[0.0], energy]).astype(np.float32)


def mean_motion(frames: np.ndarray, pose_layout: bool) -> float:
    """Average motion per frame of a clip, 0 for a single frame: :func:`motion_energy` (body units
    per frame after normalisation) for features in this layout; for other features (I3D), the L2
    norm of the frame-to-frame change of the whole vector, as landmarks cannot be picked out of it."""
    if len(frames) < 2:
        return 0.0
    if pose_layout:
        return float(motion_energy(frames).mean())
    return float(np.linalg.norm(np.diff(frames, axis=0), axis=1).sum() / len(frames))
