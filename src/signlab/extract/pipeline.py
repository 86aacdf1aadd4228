"""One video -> the features a trained model expects, as its bundle's ``extract`` settings say."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signlab.config import ExtractConfig
from signlab.errors import SignlabError
from signlab.extract.i3d import I3D, I3DExtractor, window_times
from signlab.extract.video import VideoOptions, iter_frames, probe
from signlab.pose import POSE_FEATURE_DIM


@dataclass
class VideoFeatures:
    features: np.ndarray  # (rows, D)
    times: np.ndarray  # (rows,) seconds: the frame, or the centre of the I3D window, each row stands for
    frames: int
    fps: float
    seconds: float  # time taken to decode and extract


def video_features(path: str | Path, input_dim: int, cfg: ExtractConfig, i3d_weights: str | Path | None = None) -> VideoFeatures:
    """Decode ``path`` and extract pose (540) or I3D (1024) features; raises SignlabError."""
    started = time.perf_counter()
    fps = cfg.fps or probe(path).fps
    if input_dim == POSE_FEATURE_DIM:
        from signlab.extract.holistic import HolisticExtractor

        decoded = iter_frames(path, VideoOptions(fps=cfg.fps), truncated="warn")
        features = HolisticExtractor(cfg.model_complexity).landmarks(decoded).features()
        times = np.arange(len(features)) / fps
        frames = len(features)
    elif input_dim == I3D.FEATURE_DIM:
        weights = i3d_weights or cfg.i3d_weights
        if weights is None:
            raise SignlabError("this model reads I3D features: pass --i3d-weights (the checkpoint its training "
                               "features were extracted with)")
        clip = np.stack(list(iter_frames(path, VideoOptions(fps=cfg.fps, size=cfg.size, crop=cfg.crop), truncated="warn")))
        features = I3DExtractor(weights, stack_size=cfg.stack_size, step_size=cfg.step_size).extract(clip)
        times = window_times(len(clip), cfg.stack_size, cfg.step_size, fps)
        frames = len(clip)
    else:
        raise SignlabError(f"signlab extracts 540-dim pose or 1024-dim I3D features; this model reads {input_dim}-dim "
                           "features, so extract them yourself and use `signlab evaluate` or the Python API")
    return VideoFeatures(features, times, frames, fps, time.perf_counter() - started)
