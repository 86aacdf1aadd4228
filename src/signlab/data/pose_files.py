"""``.pose`` files (the sign-language-processing ecosystem's format) to and from signlab's layout.

Reading takes MediaPipe Holistic files as pose-format writes them (components POSE_LANDMARKS,
FACE_LANDMARKS, LEFT_HAND_LANDMARKS, RIGHT_HAND_LANDMARKS; x, y in pixels, z as MediaPipe gives
it) and matches landmarks by name, so reduced files (fewer body or face points) load too: a
landmark a file does not have, or a masked one, is zero. x and y are divided by the header's
width and height, giving MediaPipe's normalised coordinates like the extractor's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from signlab import pose
from signlab.atomic import atomic_write
from signlab.errors import SignlabError

BODY_NAMES = (
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE", "RIGHT_EYE_OUTER",
    "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW",
    "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY", "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX",
    "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP", "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE",
    "LEFT_HEEL", "RIGHT_HEEL", "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX",
)  # MediaPipe's PoseLandmark order


def read_pose_file(path: str | Path) -> np.ndarray:
    """A Holistic ``.pose`` file as (T, 540) float32 (first person only)."""
    from pose_format import Pose

    path = Path(path)
    try:
        p = Pose.read(path.read_bytes())
    except Exception as exc:  # pose-format raises assorted errors on a bad buffer
        raise SignlabError(f"{path} is not a readable .pose file ({exc})") from exc
    components = {c.name: c for c in p.header.components}
    if "POSE_LANDMARKS" not in components:
        raise SignlabError(f"{path} has components {sorted(components)}; signlab reads MediaPipe Holistic .pose files "
                           "(POSE_LANDMARKS, FACE_LANDMARKS, LEFT_HAND_LANDMARKS, RIGHT_HAND_LANDMARKS)")
    data = np.ma.filled(np.ma.asarray(p.body.data)[:, 0].astype(np.float32), 0.0)  # (T, points, dims)
    conf = np.asarray(np.ma.filled(p.body.confidence, 0.0))[:, 0].astype(np.float32)
    scale = np.array([p.header.dimensions.width or 1, p.header.dimensions.height or 1, 1], np.float32)
    t = len(data)
    out = np.zeros((t, pose.POSE_FEATURE_DIM), np.float32)
    wanted = {
        "POSE_LANDMARKS": (BODY_NAMES, pose.PART_SLICES["pose"], True),
        "LEFT_HAND_LANDMARKS": (None, pose.PART_SLICES["left_hand"], False),
        "RIGHT_HAND_LANDMARKS": (None, pose.PART_SLICES["right_hand"], False),
        "FACE_LANDMARKS": (tuple(str(i) for i in pose.FACE_INDICES), pose.PART_SLICES["face"], False),
    }
    offset = 0
    for comp in p.header.components:
        n = len(comp.points)
        if comp.name in wanted:
            names, part, visibility = wanted[comp.name]
            xyz = data[:, offset : offset + n, :3] / scale
            present = conf[:, offset : offset + n] > 0
            xyz *= present[..., None]
            cols = 4 if visibility else 3
            block = np.zeros((t, part.stop - part.start), np.float32).reshape(t, -1, cols)
            index = {name: i for i, name in enumerate(comp.points)} if names else None
            for slot in range(block.shape[1]):
                src = index.get(names[slot]) if names else (slot if slot < n else None)
                if src is not None:
                    block[:, slot, :3] = xyz[:, src]
                    if visibility:
                        block[:, slot, 3] = conf[:, offset + src] * present[:, src]
            out[:, part] = block.reshape(t, -1)
        offset += n
    return out


def write_pose_file(path: str | Path, landmarks, fps: float, width: int, height: int) -> None:
    """Write :class:`~signlab.extract.holistic.HolisticLandmarks` as pose-format's Holistic layout
    (atomically)."""
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
    from pose_format.utils.holistic import holistic_components

    scale = np.array([width, height, 1], np.float32)
    parts = [landmarks.body[..., :3] * scale, landmarks.face * scale, landmarks.left_hand * scale,
             landmarks.right_hand * scale, landmarks.world[..., :3]]
    confidence = [landmarks.body[..., 3]] + [np.any(x != 0, axis=-1).astype(np.float32) for x in parts[1:4]]
    confidence.append(landmarks.world[..., 3])
    data = np.concatenate(parts, axis=1)[:, None]
    conf = np.concatenate(confidence, axis=1)[:, None]
    masked = np.ma.masked_array(data, mask=np.repeat(conf[..., None] == 0, 3, axis=-1))
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=1000),
                        components=holistic_components("XYZC"))
    with atomic_write(path) as f:
        Pose(header, NumPyPoseBody(fps=fps, data=masked, confidence=conf)).write(f)
