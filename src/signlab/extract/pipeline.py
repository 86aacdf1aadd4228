"""One video -> the features a trained model expects, as its bundle's ``extract`` settings say."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signlab.config import ExtractConfig
from signlab.errors import SignlabError
from signlab.extract.i3d import I3DExtractor, window_times
from signlab.extract.video import VideoOptions, iter_frames, probe
from signlab.kinds import FeatureKind


@dataclass
class VideoFeatures:
    features: np.ndarray  # (rows, D)
    times: np.ndarray  # (rows,) seconds: the frame, or the centre of the I3D window, each row stands for
    frames: int
    fps: float
    seconds: float  # time taken to decode and extract


def video_features(path: str | Path, kind: FeatureKind, cfg: ExtractConfig,
                   i3d_weights: str | Path | None = None, frame_rate: float = 25.0) -> VideoFeatures:
    """Decode ``path`` (a video, or a folder of frames at ``frame_rate``) and extract features of
    ``kind`` (pose/holistic-540 or i3d-1024), the way ``cfg`` says; raises SignlabError."""
    if kind.extractor is None:
        raise SignlabError(f"this model reads {kind.name} features, which signlab does not extract from video: "
                           "extract them yourself and use `signlab evaluate` or the Python API")
    started = time.perf_counter()
    fps = cfg.fps or probe(path, frame_rate).fps
    if kind.extractor == "pose":
        from signlab.extract.holistic import HolisticExtractor

        decoded = iter_frames(path, VideoOptions(fps=cfg.fps, frame_rate=frame_rate), truncated="warn")
        features = HolisticExtractor(cfg.model_complexity).landmarks(decoded).features()
        times = np.arange(len(features)) / fps
        frames = len(features)
    else:
        weights = i3d_weights or cfg.i3d_weights
        if weights is None:
            raise SignlabError("this model reads I3D features: pass --i3d-weights (the checkpoint its training "
                               "features were extracted with)")
        clip = np.stack(list(iter_frames(path, VideoOptions(fps=cfg.fps, size=cfg.size, crop=cfg.crop, frame_rate=frame_rate),
                                         truncated="warn")))
        features = I3DExtractor(weights, stack_size=cfg.stack_size, step_size=cfg.step_size).extract(clip)
        times = window_times(len(clip), cfg.stack_size, cfg.step_size, fps)
        frames = len(clip)
    return VideoFeatures(features, times, frames, fps, time.perf_counter() - started)
