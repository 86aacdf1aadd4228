"""MediaPipe Holistic landmarks (mediapipe 0.10.21, the legacy solution whose models ship in the
wheel, so it runs offline) to signlab's 540-dim pose layout, with per-video statistics.

A new Holistic graph is made for every video: it tracks landmarks from frame to frame, and a
previous video's last frame must not seed the next one's tracking.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from signlab import pose
from signlab.errors import SignlabError

log = logging.getLogger(__name__)


@dataclass
class HolisticLandmarks:
    """What Holistic found in each frame, in MediaPipe's normalised image coordinates."""

    body: np.ndarray  # (T, 33, 4) x, y, z, visibility
    face: np.ndarray  # (T, 468, 3)
    left_hand: np.ndarray  # (T, 21, 3)
    right_hand: np.ndarray  # (T, 21, 3)
    world: np.ndarray  # (T, 33, 4) body in metres, visibility

    def features(self) -> np.ndarray:
        """(T, 540) float32 in the layout of :mod:`signlab.pose`; missing parts are zeros."""
        t = len(self.body)
        return np.concatenate([
            self.body.reshape(t, -1), self.left_hand.reshape(t, -1), self.right_hand.reshape(t, -1),
            self.face[:, pose.FACE_INDICES].reshape(t, -1),
        ], axis=1).astype(np.float32)


def _landmarks(found, n: int, with_visibility: bool = False) -> np.ndarray:
    width = 4 if with_visibility else 3
    if found is None:
        return np.zeros((n, width), np.float32)
    if with_visibility:
        return np.array([(p.x, p.y, p.z, p.visibility) for p in found.landmark], np.float32)
    return np.array([(p.x, p.y, p.z) for p in found.landmark], np.float32)


class HolisticExtractor:
    """Runs MediaPipe Holistic over a clip's frames (RGB uint8)."""

    def __init__(self, model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5):
        try:
            from mediapipe.python.solutions import holistic
        except ImportError as exc:
            raise SignlabError("pose extraction needs MediaPipe: pip install 'signlab[pose]' (mediapipe==0.10.21)") from exc
        self._holistic = holistic
        self.options = dict(static_image_mode=False, model_complexity=model_complexity,
                            min_detection_confidence=min_detection_confidence,
                            min_tracking_confidence=min_tracking_confidence)

    def landmarks(self, frames: Iterable[np.ndarray]) -> HolisticLandmarks:
        rows = list(self.stream(frames))
        if not rows:
            raise SignlabError("no frames to run MediaPipe Holistic on")
        return HolisticLandmarks(*(np.stack(parts) for parts in zip(*rows)))

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, ...]]:
        """What Holistic finds in each frame as it comes (body, face, hands, world body), one
        graph tracking from frame to frame; live recognition reads it this way."""
        # the graph's threads print start-up chatter whenever they get to it: hold fd 2 while it lives
        with native_stderr_filtered(), self._holistic.Holistic(**self.options) as graph:
            for frame in frames:
                r = graph.process(frame)
                yield (_landmarks(r.pose_landmarks, 33, True), _landmarks(r.face_landmarks, 468)[:468],
                       _landmarks(r.left_hand_landmarks, 21), _landmarks(r.right_hand_landmarks, 21),
                       _landmarks(r.pose_world_landmarks, 33, True))


def feature_row(found: tuple[np.ndarray, ...]) -> np.ndarray:
    """One frame's landmarks (an item of :meth:`HolisticExtractor.stream`) as a (540,) row of
    :mod:`signlab.pose`'s layout."""
    return HolisticLandmarks(*(part[None] for part in found)).features()[0]


# what MediaPipe's C++ side prints whenever a graph starts: XNNPACK, absl and TFLite chatter
_NATIVE_NOISE = ("INFO: ", "WARNING: All log messages before absl::InitializeLog()", "W0000 ", "I0000 ")


@contextmanager
def native_stderr_filtered():
    """Hold what is written to file descriptor 2 inside the block (native code writes there
    directly, out of ``logging``'s reach); afterwards MediaPipe's start-up chatter goes to the debug
    log and every other line (a real error, a Python warning) is written back unchanged."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = []
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if line.startswith(_NATIVE_NOISE):
                    log.debug("MediaPipe: %s", line.rstrip())
                else:
                    kept.append(line)
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def clip_statistics(features: np.ndarray) -> dict[str, float]:
    """Per-video numbers the SignTalk seed filters and reports on (from the 540-dim features).

    Motion is measured in body units (shoulder widths per frame), so it does not depend on how
    far the signer stands from the camera.
    """
    parts = pose.part_mask(features)
    body = pose.normalize_body(features)
    motion = pose.motion_energy(features if body is None else body)
    vis = features[:, pose.VISIBILITY_COLUMNS][parts[:, 0]]
    return {
        "num_frames": len(features),
        "motion_mean": float(motion.mean()) if len(motion) else 0.0,
        "motion_p95": float(np.percentile(motion, 95)) if len(motion) else 0.0,
        "mean_visibility": float(vis.mean()) if vis.size else 0.0,
        "pose_rate": float(parts[:, 0].mean()),
        "left_hand_rate": float(parts[:, 1].mean()),
        "right_hand_rate": float(parts[:, 2].mean()),
        "face_rate": float(parts[:, 3].mean()),
    }
