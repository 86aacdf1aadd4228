"""Recognition while the person signs: raw feature rows in, one or a few at a time; partial and
final events out. For both kinds of bundle, through the one :class:`~signlab.inference.predictor.Predictor`
interface the service uses.

The stream is cut into *segments* by motion: signing starts when a wrist moves more than twice
``motion_threshold`` shoulder widths within ``span_s``, goes on while one moves more than
``motion_threshold``, and ends after ``pause_s`` below it (pose features; other kinds have no
landmarks to watch, and a segment ends only at the window limit). Only the current segment is
kept, so memory is bounded by the window.

* **Gloss bundles**: every ``hop_s`` of signing the bundle's decoder runs over the segment so far
  (at most ``max_window_s``: by default the longest clip the model reads as it is, with the still
  frames around it) and its glosses not yet
  final are a *partial* event. Glosses become *final* early by local agreement: those in the
  common prefix of two consecutive partials whose CTC alignment ends at least ``guard_s`` before
  the newest frame. When the segment ends, the whole segment is decoded once more and the rest of
  its glosses are final. A segment that outgrows the window is cut after its last final gloss,
  keeping ``context_s`` before the cut as left context, so no hop encodes more than the window.
* **Tasks without partial results** (sentence, isolated sign): each segment, when it ends, is one
  query: one final event with the task's answer (a sentence and its decision; a sign).

Times are stream seconds (frame index / fps); ``emitted_at`` comes from ``clock`` (default: the
wall clock since the first row was pushed), so ``latency_ms`` is how long after the last frame
it covers an event was emitted, processing included.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from signlab import pose
from signlab.data.features import FeatureError, check_features
from signlab.inference.predictor import Predictor

log = logging.getLogger(__name__)


@dataclass
class LiveEvent:
    type: str  # "partial" or "final"
    start: float  # stream seconds: the span of the stream the event is about
    end: float
    emitted_at: float
    latency_ms: float
    glosses: list[str] | None = None  # gloss bundles
    answer: dict[str, Any] | None = None  # tasks without partial results (sentence, isolated sign): the segment's answer

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class WristMotion:
    """How far the wrists moved over the last ``span_s``, frame by frame, in shoulder widths: the
    distance between their positions averaged over ``smooth_s`` now and ``span_s`` ago (landmark
    jitter averages out and does not add up over a span; signing does)."""

    def __init__(self, fps: float, span_s: float = 0.32, smooth_s: float = 0.24):
        self.span, self.smooth = max(1, round(span_s * fps)), max(1, round(smooth_s * fps))
        self.recent = np.zeros((0, 2, 2), np.float32)  # the last frames' wrists (x, y), NaN where unseen
        self.width: float | None = None  # running shoulder width

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """(n, 540) raw rows -> (n,) the larger wrist displacement over the span ending at each."""
        pts, present = pose.points(rows), pose.point_mask(rows)
        shoulders = present[:, pose.LEFT_SHOULDER] & present[:, pose.RIGHT_SHOULDER]
        if shoulders.any():
            width = float(np.linalg.norm(pts[shoulders, pose.LEFT_SHOULDER, :2] - pts[shoulders, pose.RIGHT_SHOULDER, :2],
                                         axis=1).mean())
            self.width = width if self.width is None else 0.9 * self.width + 0.1 * width
        wrists = pts[:, [pose.LEFT_WRIST, pose.RIGHT_WRIST], :2]
        wrists[~present[:, [pose.LEFT_WRIST, pose.RIGHT_WRIST]]] = np.nan
        history = np.concatenate([self.recent, wrists])
        self.recent = history[-(self.span + self.smooth) :]
        if self.width is None or self.width < 1e-6 or len(history) < self.span + self.smooth:
            return np.zeros(len(rows))
        sums = np.concatenate([np.zeros((1, 2, 2)), np.cumsum(history, axis=0)])
        smoothed = (sums[self.smooth :] - sums[: -self.smooth]) / self.smooth  # mean of each `smooth` frames
        moved = np.linalg.norm(smoothed[self.span :] - smoothed[: -self.span], axis=-1)[-len(rows) :] / self.width
        moved = np.nan_to_num(moved, nan=0.0).max(1)  # an unseen wrist does not move
        return np.concatenate([np.zeros(len(rows) - len(moved)), moved])


class StreamingRecognizer:
    """Feature rows in (:meth:`push`), :class:`LiveEvent` out; :meth:`flush` at the end of the stream."""

    def __init__(self, predictor: Predictor, fps: float = 25.0, hop_s: float = 0.4, pause_s: float = 0.44,
                 motion_threshold: float = 0.08, preroll_s: float = 0.3, guard_s: float = 0.3,
                 context_s: float = 1.0, max_window_s: float | None = None,
                 clock: Callable[[], float] | None = None):
        self.predictor, self.fps = predictor, fps
        self.dim, self.gloss = predictor.kind.dim, predictor.partial_results
        frames = lambda s: max(1, round(s * fps))  # noqa: E731
        self.hop, self.pause, self.preroll, self.guard, self.context = (frames(s) for s in (hop_s, pause_s, preroll_s,
                                                                                              guard_s, context_s))
        # the longest clip the model reads as it is, with the still frames around it
        longest = predictor.max_frames or frames(12.0)
        self.window = frames(max_window_s) if max_window_s else longest + 2 * self.preroll + self.pause
        self.motion = WristMotion(fps) if predictor.kind.pose else None
        self.threshold = motion_threshold
        if clock is None:
            started = None

            def clock() -> float:
                nonlocal started
                started = time.perf_counter() if started is None else started
                return time.perf_counter() - started

        self.clock = clock
        self.frames = 0  # rows pushed so far
        self.buffer = np.zeros((self.window + 1, self.dim), np.float32)  # memory bounded by the window
        self.n = 0  # rows held: the segment so far, or the pre-roll while still
        self.first = 0  # stream index of the first row held
        self.active, self.still = False, 0
        self.since_hop = 0  # rows since the last partial
        self.done: list[str] = []  # glosses of the rows held that are final already
        self.previous: list[str] | None = None  # the last partial's glosses after the final ones

    # -- the stream ------------------------------------------------------------------------------

    def push(self, rows: np.ndarray) -> list[LiveEvent]:
        """One row (D,) or a chunk (n, D) of raw features, as the extractor writes them."""
        if self.frames == 0:
            self.clock()  # the default clock starts with the stream
        rows = np.asarray(rows, np.float32)
        rows = check_features(rows[None] if rows.ndim == 1 else rows, "live stream", self.dim)
        events: list[LiveEvent] = []
        motion = self.motion(rows) if self.motion else np.full(len(rows), np.inf)
        for row, moved in zip(rows, motion):  # per row: the segment logic is a few comparisons
            events += self._advance(row, moved > (self.threshold if self.active else 2 * self.threshold))
        return events

    def flush(self) -> list[LiveEvent]:
        """The end of the stream: an open segment ends here."""
        return self._end_segment(self.n) if self.active else []

    @property
    def rows(self) -> np.ndarray:
        return self.buffer[: self.n]

    def _drop(self, count: int) -> None:
        """Forget the first ``count`` rows held."""
        count = max(0, min(count, self.n))
        self.buffer[: self.n - count] = self.buffer[count : self.n]
        self.n -= count
        self.first += count

    def _advance(self, row: np.ndarray, moving: bool) -> list[LiveEvent]:
        self.buffer[self.n] = row
        self.n += 1
        self.frames += 1
        if not self.active:
            if not moving:
                self._drop(self.n - self.preroll)
                return []
            self.active, self.still, self.since_hop, self.done, self.previous = True, 0, 0, [], None
        self.still = 0 if moving else self.still + 1
        if self.still >= self.pause:  # keep a few still frames after the last movement, as clips end
            return self._end_segment(self.n - self.still + min(self.still, self.preroll))
        self.since_hop += 1
        if self.n >= self.window:
            return self._cut()
        if self.gloss and self.since_hop >= self.hop:
            self.since_hop = 0
            return self._partial()
        return []

    # -- decoding --------------------------------------------------------------------------------

    def _decode(self, rows: np.ndarray) -> dict[str, Any] | None:
        try:
            clip = self.predictor.prepare(rows, "live stream")
        except FeatureError as exc:  # e.g. no shoulders in view: nothing to recognise
            log.debug("live: %s", exc)
            return None
        return self.predictor.predict([clip])[0]

    def _span(self, start: int, end: int) -> tuple[float, float]:
        return (self.first + start) / self.fps, (self.first + end) / self.fps

    def _event(self, kind: str, start: int, end: int, **what: Any) -> LiveEvent:
        a, b = self._span(start, end)
        now = self.clock()
        return LiveEvent(kind, round(a, 3), round(b, 3), round(now, 3), round(1000 * (now - b), 1), **what)

    def _settled(self, answer: dict[str, Any], end: int) -> int:
        """How many of a decode's glosses the CTC head placed before the guard (they are signed)."""
        return sum(s["end_frame"] < end - self.guard for s in answer["ctc_segments"])

    def _fresh(self, glosses: list[str]) -> int:
        """Where a decode of the rows held goes past the glosses already final: after the last of
        them it matches (a decode of more frames may differ from an earlier one before that)."""
        if not self.done:
            return 0
        blocks = [b for b in difflib.SequenceMatcher(a=self.done, b=glosses, autojunk=False).get_matching_blocks() if b.size]
        return blocks[-1].b + blocks[-1].size if blocks else min(len(self.done), len(glosses))

    def _partial(self) -> list[LiveEvent]:
        answer = self._decode(self.rows.copy())
        if answer is None:
            return []
        glosses, events = answer["glosses"], []
        start = self._fresh(glosses)
        fresh = glosses[start:]
        if self.previous is not None:  # local agreement: what two partials in a row agree on, once signed
            agreed = 0
            while agreed < min(len(fresh), len(self.previous)) and fresh[agreed] == self.previous[agreed]:
                agreed += 1
            agreed = min(agreed, max(0, self._settled(answer, self.n) - start))
            if agreed:
                events.append(self._event("final", 0, self.n, glosses=fresh[:agreed]))
                self.done += fresh[:agreed]
                fresh = fresh[agreed:]
        self.previous = fresh
        events.append(self._event("partial", 0, self.n, glosses=fresh))
        return events

    def _end_segment(self, end: int) -> list[LiveEvent]:
        events = []
        answer = self._decode(self.rows[:end].copy()) if end > 1 else None
        if answer is not None:
            if self.gloss:
                rest = answer["glosses"][self._fresh(answer["glosses"]) :]
                if rest:
                    events.append(self._event("final", 0, end, glosses=rest))
            else:
                events.append(self._event("final", 0, end, answer=answer))
        self._drop(self.n - self.preroll)
        self.active, self.still, self.previous, self.done = False, 0, None, []
        return events

    def _cut(self) -> list[LiveEvent]:
        """The segment fills the window: glosses placed before the guard become final, and the
        segment goes on from the last of them, with left context."""
        answer = self._decode(self.rows.copy())
        events = []
        if answer is None or not self.gloss:
            cut, self.done = max(self.n - self.context, self.hop), []
            if not self.gloss and answer is not None:
                events.append(self._event("final", 0, self.n, answer=answer))
        else:
            glosses, start = answer["glosses"], self._fresh(answer["glosses"])
            settled = [s for s in answer["ctc_segments"] if s["end_frame"] < self.n - self.guard]
            if len(settled) > start:
                events.append(self._event("final", 0, self.n, glosses=glosses[start : len(settled)]))
            cut = settled[-1]["end_frame"] + 1 if settled else self.n - self.context
            # glosses the context still holds will come again: they are final already; at least
            # a hop of rows goes, so the window always has room
            cut = max(0, cut - self.context, self.n - self.window + self.hop)
            self.done = [s["gloss"] for s in settled if s["end_frame"] >= cut]
        self._drop(cut)
        self.previous, self.since_hop = None, 0
        return events
