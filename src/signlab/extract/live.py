"""Live sources of feature rows: a camera, a network stream or a video file (PyAV, then MediaPipe
Holistic in tracking mode), or a feature file streamed at a frame rate.

A video source is two threads and two bounded queues: the reader decodes frames (a file with
``realtime`` is paced at its own frame rate; a camera or a stream comes in real time by itself)
and hands them to the Holistic thread, which turns each into a (540,) row for the consumer. When
Holistic falls behind a real-time source, the reader drops frames instead of queueing them (memory
stays bounded) and counts them; the Holistic thread repeats the newest row for each frame dropped,
so the rows keep the source's time base. A file without ``realtime`` is read as fast as Holistic
goes, and nothing is dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from signlab.data.features import load_features
from signlab.extract.video import (
    VideoError,
    VideoOptions,
    frame_files,
    is_frame_folder,
    iter_frames,
    probe,
    stream_frames,
)

log = logging.getLogger(__name__)

_END = object()


@dataclass
class LiveStats:
    """What a source did so far; read while it runs (the view) and after."""

    frames: int = 0  # frames read from the source
    dropped: int = 0  # frames dropped because the next stage was behind
    rows: int = 0  # feature rows produced (dropped frames included, as repeats)
    first: float | None = None  # when the first frame was read (perf_counter)

    def read_one(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.frames += 1

    def wait_for(self, index: int, fps: float) -> None:
        """Sleep until frame ``index`` is due, at ``fps`` from the first frame."""
        if self.first is not None:
            time.sleep(max(0.0, self.first + index / fps - time.perf_counter()))

    def clock(self) -> float:
        """Seconds since the source's first frame was read: the stream's time in real time."""
        return 0.0 if self.first is None else time.perf_counter() - self.first

    @property
    def fps(self) -> float:
        """Rows per second since the first frame."""
        return self.rows / max(self.clock(), 1e-9)


def feature_rows(path: str | Path, dim: int, fps: float, realtime: bool, stats: LiveStats) -> Iterator[np.ndarray]:
    """The rows of a feature file (``.npy``), at ``fps`` rows a second when ``realtime``."""
    for i, row in enumerate(load_features(path, dim)):
        if realtime:
            stats.wait_for(i, fps)
        stats.read_one()
        stats.rows += 1
        yield row


@dataclass
class Source:
    """A video source opened for live reading: its frames as they come, their rate, a name."""

    where: str
    frames: Callable[[float | None], Iterator[np.ndarray]]  # fps (None: as recorded) -> RGB frames
    rate: float  # frames a second as recorded
    close: Callable[[], None]


def open_source(camera: int | None = None, url: str | None = None, video: str | Path | None = None,
                frame_rate: float = 25.0) -> Source:
    """One of: ``/dev/video{camera}`` (V4L2), a URL (RTSP, HTTP...), a video file or a folder of
    frames (played at ``frame_rate``). A source that cannot be opened is a one-line :class:`VideoError`."""
    if video is not None and is_frame_folder(Path(video)):
        folder = Path(video)
        frame_files(folder)  # missing frames or a gap: the same one-line errors as everywhere
        return Source(str(folder), lambda fps: iter_frames(folder, VideoOptions(fps=fps, frame_rate=frame_rate)),
                      frame_rate, lambda: None)
    if video is not None:
        probe(video)  # missing, empty, not a video: the same one-line errors as everywhere
        where, args = str(video), {}
    elif camera is not None:
        where, args = f"/dev/video{camera}", {"format": "v4l2"}
        if not Path(where).exists():
            raise VideoError("missing", f"camera {camera} not found: {where} does not exist (list cameras with "
                                        "`ls /dev/video*`; in a container, pass the device through)")
    else:
        where, args = str(url), {"timeout": 10.0}
    try:
        container = av.open(where, **args)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError("unreadable", f"cannot open {where}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoError("unreadable", f"{where} has no video stream")
    rate = float(container.streams.video[0].average_rate or 25)
    return Source(where, lambda fps: stream_frames(container, fps), rate, container.close)


def video_rows(source: Source, fps: float | None, realtime: bool, model_complexity: int,
               stats: LiveStats, stop: threading.Event, live: bool = True) -> Iterator[np.ndarray]:
    """(540,) rows of the frames of an open source (:func:`open_source`), MediaPipe Holistic in its
    own thread; ``live``: the source comes in real time (a camera, a stream, a paced file), so
    frames are dropped rather than queued when Holistic is behind."""
    from signlab.extract.holistic import HolisticExtractor, feature_row

    extractor = HolisticExtractor(model_complexity)  # fails here, in the caller, without MediaPipe
    frames: queue.Queue = queue.Queue(maxsize=8)
    rows: queue.Queue = queue.Queue(maxsize=64)
    failure: list[BaseException] = []

    def read() -> None:
        try:
            rate = fps or source.rate
            for i, image in enumerate(source.frames(fps)):
                if stop.is_set():
                    break
                if realtime:
                    stats.wait_for(i, rate)
                stats.read_one()
                item = (i, image)
                if live:
                    try:
                        frames.put_nowait(item)
                    except queue.Full:
                        stats.dropped += 1
                else:
                    frames.put(item)
        except av.FFmpegError as exc:
            failure.append(VideoError("corrupt", f"{source.where}: decoding failed after {stats.frames} frames ({exc})"))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            failure.append(exc)
        finally:
            frames.put(_END)
            source.close()

    # the Holistic thread pulls frames and pushes rows, repeating a row for every frame the reader
    # dropped before it
    order: queue.Queue = queue.Queue()

    def images():
        while (item := frames.get()) is not _END:
            order.put(item[0])
            yield item[1]

    def holistic() -> None:
        try:
            expected = 0
            for found in extractor.stream(images()):
                index = order.get()
                row = feature_row(found)
                for _ in range(index - expected + 1):  # the frame, and repeats for those dropped before it
                    rows.put(row)
                expected = index + 1
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            failure.append(exc)
        finally:
            rows.put(_END)

    threads = [threading.Thread(target=read, daemon=True, name="signlab-reader"),
               threading.Thread(target=holistic, daemon=True, name="signlab-holistic")]
    for t in threads:
        t.start()
    try:
        while (row := rows.get()) is not _END:
            stats.rows += 1
            yield row
    finally:
        stop.set()
        _drain(frames)
        _drain(rows)
    if failure:
        raise failure[0]


def _drain(q: queue.Queue) -> None:
    """Empty a queue so that a thread blocked putting into it can go on and finish."""
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass
