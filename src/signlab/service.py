"""``signlab serve``: an HTTP inference service for gloss and sentence bundles, one code path for both.

FastAPI app over :mod:`signlab.inference.predictor`. Endpoints: ``GET /healthz``, ``GET /readyz``,
``GET /v1/models``, ``POST /v1/models/{name}:predict`` (a clip of features as JSON
``{"frames": [[...], ...]}`` or ``.npy`` bytes, a video, ``Content-Type: video/...``, or a zip of
PNG / JPEG frames, ``application/zip`` with ``?frame_rate=25``, whose features the server extracts as
the bundle's config says), ``GET /metrics`` (Prometheus). Each request's
clip is checked and preprocessed on its own (a bad clip is a 4xx naming the problem); the model
work of concurrent requests to one model is gathered into one batch (up to ``max_batch``,
waiting at most ``max_wait_ms`` for more) and run off the event loop. Errors are JSON:
``{"error": ..., "limit": ..., "value": ...}``. With an API key, ``/v1/*`` and ``/metrics`` need
``Authorization: Bearer KEY`` (compared in constant time).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from fastapi import FastAPI, Path as PathParam, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from signlab.data.features import FeatureError
from signlab.errors import SignlabError
from signlab.inference.predictor import Answer, Predictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 32 * 2**20
    max_frames: int = 3000  # two minutes at 25 fps
    max_video_s: float = 120.0
    max_batch: int = 16
    max_wait_ms: float = 10.0
    timeout_s: float = 60.0


# ----------------------------------------------------------------------------- the contract (OpenAPI)


class ErrorBody(BaseModel):
    """Every error: what went wrong, and the limit or the kind of problem where there is one."""

    error: str
    limit: str | None = Field(None, description="the limit the request passed (max_body_bytes, max_frames, ...)")
    value: float | None = Field(None, description="that limit's value")
    kind: str | None = Field(None, description="the kind of problem with the clip (wrong_dim, nan, too_short, ...)")
    models: list[str] | None = Field(None, description="404: the models served")


class ModelInfo(BaseModel):
    name: str
    task: str = Field(description="the task the model does (gloss, sentence, isolated, ...): its answers' shape")
    feature_kind: str
    feature_dim: int
    vocabulary_size: int
    metrics: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelInfo]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {401: "missing or wrong API key", 404: "no model of that name", 413: "over a limit (body size, frames, "
               "video length)", 415: "a content type the service does not read", 422: "a clip it cannot use (wrong "
               "width, NaN, corrupt video, bad JSON)", 500: "the model failed on the request's batch",
               504: "the model did not answer within timeout_s"}
    return {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}


BINARY = {"schema": {"type": "string", "format": "binary"}}
PREDICT_BODY = {
    "parameters": [{"name": "frame_rate", "in": "query", "required": False, "description": "application/zip: the "
                    "frames' rate a second", "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000,
                                                         "default": 25}}],
    "requestBody": {"required": True, "description": "one clip: features (JSON or .npy, (T, D) float32, D the "
                    "model's feature_dim), a video, or a zip of PNG / JPEG frames", "content": {
        "application/json": {"schema": {"type": "object", "required": ["frames"], "properties": {"frames": {
            "type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "number"}}}}}},
        "application/octet-stream": BINARY, "application/x-npy": BINARY, "video/*": BINARY, "application/zip": BINARY}},
}


class HTTPError(Exception):
    def __init__(self, status: int, message: str, **details: Any):
        self.status, self.body = status, {"error": message, **details}


class MicroBatcher:
    """Gathers the prepared clips of concurrent requests to one model into batches: after the
    first clip of a batch it waits at most ``max_wait_ms`` for more, whether or not other requests
    are on their way: clients send their next request just after an answer, so waiting only while
    others are being read costs more throughput than it saves a lone request (README, design notes)."""

    def __init__(self, predictor: Predictor, limits: Limits, batch_sizes: Histogram):
        self.predictor, self.limits, self.batch_sizes = predictor, limits, batch_sizes
        self.queue: asyncio.Queue[tuple[Any, asyncio.Future]] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, clip: Any) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((clip, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.limits.max_wait_ms / 1000
            while len(batch) < self.limits.max_batch and (left := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            self.batch_sizes.labels(self.predictor.name).observe(len(batch))
            try:
                answers = await asyncio.to_thread(self.predictor.predict, [clip for clip, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure, the loop goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(batch, answers):
                if not future.done():
                    future.set_result(answer)


def create_app(predictors: Sequence[Predictor], api_key: str | None = None, limits: Limits = Limits()) -> FastAPI:
    models = {p.name: p for p in predictors}
    registry = CollectorRegistry()
    requests = Counter("signlab_requests", "Requests by endpoint, model and status code", ["endpoint", "model", "code"],
                       registry=registry)
    latency = Histogram("signlab_request_seconds", "Request latency", ["endpoint", "model"], registry=registry)
    batch_sizes = Histogram("signlab_batch_size", "Clips per model call", ["model"], registry=registry,
                            buckets=(1, 2, 4, 8, 16, 32, 64))
    batchers = {name: MicroBatcher(p, limits, batch_sizes) for name, p in models.items()}

    async def lifespan(app: FastAPI):
        for b in batchers.values():
            b.start()
        yield
        for b in batchers.values():
            b.task.cancel()

    app = FastAPI(title="signlab", summary="Sign language recognition and sentence retrieval", lifespan=lifespan)
    app.state.models = [f"{p.name} ({p.task}, {p.kind.name})" for p in models.values()]

    @app.exception_handler(HTTPError)
    async def _error(request: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise HTTPError(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY'")

    @app.get("/healthz", responses={200: {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"status": {"type": "string"}}}}}}})
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    ready_schema = {"content": {"application/json": {"schema": {"type": "object", "properties": {
        "ready": {"type": "boolean"}, "models": {"type": "array", "items": {"type": "string"}}}}}}}

    @app.get("/readyz", response_class=JSONResponse, responses={200: ready_schema, 503: {**ready_schema,
                                                                "description": "a model's batcher is not running"}})
    async def readyz() -> JSONResponse:
        ready = all(b.task is not None and not b.task.done() for b in batchers.values())
        return JSONResponse({"ready": ready, "models": sorted(models)}, status_code=200 if ready else 503)

    auth_errors = (401,) if api_key is not None else ()
    schemas = tuple(dict.fromkeys(type(p).answer_schema for p in models.values())) or (Answer,)
    answers = Union[schemas]  # noqa: UP007 - built from the served models' tasks

    @app.get("/v1/models", response_model=ModelList, responses=_errors(*auth_errors))
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"models": [p.info() for p in models.values()]}

    @app.post("/v1/models/{name}:predict", response_class=JSONResponse, openapi_extra=PREDICT_BODY,
              responses={200: {"model": answers, "description": "the model's answer; its task says which"},
                         **_errors(*auth_errors, 404, 413, 415, 422, 500, 504)})
    async def predict(request: Request, name: str = PathParam(description="a served model's name",
                                                              json_schema_extra={"enum": sorted(models)})) -> JSONResponse:
        started, code = time.perf_counter(), 500
        try:
            authorize(request)
            if name not in models:
                raise HTTPError(404, f"no model named {name!r}", models=sorted(models))
            features, clip = await read_clip(request, models[name], limits)
            try:
                answer = await asyncio.wait_for(batchers[name].submit(clip), limits.timeout_s)
            except asyncio.TimeoutError:
                raise HTTPError(504, f"the model did not answer within {limits.timeout_s:g} s", limit="timeout_s",
                                value=limits.timeout_s) from None
            except Exception as exc:  # noqa: BLE001 - the client gets JSON, the log gets the traceback
                log.exception("model %s failed on a batch", name)
                raise HTTPError(500, f"the model failed on this request's batch ({type(exc).__name__}); "
                                     "the server log has the details") from None
            code = 200
            return JSONResponse({"model": name, "task": models[name].task, "frames": len(features), **answer})
        except HTTPError as exc:
            code = exc.status
            raise
        finally:
            requests.labels("predict", name if name in models else "", str(code)).inc()
            latency.labels("predict", name if name in models else "").observe(time.perf_counter() - started)

    @app.get("/metrics", response_class=Response, responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
        **_errors(*auth_errors)})
    async def metrics(request: Request) -> Response:
        authorize(request)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def read_clip(request: Request, predictor: Predictor, limits: Limits) -> tuple[np.ndarray, Any]:
    """The request's features (JSON, ``.npy`` or a video) within the limits, and the clip prepared
    for ``predictor``."""
    body, content_type = await read_body(request, limits), request.headers.get("content-type", "")
    if content_type.startswith(("video/", "application/zip")):
        rate = request.query_params.get("frame_rate", "25")
        try:
            frame_rate = float(rate)
        except ValueError:
            frame_rate = float("nan")
        if not 0 < frame_rate <= 1000:  # NaN fails too
            raise HTTPError(422, f"frame_rate={rate!r}: give the frames' rate a second, a number in (0, 1000]")
        features = await asyncio.to_thread(video_clip, body, predictor, limits, content_type.startswith("video/"),
                                           frame_rate)
    else:
        features = parse_clip(body, content_type)
    if features.ndim == 2 and len(features) > limits.max_frames:
        raise HTTPError(413, f"the clip has {len(features)} frames, more than the limit", limit="max_frames",
                        value=limits.max_frames)
    try:
        return features, predictor.prepare(features, "the request's features")
    except FeatureError as exc:
        raise HTTPError(422, str(exc), kind=exc.kind) from None


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused (413) as soon as it passes ``max_body_bytes``, declared or not."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise HTTPError(413, f"the body is {int(declared)} bytes, more than the limit", limit="max_body_bytes",
                        value=limits.max_body_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise HTTPError(413, "the body is larger than the limit", limit="max_body_bytes", value=limits.max_body_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_clip(body: bytes, content_type: str) -> np.ndarray:
    """A (T, D) float32 array from a JSON ``{"frames": [[...]]}`` or ``.npy`` body (never pickle)."""
    if content_type.startswith("application/json"):
        try:
            frames = json.loads(body)["frames"]
            with np.errstate(over="ignore"):  # numbers past float32 become inf, which the clip check refuses
                features = np.asarray(frames, dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise HTTPError(422, f"the JSON body must be {{\"frames\": [[number, ...], ...]}} ({type(exc).__name__}: "
                                 f"{str(exc)[:120]})") from None
    elif content_type.startswith(("application/octet-stream", "application/x-npy")):
        try:
            features = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise HTTPError(422, f"the body is not a .npy array ({str(exc)[:120]})") from None
        if not isinstance(features, np.ndarray):  # a zip body reads as an .npz archive of several arrays
            raise HTTPError(422, "the body is an .npz archive: send one (T, D) array as .npy bytes (numpy.save)")
    else:
        raise HTTPError(415, f"content type {content_type or '(none)'!r}: send application/json with "
                             "{\"frames\": [[...]]}, application/octet-stream with .npy bytes, video/..., or "
                             "application/zip with PNG / JPEG frames")
    return features


def video_clip(body: bytes, predictor: Predictor, limits: Limits, is_video: bool = True,
               frame_rate: float = 25.0) -> np.ndarray:
    """Features of an uploaded video (or zip of frames at ``frame_rate``), extracted as the bundle's
    config says, in a private temporary folder that is always removed. Nothing in the request names
    a server path, and errors do not show the temporary one."""
    from signlab.extract.pipeline import video_features  # PyAV and the extractors load with the first video
    from signlab.extract.video import probe

    what = "the uploaded video" if is_video else "the uploaded frames"
    with tempfile.TemporaryDirectory(prefix="signlab-upload-") as tmp:  # mode 0700
        path = Path(tmp) / "upload"
        if is_video:
            path.write_bytes(body)
        else:
            unzip_frames(body, path, limits, frame_rate)
        try:
            info = probe(path, frame_rate)
            if info.frames and info.frames / info.fps > limits.max_video_s:
                raise HTTPError(413, f"the video lasts {info.frames / info.fps:.1f} s, more than the limit",
                                limit="max_video_s", value=limits.max_video_s)
            return video_features(path, predictor.kind, predictor.config.extract, frame_rate=frame_rate).features
        except SignlabError as exc:
            raise HTTPError(422, str(exc).replace(str(path), what)) from None


def unzip_frames(body: bytes, folder: Path, limits: Limits, frame_rate: float) -> None:
    """The PNG / JPEG members of a zip into ``folder`` under their own file names (folders inside the
    zip are ignored, so no name can leave ``folder``); more frames than ``max_video_s`` allows, or
    more bytes unpacked than ``max_body_bytes`` x 4, is a 413 before anything is unpacked."""
    import zipfile

    from signlab.extract.video import IMAGE_EXTENSIONS

    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = [m for m in archive.infolist() if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_EXTENSIONS]
    except (zipfile.BadZipFile, ValueError) as exc:
        raise HTTPError(422, f"the body is not a zip of frames ({exc})") from None
    names = [Path(m.filename).name for m in members]
    if not members:
        raise HTTPError(422, "the zip holds no PNG or JPEG frames")
    if len(set(names)) < len(names):
        raise HTTPError(422, "two frames in the zip have the same file name: send one folder of frames")
    if len(members) / frame_rate > limits.max_video_s:
        raise HTTPError(413, f"{len(members)} frames at {frame_rate:g} a second last more than the limit",
                        limit="max_video_s", value=limits.max_video_s)
    if sum(m.file_size for m in members) > 4 * limits.max_body_bytes:
        raise HTTPError(413, "the frames unpack to more than four times the body limit", limit="max_body_bytes",
                        value=limits.max_body_bytes)
    folder.mkdir()
    try:
        for member, name in zip(members, names):
            (folder / name).write_bytes(archive.read(member))  # reads at most the declared size, CRC checked
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise HTTPError(422, f"a frame in the zip cannot be unpacked ({exc})") from None


SETTINGS_ENV = "SIGNLAB_SERVE_SETTINGS"  # how `signlab serve --workers N` tells each worker process what to serve


def load_app(runs: Sequence[str | Path], device: str = "cpu", backend: str = "torch", api_key_file: str | None = None,
             limits: dict[str, Any] | None = None) -> FastAPI:
    """The app serving the bundles ``runs``: what ``signlab serve`` runs, in one process or in each worker."""
    from signlab.tasks import load_predictor

    names = [Path(r).name for r in runs]
    if len(set(names)) < len(names):
        raise SignlabError(f"two bundles share a folder name ({', '.join(names)}): a model is named by its folder")
    key = None
    if api_key_file is not None:
        try:
            key = Path(api_key_file).read_text().strip()
        except OSError as exc:
            raise SignlabError(f"cannot read the API key file {api_key_file}: {exc.strerror or exc}") from None
        if not key:
            raise SignlabError(f"the API key file {api_key_file} is empty")
    predictors = [load_predictor(r, device=device, backend=backend) for r in runs]
    return create_app(predictors, key, Limits(**(limits or {})))


def app_from_env() -> FastAPI:
    """:func:`load_app` with the settings the parent ``signlab serve`` put in the environment."""
    return load_app(**json.loads(os.environ[SETTINGS_ENV]))
