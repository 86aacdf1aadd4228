"""Live recognition on a stream: WER against offline decoding, latency, compute per second.

The stream is the demo's test clips (unseen signers) one after another, each after a pause: the
hands go back to rest over 8 frames and stay there ``--pause`` seconds (the next clip's first,
resting, frame with the jitter of the clip's own resting frames). Features are streamed at the
bundle's frame rate (25 fps) into `StreamingRecognizer` one row at a time on a simulated clock:
a row arrives at its stream time; if the recogniser is still busy it waits, and every event's
time is when it was emitted with the processing it took measured, as one processing thread in
real time would see it (without waiting for the stream's minutes to pass).

* WER of the final live output (each clip's final glosses) against the offline WER of the same
  clips decoded whole with the same decoder;
* latency from the end of a sign to its final emission and to the first partial that shows it:
  a sign's end is where the offline CTC alignment of its clip last places it (so a gloss can show
  in a partial before it, while its last frames still come); only glosses the live output and the
  offline alignment agree on count;
* compute per second of stream, and the longest wait of a row behind the recogniser.

    python benchmarks/bench_live.py [--run runs/demo/hybrid] [--hop 0.4] [--pause 1.0] [--clips 120]
"""

from __future__ import annotations

import argparse
import difflib
import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]


class SimulatedClock:
    """Stream time for one processing thread: a row arriving at ``t`` starts being processed at
    ``max(t, when the previous one was done)``; reading the clock adds the processing so far."""

    def __init__(self) -> None:
        self.base, self.started = 0.0, time.perf_counter()

    def arrive(self, t: float) -> float:
        """The row of stream time ``t`` is taken; returns how long it waited."""
        now = self()
        self.base, self.started = max(now, t), time.perf_counter()
        return max(0.0, now - t)

    def __call__(self) -> float:
        return self.base + time.perf_counter() - self.started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "demo" / "hybrid",
                        help="a gloss bundle (default: the demo's; `make demo` makes it)")
    parser.add_argument("--hop", type=float, default=0.4)
    parser.add_argument("--guard", type=float, default=0.3, help="seconds a gloss must be signed before the newest frame "
                        "to become final by local agreement")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of rest between clips")
    parser.add_argument("--clips", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.run / "model.safetensors").is_file():
        raise SystemExit(f"{args.run} is not a bundle: run `make demo` first, or pass --run")
    from signlab.data.manifest import read_manifest
    from signlab.data.synthetic import stream_with_pauses
    from signlab.tasks import load_predictor
    from signlab.inference.streaming import StreamingRecognizer
    from signlab.metrics import word_error_rate

    predictor = load_predictor(args.run)
    fps = predictor.config.extract.fps
    samples = [s for s in read_manifest(args.run.parent / "data" / "manifest.csv") if s.split == "test"][: args.clips]
    clips = [np.load(s.features) for s in samples]
    refs = [" ".join(s.glosses) for s in samples]
    started = time.perf_counter()
    offline = [predictor.predict([predictor.prepare(c, s.id)])[0] for c, s in zip(clips, samples)]
    offline_s = time.perf_counter() - started
    stream, starts = stream_with_pauses(clips, fps, args.pause, np.random.default_rng(args.seed))

    clock = SimulatedClock()
    live = StreamingRecognizer(predictor, fps=fps, hop_s=args.hop, guard_s=args.guard, clock=clock)
    events, waits = [], []
    busy = 0.0
    for i, row in enumerate(stream):
        waits.append(clock.arrive(i / fps))
        t0 = time.perf_counter()
        events += live.push(row)
        busy += time.perf_counter() - t0
    events += live.flush()

    # each event belongs to the clip its span ends in (a pause separates clips)
    bounds = np.array(starts[1:] + [len(stream)]) / fps
    per_clip: list[list] = [[] for _ in clips]
    for e in events:
        per_clip[min(int(np.searchsorted(bounds, e.end, side="left")), len(clips) - 1)].append(e)
    finals = [[g for e in evs if e.type == "final" for g in e.glosses] for evs in per_clip]
    live_wer = word_error_rate(refs, [" ".join(f) for f in finals])
    offline_wer = word_error_rate(refs, [" ".join(o["glosses"]) for o in offline])

    to_final, to_partial = [], []
    for k, evs in enumerate(per_clip):
        signs = [(s["gloss"], (starts[k] + s["end_frame"] + 1) / fps) for s in offline[k]["ctc_segments"]]
        emitted, seen, done = [], {}, []  # final glosses with their times; first time each position showed
        for e in evs:
            if e.type == "final":
                done += e.glosses
                emitted += [e.emitted_at] * len(e.glosses)
            view = done + (e.glosses if e.type == "partial" else [])
            for pos, g in enumerate(view):
                seen.setdefault((pos, g), e.emitted_at)
        matcher = difflib.SequenceMatcher(a=[g for g, _ in signs], b=done, autojunk=False)
        for block in matcher.get_matching_blocks():
            for j in range(block.size):
                gloss, end = signs[block.a + j]
                to_final.append(emitted[block.b + j] - end)
                to_partial.append(seen.get((block.b + j, gloss), emitted[block.b + j]) - end)

    stream_s = len(stream) / fps
    signing_s = sum(len(c) for c in clips) / fps
    table = Table(title=f"signlab live on {args.run}: {len(clips)} test clips streamed at {fps:g} fps with "
                        f"{args.pause:g} s pauses ({stream_s:.0f} s), hop {args.hop:g} s, {os.cpu_count()} CPU cores")
    for col in ("measure", "value", "target"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    table.add_row("WER offline (whole clips, same decoder)", f"{offline_wer.wer:.2f}", "")
    table.add_row("WER live (final output)", f"{live_wer.wer:.2f}", f"<= {offline_wer.wer + 2:.2f}")
    table.add_row("sub / del / ins live", f"{live_wer.sub} / {live_wer.dele} / {live_wer.ins}", "")
    table.add_row("segments found / clips", f"{sum(1 for evs in per_clip for e in evs if e.type == 'final')} finals, "
                                           f"{sum(bool(evs) for evs in per_clip)} / {len(clips)} clips", "")
    table.add_row("glosses timed (live = offline alignment)", f"{len(to_final)}", "")
    for name, values, target in (("sign end -> final, median s", to_final, "< 1.0"),
                                 ("sign end -> final, p95 s", to_final, ""),
                                 ("sign end -> first partial, median s", to_partial, "< 0.5"),
                                 ("sign end -> first partial, p95 s", to_partial, "")):
        q = 50 if "median" in name else 95
        table.add_row(name, f"{np.percentile(values, q):.2f}" if values else "-", target)
    table.add_row("compute per second of stream", f"{busy / stream_s:.3f} s", "")
    table.add_row("compute per second of signing", f"{busy / signing_s:.3f} s (offline {offline_s / signing_s:.3f} s)", "")
    table.add_row("longest wait of a row behind the recogniser", f"{max(waits):.3f} s", "")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
