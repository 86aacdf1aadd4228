"""`signlab serve`: the real app on uvicorn, on a free loopback port, called over HTTP."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
import uvicorn

from signlab.decoding.beam import beam_search
from signlab.extract.pipeline import video_features
from signlab.tasks import load_predictor
from signlab.inference.recognizer import Recognizer
from signlab.service import Limits, create_app
from signlab.training.gloss import GlossPredictor
from tests.conftest import REAL_DATA, needs_real_data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve():
    servers = []

    def start(predictors, api_key=None, limits=Limits()) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(predictors, api_key, limits), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.time() + 30
        while not server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def call(url: str, body: bytes | None = None, content_type: str = "application/json", key: str | None = None):
    """(status, parsed JSON or text) of one request."""
    headers = {"Content-Type": content_type} if body is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def as_json(x: np.ndarray) -> bytes:
    return json.dumps({"frames": x.tolist()}).encode()


def as_npy(x: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, x)
    return buffer.getvalue()


def test_both_tasks_answer_over_http_as_the_python_api_does(tiny_run, tiny_corpus, sentence_predictor, serve):
    gloss = load_predictor(tiny_run)
    assert isinstance(gloss, GlossPredictor)
    base = serve([gloss, sentence_predictor])
    assert call(f"{base}/healthz") == (200, {"status": "ok"})
    assert call(f"{base}/readyz") == (200, {"ready": True, "models": ["phrases", "run"]})
    status, listed = call(f"{base}/v1/models")
    assert status == 200 and {(m["name"], m["task"], m["feature_kind"]) for m in listed["models"]} == {
        ("run", "gloss", "pose/holistic-540"), ("phrases", "sentence", "pose/holistic-540")}

    features = np.load(next(tiny_corpus.parent.glob("features/*.npy")))
    expected = Recognizer.load(tiny_run).recognize(features)
    for body, kind in ((as_json(features), "application/json"), (as_npy(features), "application/octet-stream")):
        status, answer = call(f"{base}/v1/models/run:predict", body, kind)
        assert status == 200 and answer["glosses"] == expected and answer["task"] == "gloss", answer
        assert answer["frames"] == len(features)

    clip = np.random.default_rng(5).normal(0, 0.3, (24, 540)).astype(np.float32)
    status, answer = call(f"{base}/v1/models/phrases:predict", as_npy(clip), "application/octet-stream")
    direct = sentence_predictor.engine.predict(clip)
    assert status == 200 and answer["task"] == "sentence"
    assert (answer["sentence"], answer["reason"], answer["accepted"]) == (direct.sentence, direct.reason, direct.accepted)
    assert answer["confidence"] == pytest.approx(direct.confidence, abs=1e-5)
    assert answer["translation"] == reference_translation(sentence_predictor.bundle, sentence_predictor.prepare(clip, "q"))


@torch.no_grad()
def reference_translation(bundle, clip: np.ndarray) -> str:
    """The text decoder's beam search on a fresh PyTorch encoding of one clip."""
    opts, x = bundle.config.decoding, torch.from_numpy(clip)[None]
    enc = bundle.model.encode(x, torch.tensor([len(clip)]))
    nbest = beam_search(bundle.model.decoder, enc.context, enc.padding_mask, torch.tensor([opts.max_len]), opts.beam_size,
                        opts.max_len, opts.length_penalty, bonus=opts.length_bonus)
    return " ".join(bundle.vocab.decode(nbest[0][0].tokens)) if nbest[0] else ""


def test_an_api_key_is_required_when_one_is_set(sentence_predictor, serve):
    base = serve([sentence_predictor], api_key="s3cret")
    clip = as_npy(np.zeros((5, 540), np.float32))
    assert call(f"{base}/v1/models")[0] == 401
    assert call(f"{base}/v1/models", key="wrong")[0] == 401
    status, body = call(f"{base}/v1/models/phrases:predict", clip, "application/octet-stream")
    assert status == 401 and "Authorization: Bearer" in body["error"]
    assert call(f"{base}/v1/models", key="s3cret")[0] == 200
    assert call(f"{base}/metrics")[0] == 401 and call(f"{base}/metrics", key="s3cret")[0] == 200
    assert call(f"{base}/healthz")[0] == 200  # probes stay open


def test_limits_and_malformed_requests_get_json_errors_that_say_what(sentence_predictor, serve):
    base = serve([sentence_predictor], limits=Limits(max_body_bytes=200_000, max_frames=50))
    url = f"{base}/v1/models/phrases:predict"
    status, body = call(url, as_npy(np.zeros((100, 540), np.float32)), "application/octet-stream")
    assert status == 413 and body["limit"] == "max_body_bytes" and body["value"] == 200_000
    status, body = call(url, as_json(np.zeros((51, 3), np.float32)))
    assert status == 413 and body["limit"] == "max_frames" and body["value"] == 50
    status, body = call(url, as_json(np.zeros((10, 7), np.float32)))
    assert status == 422 and "540" in body["error"] and "7" in body["error"]  # wrong dim
    nan = np.zeros((10, 540), np.float32)
    nan[3, 5] = np.nan
    status, body = call(url, as_npy(nan), "application/octet-stream")
    assert status == 422 and "NaN" in body["error"]
    assert call(url, b'{"frames": [[1, 2], [3]]}')[0] == 422  # ragged
    assert call(url, b"{not json")[0] == 422
    assert call(url, b'{"rows": []}')[0] == 422
    assert call(url, b"\x93NUMPY garbage", "application/octet-stream")[0] == 422
    truncated = as_npy(np.zeros((10, 540), np.float32))[:-100]
    assert call(url, truncated, "application/octet-stream")[0] == 422
    assert call(url, b"", "application/octet-stream")[0] == 422 and call(url, b"")[0] == 422  # empty bodies
    assert call(url, b"x", "text/plain")[0] == 415
    npz = io.BytesIO()
    np.savez(npz, a=np.zeros((5, 540)))  # found by the OpenAPI fuzzer: an .npz body was a 500
    status, body = call(url, npz.getvalue(), "application/octet-stream")
    assert status == 422 and ".npz archive" in body["error"]
    status, body = call(f"{base}/v1/models/nope:predict", as_json(np.zeros((5, 540))))
    assert status == 404 and body["models"] == ["phrases"]
    status, metrics = call(f"{base}/metrics")
    assert re.search(r'signlab_requests_total\{code="413",endpoint="predict",model="phrases"\} 2\.0', metrics), metrics


def test_concurrent_requests_are_answered_in_batches(sentence_predictor, serve):
    base = serve([sentence_predictor], limits=Limits(max_batch=8, max_wait_ms=300))
    clips = [np.random.default_rng(i).normal(0, 0.3, (16 + i, 540)).astype(np.float32) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: call(f"{base}/v1/models/phrases:predict", as_npy(c), "application/octet-stream"),
                                clips))
    assert all(status == 200 for status, _ in answers)
    for clip, (_, answer) in zip(clips, answers):  # each answer is its own clip's, batched or not
        assert answer["sentence"] == sentence_predictor.engine.predict(clip).sentence and answer["frames"] == len(clip)
    metrics = call(f"{base}/metrics")[1]
    calls = float(re.search(r'signlab_batch_size_count\{model="phrases"\} (\S+)', metrics).group(1))
    assert calls < 8  # fewer model calls than requests: some were gathered


@pytest.mark.parametrize("workers", [1, 2])
def test_the_serve_command_serves_until_sigterm(tiny_run, tiny_corpus, tmp_path, workers):
    import os
    import signal
    import subprocess
    import sys

    key = tmp_path / "key"
    key.write_text("k3y\n")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "signlab.cli", "serve", str(tiny_run), "--port", str(port),
                               "--api-key-file", str(key), "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "COLUMNS": "40"})
    try:
        base, deadline = f"http://127.0.0.1:{port}", time.time() + 120
        while True:
            try:
                if call(f"{base}/readyz")[0] == 200:
                    break
            except urllib.error.URLError:
                pass
            assert server.poll() is None and time.time() < deadline, server.stderr.read() if server.poll() else "no start"
            time.sleep(0.2)
        features = np.load(next(tiny_corpus.parent.glob("features/*.npy")))
        for _ in range(3):  # with two workers, requests may land on either
            status, answer = call(f"{base}/v1/models/run:predict", as_npy(features), "application/octet-stream", key="k3y")
            assert status == 200 and answer["glosses"] == Recognizer.load(tiny_run).recognize(features)
        server.send_signal(signal.SIGTERM)  # uvicorn finishes requests in flight, then re-raises the signal
        assert server.wait(30) in (0, -signal.SIGTERM) and "Traceback" not in server.stderr.read()
    finally:
        server.kill()
    if workers > 1:
        return
    empty = tmp_path / "empty"
    empty.write_text("")
    r = subprocess.run([sys.executable, "-m", "signlab.cli", "serve", str(tiny_run), "--api-key-file", str(empty)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"the API key file {empty} is empty" in r.stderr and "Traceback" not in r.stderr


@needs_real_data()
def test_a_video_upload_is_extracted_as_the_bundle_says(tiny_run, serve):
    video = REAL_DATA / "wlasl_01377.mp4"
    gloss = load_predictor(tiny_run)
    base = serve([gloss], limits=Limits(max_video_s=30))
    status, answer = call(f"{base}/v1/models/run:predict", video.read_bytes(), "video/mp4")
    expected = video_features(video, gloss.kind, gloss.config.extract)
    assert status == 200 and answer["frames"] == len(expected.features), answer
    assert answer["glosses"] == gloss.recognizer.recognize(expected.features)
    status, body = call(f"{base}/v1/models/run:predict", b"not a video at all", "video/mp4")
    assert status == 422 and "the uploaded video" in body["error"] and "signlab-upload" not in body["error"], body
    short = serve([gloss], limits=Limits(max_video_s=0.5))
    status, body = call(f"{short}/v1/models/run:predict", video.read_bytes(), "video/mp4")
    assert status == 413 and body["limit"] == "max_video_s"


@needs_real_data()
def test_a_zip_of_frames_is_a_video_too(tiny_run, serve, tmp_path):
    import zipfile

    from signlab.extract.video import VideoOptions, read_video

    gloss = load_predictor(tiny_run)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(read_video(REAL_DATA / "wlasl_01377.mp4", VideoOptions(size=256))[:20]):
        cv2.imwrite(str(frames / f"images{i + 1:04d}.png"), f[..., ::-1])
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as z:
        for p in sorted(frames.iterdir()):
            z.write(p, f"clip/1/{p.name}")  # a folder inside the zip, as PHOENIX nests its frames
        z.writestr("clip/notes.txt", "not a frame")
    base = serve([gloss], limits=Limits(max_video_s=30))
    status, answer = call(f"{base}/v1/models/run:predict?frame_rate=25", body.getvalue(), "application/zip")
    expected = video_features(frames, gloss.kind, gloss.config.extract)
    assert status == 200 and answer["frames"] == len(expected.features) == 20, answer
    assert answer["glosses"] == gloss.recognizer.recognize(expected.features)
    status, body_ = call(f"{base}/v1/models/run:predict?frame_rate=0.1", body.getvalue(), "application/zip")
    assert status == 413 and body_["limit"] == "max_video_s"  # 20 frames at 0.1 a second: 200 s
    status, body_ = call(f"{base}/v1/models/run:predict?frame_rate=abc", body.getvalue(), "application/zip")
    assert status == 422 and "frame_rate" in body_["error"]
    status, body_ = call(f"{base}/v1/models/run:predict", b"PK not a zip", "application/zip")
    assert status == 422 and "not a zip of frames" in body_["error"]


def test_the_openapi_document_says_what_the_service_does(tiny_run, sentence_predictor, serve):
    """Schemathesis fuzzes every operation from /openapi.json alone, as a generated client would:
    every answer's status code, content type and body must be ones the document declares, and no
    request may make the server fail (5xx)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    base = serve([load_predictor(tiny_run), sentence_predictor], api_key="k3y",
                 limits=Limits(max_body_bytes=2**20, max_frames=300, max_video_s=10))
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    document = json.loads(urllib.request.urlopen(f"{base}/openapi.json").read())
    predict = document["paths"]["/v1/models/{name}:predict"]["post"]
    assert set(predict["responses"]) == {"200", "401", "404", "413", "415", "422", "500", "504"}
    assert set(predict["requestBody"]["content"]) == {"application/json", "application/octet-stream", "application/x-npy",
                                                      "video/*", "application/zip"}
    assert set(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    seen: set[int] = set()

    def fuzz(operation, headers: dict[str, str]) -> None:
        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # the same cases each run: CI stays deterministic
        def run(case):
            seen.add(case.call_and_validate(base_url=base, checks=checks, headers=headers).status_code)

        run()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 5
    for operation in operations:  # with the key, and without: a 401 must be declared where it is answered
        fuzz(operation, {"Authorization": "Bearer k3y"})
        fuzz(operation, {})
    assert {200, 401, 422} <= seen
    clip = np.random.default_rng(0).normal(0, 0.3, (24, 540)).round(3)  # random data seldom makes a valid clip
    predict_op = next(o for o in operations if o.path.endswith(":predict"))
    for name in ("run", "phrases"):
        for body, media_type in (({"frames": clip.tolist()}, "application/json"), (as_npy(clip), "application/octet-stream")):
            case = schema.make_case(operation=predict_op, path_parameters={"name": name}, body=body, media_type=media_type)
            response = case.call_and_validate(base_url=base, checks=checks, headers={"Authorization": "Bearer k3y"})
            assert response.status_code == 200 and response.json()["model"] == name
