"""Video decoding with PyAV: any container FFmpeg reads, streamed frame by frame; and folders of
frames (PNG / JPEG, as PHOENIX and CSL-Daily ship them), read as the video they are.

Frames come out as (H, W, 3) uint8 RGB, upright (the container's rotation metadata is applied),
optionally resampled to a target frame rate (nearest source frame for each output tick, so
frames are dropped or repeated, never blended), resized so the shorter side is ``size`` and
centre-cropped to ``crop`` x ``crop``, and limited to a frame range ``[start, end)`` (source frame
numbers, 0-based; WLASL's 1-based inclusive ``frame_start``/``frame_end`` become ``start - 1``,
``end``) or a time range in seconds. A frame folder's images are its frames in the order of the
number in their names (a gap in the numbering is an error: frames are missing), at
``frame_rate`` frames a second, decoded by a few threads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np

from signlab.errors import SignlabError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ogv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class VideoError(SignlabError):
    """A video that cannot be used: ``kind`` is missing, empty, unreadable, corrupt or truncated."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class VideoOptions:
    fps: float | None = None  # None: every source frame
    size: int | None = None  # shorter side after resizing; None: as decoded
    crop: int | None = None  # centre crop (square); None: no crop
    start: int | None = None  # first source frame (0-based)
    end: int | None = None  # one past the last source frame
    start_time: float | None = None  # seconds
    end_time: float | None = None
    decode_threads: int = 0  # 0: FFmpeg decides; 1 when several worker processes share the cores
    frame_rate: float = 25.0  # frames a second of a frame folder (its images carry no timing)


@dataclass
class VideoInfo:
    path: Path
    fps: float
    frames: int | None  # as the container declares it
    width: int
    height: int


def is_frame_folder(path: Path) -> bool:
    """A folder holding PNG / JPEG frames: a video as PHOENIX and CSL-Daily distribute them."""
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def frame_files(folder: Path) -> list[Path]:
    """A frame folder's images in frame order (the number in their names that changes from frame to
    frame: PHOENIX-2014's ``...pid0_fn000042-0.png`` counts in ``fn``); a :class:`VideoError` when
    the folder is missing or empty or its numbering has a gap."""
    if not folder.is_dir():
        raise VideoError("missing", f"{folder} not found")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise VideoError("empty", f"{folder} holds no PNG or JPEG frames")
    runs = [[int(n) for n in re.findall(r"\d+", p.stem)] for p in files]
    width = {len(r) for r in runs}
    if len(width) != 1 or not runs[0]:
        return sorted(files)
    changing = [j for j in range(width.pop()) if len({r[j] for r in runs}) > 1] or [0]
    order = sorted(zip((r[changing[-1]] for r in runs), files))
    gaps = [(a, b) for (a, _), (b, _) in zip(order, order[1:]) if b != a + 1]
    if gaps:
        raise VideoError("gap", f"{folder}: frame {gaps[0][0]} is followed by {gaps[0][1]} ({len(gaps)} gap(s) in the "
                                "numbering: frames are missing)")
    return [f for _, f in order]


def _read_image(path: Path) -> np.ndarray:
    """One frame as RGB; OpenCV decodes PNG and JPEG about twice as fast as PIL, outside the GIL."""
    import cv2

    try:
        data = np.frombuffer(path.read_bytes(), np.uint8)
    except OSError as exc:
        raise VideoError("corrupt", f"{path} cannot be read ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise VideoError("corrupt", f"{path} is not a readable image (a PNG or JPEG cut short or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _folder_frames(folder: Path, opts: VideoOptions) -> Iterator[np.ndarray]:
    """A frame folder's frames with ``opts`` applied (range, rate, size, crop)."""
    files = frame_files(folder)
    rate = opts.frame_rate
    first = max(opts.start or 0, round(opts.start_time * rate) if opts.start_time is not None else 0)
    last = min(len(files) if opts.end is None else opts.end,
               round(opts.end_time * rate) if opts.end_time is not None else len(files))
    picked = list(range(first, last))
    if opts.fps is not None and picked:  # nearest frame for each tick of the target rate
        ticks = np.arange(round(len(picked) * opts.fps / rate)) * rate / opts.fps
        picked = [picked[i] for i in np.minimum(np.round(ticks).astype(int), len(picked) - 1)]
    if not picked:
        raise VideoError("empty", f"{folder} has no frames in the requested range")
    with ThreadPoolExecutor(max(1, min(4, opts.decode_threads or 4))) as pool:
        for img in pool.map(_read_image, [files[i] for i in picked]):
            yield _resize_crop(img, opts)


def _resize_crop(img: np.ndarray, opts: VideoOptions) -> np.ndarray:
    if opts.size is not None:
        from PIL import Image

        h, w = img.shape[:2]
        scale = opts.size / min(w, h)
        img = np.asarray(Image.fromarray(img).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                     Image.BILINEAR))
    return _crop(img, opts.crop)


def _crop(img: np.ndarray, c: int | None) -> np.ndarray:
    if c is None:
        return img
    h, w = img.shape[:2]
    if h < c or w < c:
        raise VideoError("corrupt", f"frame of {w}x{h} is smaller than the crop {c}x{c}; resize first (size >= crop)")
    top, left = (h - c) // 2, (w - c) // 2
    return img[top : top + c, left : left + c]


def _open(path: Path):
    if path.is_dir():
        raise VideoError("missing", f"{path} is a folder: give a video file, or a folder of PNG or JPEG frames")
    if not path.is_file():
        raise VideoError("missing", f"{path} not found")
    if path.stat().st_size == 0:
        raise VideoError("empty", f"{path} is empty (0 bytes)")
    try:
        # tags that are not UTF-8 (seen in real WLASL clips) must not stop a decodable video
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise VideoError("unreadable", f"{path} is not a video FFmpeg can open ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError("unreadable", f"{path} has no video stream")
    return container


def probe(path: str | Path, frame_rate: float = 25.0) -> VideoInfo:
    path = Path(path)
    if is_frame_folder(path):
        files = frame_files(path)
        height, width = _read_image(files[0]).shape[:2]
        return VideoInfo(path, frame_rate, len(files), width, height)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate or 25
        return VideoInfo(path, float(rate), stream.frames or None, stream.codec_context.width, stream.codec_context.height)


def iter_frames(path: str | Path, opts: VideoOptions = VideoOptions(),
                truncated: Literal["error", "warn"] = "error") -> Iterator[np.ndarray]:
    """Upright RGB frames of ``path`` with ``opts`` applied; raises :class:`VideoError`.

    When fewer frames decode than the container declares (a file cut short in a copy or a
    download), ``truncated="error"`` raises ``VideoError("truncated")`` after the last frame and
    ``"warn"`` logs a warning: what was decoded may still be worth recognising.
    """
    path = Path(path)
    if is_frame_folder(path) or (path.is_dir() and not any(path.iterdir())):
        yield from _folder_frames(path, opts)
        return
    container = _open(path)
    emitted = decoded = 0

    def counted(frames):  # source frames inside the range, before resampling
        nonlocal decoded
        for item in frames:
            decoded += 1
            yield item

    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = opts.decode_threads
        source_fps = float(stream.average_rate or stream.base_rate or 25)
        expected = _expected_frames(container, stream, source_fps, opts)
        frames = counted(_selected(container.decode(stream), source_fps, opts))
        for frame in _resampled(frames, opts.fps, source_fps):
            yield _to_array(frame, opts)
            emitted += 1
    except av.FFmpegError as exc:
        raise VideoError("corrupt", f"{path}: decoding failed after {emitted} frames ({exc})") from exc
    finally:
        container.close()
    if emitted == 0:
        raise VideoError("empty", f"{path} has no frames" + (" in the requested range" if _has_range(opts) else ""))
    if expected is not None and decoded < expected - max(2, 0.02 * expected):
        if truncated == "error":
            raise VideoError("truncated", f"truncated ({decoded} of {expected} frames): {path} was cut short "
                                          "(an interrupted copy or download?)")
        log.warning("%s: decoded %d of the %d frames its container declares; the file looks truncated (an "
                    "interrupted copy or download?); using the frames that decoded", path, decoded, expected)


def _expected_frames(container, stream, source_fps: float, opts: VideoOptions) -> int | None:
    """Source frames the container declares inside the requested range (None: it does not say).

    The smaller of the declared frame count and duration x rate: real clips (WLASL) declare a
    few frames more than their edit list plays, and a file cut short keeps both numbers whole.
    """
    seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else (
        container.duration / av.time_base if container.duration else None)
    declared = [n for n in (stream.frames or None, round(seconds * source_fps) if seconds else None) if n]
    if not declared:
        return None
    total = min(declared)
    first, last = opts.start or 0, total if opts.end is None else min(opts.end, total)
    if opts.start_time is not None:
        first = max(first, round(opts.start_time * source_fps))
    if opts.end_time is not None:
        last = min(last, round(opts.end_time * source_fps))
    return max(0, last - first)


def read_video(path: str | Path, opts: VideoOptions = VideoOptions()) -> np.ndarray:
    """All frames as one (T, H, W, 3) uint8 array."""
    return np.stack(list(iter_frames(path, opts)))


def stream_frames(container, fps: float | None) -> Iterator[np.ndarray]:
    """Upright RGB frames of an open container's first video stream, resampled to ``fps`` (None:
    every frame), as they decode: for sources that have no end to check (cameras, streams)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    source_fps = float(stream.average_rate or stream.base_rate or 25)
    for frame in _resampled(_selected(container.decode(stream), source_fps, VideoOptions()), fps, source_fps):
        yield _to_array(frame, VideoOptions())


def _has_range(opts: VideoOptions) -> bool:
    return any(v is not None for v in (opts.start, opts.end, opts.start_time, opts.end_time))


def _selected(decoded, source_fps: float, opts: VideoOptions) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time, frame) pairs inside the requested frame / time range."""
    for index, frame in enumerate(decoded):
        t = frame.time if frame.time is not None else index / source_fps
        if opts.start is not None and index < opts.start:
            continue
        if opts.start_time is not None and t < opts.start_time:
            continue
        if (opts.end is not None and index >= opts.end) or (opts.end_time is not None and t >= opts.end_time):
            break
        yield t, frame


def _resampled(frames: Iterator[tuple[float, av.VideoFrame]], fps: float | None, source_fps: float):
    """Nearest source frame for each tick of the target rate (one frame of look-ahead).

    Ticks start at the first frame and run to the clip's end (last frame + one source frame),
    so N frames at rate r become round(N * fps / r) frames.
    """
    if fps is None:
        for _, frame in frames:
            yield frame
        return
    first, k, prev = None, 0, None
    for t, frame in frames:
        if first is None:
            first = t
        if prev is not None:
            boundary = (prev[0] + t) / 2  # ticks before the midpoint belong to the previous frame
            while first + k / fps < boundary - 1e-9:
                yield prev[1]
                k += 1
        prev = (t, frame)
    if prev is not None:
        while first + k / fps < prev[0] + 1 / source_fps - 1e-9:
            yield prev[1]
            k += 1


def _to_array(frame: av.VideoFrame, opts: VideoOptions) -> np.ndarray:
    if opts.size is not None:
        w, h = frame.width, frame.height
        scale = opts.size / min(w, h)
        frame = frame.reformat(width=max(1, round(w * scale)), height=max(1, round(h * scale)), format="rgb24")
    img = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    if turns:
        img = np.ascontiguousarray(np.rot90(img, turns))
    return _crop(img, opts.crop)
