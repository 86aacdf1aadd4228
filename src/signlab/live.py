"""``signlab live``: a source (camera, stream, video file or feature file), the streaming
recogniser, a Rich view that follows the signer, and a JSONL log of the events."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from signlab.errors import SignlabError
from signlab.extract.live import LiveStats, feature_rows, open_source, video_rows
from signlab.inference.predictor import Predictor
from signlab.inference.streaming import LiveEvent, StreamingRecognizer
from signlab.tasks import load_predictor


@dataclass
class LiveSource:
    camera: int | None = None
    url: str | None = None
    video: Path | None = None
    features: Path | None = None
    realtime: bool = False  # pace a video file at its frame rate (features are always paced)
    fps: float | None = None  # rows a second (default: the bundle's extraction rate)
    frame_rate: float = 25.0  # a folder of frames plays at this rate

    def check(self) -> None:
        given = [n for n in ("camera", "url", "video", "features") if getattr(self, n) is not None]
        if len(given) != 1:
            raise SignlabError("give one source: --camera N, --url URL, --video FILE or --features F.npy"
                               + (f" (got {', '.join('--' + g for g in given)})" if given else ""))


@dataclass
class LiveSummary:
    rows: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process, all threads
    dropped: int = 0
    events: list[LiveEvent] = field(default_factory=list)

    @property
    def final_latencies_ms(self) -> list[float]:
        return [e.latency_ms for e in self.events if e.type == "final"]


class LiveView:
    """What the terminal shows: the final output so far, the current partial, and how it keeps up."""

    def __init__(self, name: str, source: str, predictor: Predictor):
        self.name, self.source, self.gloss, self.describe = name, source, predictor.partial_results, predictor.describe
        self.finals: deque[str] = deque(maxlen=8)
        self.partial, self.latency = "", None

    def add(self, event: LiveEvent) -> None:
        if event.type == "partial":
            self.partial = " ".join(event.glosses or [])
            return
        self.latency = event.latency_ms
        if event.glosses is not None:
            line = " ".join(event.glosses)
            self.partial = ""
        else:
            line = self.describe(event.answer or {})
        self.finals.append(f"{event.start:7.2f}-{event.end:7.2f} s  {line}")

    def render(self, stats: LiveStats) -> Group:
        behind = stats.dropped > 0
        status = Text(f"{self.name} <- {self.source}: {stats.rows} rows, {stats.fps:.1f} rows/s, "
                      f"dropped {stats.dropped} frames" + (" (processing is behind the source)" if behind else "")
                      + ("" if self.latency is None else f", last final {self.latency:.0f} ms after its frames"),
                      style="yellow" if behind else "dim")
        lines = [Text(line) for line in self.finals] or [Text("(nothing final yet)", style="dim")]
        partial = Text(f"… {self.partial}", style="italic cyan") if self.gloss and self.partial else Text("")
        return Group(status, *lines, partial)


def run_live(model: str | Path, source: LiveSource, jsonl: Path | None = None, backend: str = "torch",
             hop_s: float = 0.4, model_complexity: int | None = None, console: Console | None = None) -> LiveSummary:
    """Recognise ``source`` live with the bundle ``model`` until it ends (or Ctrl-C)."""
    source.check()
    console = console or Console()
    predictor = load_predictor(model, backend=backend)
    cfg = predictor.config
    fps = source.fps or cfg.extract.fps or 25.0
    stats, stop = LiveStats(), threading.Event()
    if source.features is not None:
        rows = feature_rows(source.features, predictor.kind.dim, fps, True, stats)
        where = str(source.features)
    else:
        if predictor.kind.extractor != "pose":
            raise SignlabError(f"{model} reads {predictor.kind.name} features: live recognition from video runs pose "
                               "bundles (MediaPipe Holistic); stream your own features with --features")
        opened = open_source(source.camera, source.url, source.video, source.frame_rate)
        where = opened.where
        if backend == "torch":  # MediaPipe needs a core of its own: PyTorch's second thread would take it, and frames drop
            torch.set_num_threads(1)
        live = source.video is None or source.realtime
        rows = video_rows(opened, fps, source.video is not None and source.realtime,
                          model_complexity if model_complexity is not None else cfg.extract.model_complexity,
                          stats, stop, live=live)
    streaming = StreamingRecognizer(predictor, fps=fps, hop_s=hop_s, clock=stats.clock)
    view = LiveView(Path(model).name, where, predictor)
    summary = LiveSummary()
    log = None if jsonl is None else jsonl.open("w", encoding="utf-8")
    started, cpu = time.perf_counter(), time.process_time()

    def emit(events: list[LiveEvent]) -> None:
        for event in events:
            view.add(event)
            summary.events.append(event)
            if log is not None:
                log.write(json.dumps(event.as_dict()) + "\n")
                log.flush()

    try:
        # Rich asks for the view when it refreshes (4 times a second), not once a row
        with Live(console=console, refresh_per_second=4, transient=False, get_renderable=lambda: view.render(stats)):
            try:
                for row in rows:
                    emit(streaming.push(row))
            except KeyboardInterrupt:
                stop.set()
            emit(streaming.flush())
    finally:
        stop.set()
        if log is not None:
            log.close()
    summary.rows, summary.dropped = stats.rows, stats.dropped
    summary.seconds, summary.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    latencies = summary.final_latencies_ms
    console.print(f"{stats.rows} rows in {summary.seconds:.1f} s ({stats.rows / max(summary.seconds, 1e-9):.1f} rows/s), "
                  f"{stats.dropped} frames dropped, CPU {summary.cpu_seconds / max(summary.seconds, 1e-9):.2f} cores, "
                  f"{sum(e.type == 'final' for e in summary.events)} final events"
                  + (f", final latency median {np.median(latencies):.0f} ms" if latencies else "")
                  + (f"; events: {jsonl}" if jsonl else ""))
    return summary
