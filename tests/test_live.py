"""Live recognition: the streaming recogniser on feature streams, the sources, `signlab live`."""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading

import numpy as np
import pytest

from signlab.data.manifest import read_manifest
from signlab.data.synthetic import stream_with_pauses
from signlab.errors import SignlabError
from signlab.extract.live import LiveStats, open_source, video_rows
from signlab.extract.video import VideoError
from signlab.tasks import load_predictor
from signlab.inference.streaming import StreamingRecognizer
from tests.conftest import REAL_DATA, needs_real_data, run_cli

FPS = 25.0


@pytest.fixture(scope="module")
def stream(tiny_corpus):
    """Three test clips of the tiny corpus signed one after another, with pauses."""
    clips = [np.load(s.features) for s in read_manifest(tiny_corpus) if s.split == "test"][:3]
    rows, starts = stream_with_pauses(clips, FPS, 1.0, np.random.default_rng(0))
    return rows, starts, clips


class Clock:
    """Stream time as the clock: what the recogniser emits is stamped with the newest row's time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(recognizer: StreamingRecognizer, rows: np.ndarray, clock: Clock | None = None, chunk: int = 1):
    events = []
    for i in range(0, len(rows), chunk):
        if clock is not None:
            clock.now = (i + chunk) / FPS
        events += recognizer.push(rows[i : i + chunk])
    return events + recognizer.flush()


def test_each_pause_delimited_segment_ends_with_the_offline_decoding_of_its_frames(tiny_run, stream):
    rows, starts, clips = stream
    predictor = load_predictor(tiny_run)
    # guard longer than any clip: nothing is final before its segment ends, so each final is one decode
    events = run(StreamingRecognizer(predictor, fps=FPS, guard_s=60.0), rows, chunk=7)
    finals = [e for e in events if e.type == "final"]
    assert len(finals) == len(clips)  # one segment per clip: the pauses were found, the signing not cut
    for e, start, clip in zip(finals, starts, clips):
        a, b = round(e.start * FPS), round(e.end * FPS)
        assert a <= start + 10 and b >= start + len(clip) - 10  # the segment holds the clip's signing
        offline = predictor.predict([predictor.prepare(rows[a:b], "segment")])[0]["glosses"]
        assert e.glosses == offline and e.glosses


def test_events_are_well_formed_and_in_order(tiny_run, stream):
    rows, _, _ = stream
    clock = Clock()
    events = run(StreamingRecognizer(load_predictor(tiny_run), fps=FPS, clock=clock), rows, clock)
    assert {e.type for e in events} == {"partial", "final"}
    times = [e.emitted_at for e in events]
    assert times == sorted(times) and all(e.start <= e.end <= e.emitted_at + 1e-9 for e in events)
    for e in events:
        line = json.loads(json.dumps(e.as_dict()))
        assert set(line) == {"type", "glosses", "start", "end", "emitted_at", "latency_ms"}
        assert line["latency_ms"] == pytest.approx(1000 * (e.emitted_at - e.end), abs=0.2)
    partials = [e for e in events if e.type == "partial"]
    assert len(partials) >= len(rows) / FPS / 0.4 / 2  # a partial every hop while signing


def test_a_stream_that_stops_mid_sign_flushes_its_last_segment(tiny_run, stream):
    rows, starts, clips = stream
    cut = starts[1] + len(clips[1]) // 2
    recognizer = StreamingRecognizer(load_predictor(tiny_run), fps=FPS, guard_s=60.0)
    for row in rows[:cut]:
        recognizer.push(row)
    assert recognizer.active
    last = recognizer.flush()
    assert len(last) == 1 and last[0].type == "final" and last[0].end == pytest.approx(cut / FPS)
    assert not recognizer.active and recognizer.flush() == []


def test_memory_is_bounded_by_the_window_on_endless_signing(tiny_run, stream):
    rows, starts, clips = stream
    signing = np.concatenate([clips[0][10:-10]] * 8)  # no pause for 25 s
    recognizer = StreamingRecognizer(load_predictor(tiny_run), fps=FPS)
    events = run(recognizer, signing, chunk=5)
    assert recognizer.n <= recognizer.window and len(recognizer.buffer) == recognizer.window + 1
    assert sum(len(e.glosses) for e in events if e.type == "final") > 0


def test_a_sentence_bundle_decides_once_per_segment(sentence_predictor, stream):
    rows, _, clips = stream
    events = run(StreamingRecognizer(sentence_predictor, fps=FPS), rows)
    assert [e.type for e in events] == ["final"] * len(clips)
    assert all({"accepted", "reason", "sentence", "translation"} <= set(e.answer) for e in events)


def test_nan_or_wrong_width_rows_are_one_line_errors(tiny_run):
    recognizer = StreamingRecognizer(load_predictor(tiny_run), fps=FPS)
    with pytest.raises(SignlabError, match="live stream"):
        recognizer.push(np.full(540, np.nan, np.float32))
    with pytest.raises(SignlabError, match="live stream"):
        recognizer.push(np.zeros((3, 17), np.float32))


def test_cli_streams_a_feature_file_and_logs_events(tiny_run, stream, tmp_path):
    rows, _, _ = stream
    np.save(tmp_path / "stream.npy", rows[: int(4 * FPS)])
    r = run_cli("live", "--model", str(tiny_run), "--features", str(tmp_path / "stream.npy"), "--fps", "100",
                "--jsonl", str(tmp_path / "events.jsonl"))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines and all(line["type"] in ("partial", "final") for line in lines)
    assert "rows in" in r.stdout and "0 frames dropped" in r.stdout


@pytest.mark.parametrize("args, message", [
    (("--camera", "7"), "camera 7 not found: /dev/video7 does not exist"),
    (("--video", "missing.mp4"), "missing.mp4 not found"),
    (("--features", "missing.npy"), "missing.npy"),
    ((), "give one source"),
    (("--camera", "0", "--video", "x.mp4"), "give one source"),
    (("--url", "http://127.0.0.1:9/none.mp4"), "cannot open http://127.0.0.1:9/none.mp4"),
])
def test_a_source_that_fails_is_a_one_line_error(tiny_run, args, message):
    r = run_cli("live", "--model", str(tiny_run), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


@needs_real_data()
def test_a_real_clip_over_http_is_tracked_frame_by_frame(tmp_path):
    video = REAL_DATA / "wlasl_18068.mp4"  # an MP4 a plain HTTP server can stream (no seeking to its index)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = open_source(url=f"http://127.0.0.1:{server.server_port}/{video.name}")
        stats = LiveStats()
        rows = list(video_rows(source, FPS, False, 1, stats, threading.Event(), live=False))
    finally:
        server.shutdown()
    assert len(rows) == stats.rows == stats.frames > 10 and stats.dropped == 0
    assert rows[0].shape == (540,) and np.isfinite(np.stack(rows)).all()
    assert (np.stack(rows)[:, :132] != 0).any(1).mean() > 0.5  # a body in most frames


def test_a_corrupt_video_source_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 200)
    with pytest.raises(VideoError):
        open_source(video=bad)


@needs_real_data()
def test_cli_recognises_a_real_video_through_mediapipe(tiny_run, tmp_path):
    r = run_cli("live", "--model", str(tiny_run), "--video", str(REAL_DATA / "wlasl_18068.mp4"),
                "--jsonl", str(tmp_path / "events.jsonl"))
    assert r.returncode == 0, r.stderr
    assert re.search(r"\d+ rows in .* 0 frames dropped", r.stdout)  # a file read as fast as it goes drops nothing
    assert (tmp_path / "events.jsonl").is_file()


@needs_real_data()
def test_a_folder_of_frames_is_a_live_source_as_its_video_is(tmp_path):
    from PIL import Image

    from signlab.extract.video import VideoOptions, read_video

    frames = read_video(REAL_DATA / "wlasl_18068.mp4", VideoOptions(fps=FPS))[:30]
    (tmp_path / "clip").mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "clip" / f"images{i + 1:04d}.png")
    source = open_source(video=tmp_path / "clip", frame_rate=FPS)
    assert source.rate == FPS and source.where == str(tmp_path / "clip")
    stats = LiveStats()
    rows = np.stack(list(video_rows(source, None, False, 1, stats, threading.Event(), live=False)))
    assert len(rows) == stats.frames == 30 and (rows[:, :132] != 0).any(1).mean() > 0.5
    (tmp_path / "clip" / "images0004.png").unlink()
    with pytest.raises(VideoError, match="frame 3 is followed by 5"):
        open_source(video=tmp_path / "clip")
