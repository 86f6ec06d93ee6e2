"""The HTTP API (FastAPI): models from the registry, jobs in the store, workers that run them.

``create_app(ServiceConfig(...))`` builds the app; ``noisecraft serve`` runs it with uvicorn. Every model and every
parameter comes from the modality registry and the pipeline protocol (``describe``, ``json_schema``,
``check_params``), so a new modality is served with no change here. OpenAPI docs: ``/docs``. The web studio
(``static/``: plain HTML, JS and CSS over this API, no build step) is served at ``/``.

Bad input is always a 4xx whose ``detail`` names what was wrong (the parameter, the limit); only bugs are 500s.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import logging
import math
import mimetypes
import os
import secrets
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import noisecraft
from noisecraft import protocol, registry
from noisecraft.protocol import ParameterError, Refused
from noisecraft.service.models import Catalogue, PipelineCache
from noisecraft.service.store import FINISHED, JobStore, QueueFull, valid_job_id
from noisecraft.service.worker import WorkerPool

log = logging.getLogger("noisecraft.service")

MEDIA_TYPES = {".jsonl": "application/jsonl", ".csv": "text/csv; charset=utf-8", ".json": "application/json",
               ".txt": "text/plain; charset=utf-8", ".glb": "model/gltf-binary", ".obj": "model/obj",
               ".ply": "application/x-ply", ".sdf": "chemical/x-mdl-sdfile", ".xyz": "chemical/x-xyz",
               ".mp4": "video/mp4", ".webm": "video/webm", ".npz": "application/octet-stream"}
UPLOAD_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "GIF": "gif"}
STATIC_DIR = Path(__file__).parent / "static"
# the studio loads only its own files; results are shown through blob: URLs (fetched with the bearer token)
STUDIO_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


@dataclass
class ServiceConfig:
    """Everything ``noisecraft serve`` takes (see its ``--help``)."""

    data_dir: Path = Path("noisecraft-data")
    database: Optional[str] = None  # SQLAlchemy URL; default: SQLite file in data_dir
    models_dir: Optional[Path] = None
    include_shipped: bool = True
    token: Optional[str] = None
    workers: int = 1  # worker threads per device in the API process; 0 = external workers only
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    max_queue: int = 100
    max_upload_bytes: int = 8 * 1024 * 1024
    max_upload_pixels: int = 4096 * 4096
    max_body_bytes: int = 32 * 1024 * 1024
    lease: float = 30.0  # seconds without a heartbeat after which a running job is re-queued
    poll: float = 0.5  # how often idle workers and event streams look at the store
    events_poll: float = 0.1


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra


class JobRequest(BaseModel):
    """A generation request. ``params`` are the model's parameters (``GET /v1/models``); image parameters take
    base64 (or a ``data:image/...;base64,`` URL)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"model": "shapes_t2i", "params": {"prompt": "a red circle", "n": 2, "steps": 8}, "seed": 0}]})
    model: str = Field(description="Model name from GET /v1/models.", max_length=200)
    params: dict[str, Any] = Field(default_factory=dict, description="The model's parameters (GET /v1/models).")
    seed: Optional[int] = Field(default=None, ge=0, lt=2**63, strict=True,
                                description="Seed; null draws a random one (recorded in the job).")


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def media_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def job_json(job: dict, store: JobStore) -> dict:
    """A job as the API shows it."""
    results = []
    if job["state"] == "succeeded":
        folder = store.results_dir(job["id"])
        for index, name in enumerate(job["results"]):
            path = folder / name
            results.append({"index": index, "name": name, "url": f"/v1/jobs/{job['id']}/results/{index}",
                            "media_type": media_type(name),
                            "bytes": path.stat().st_size if path.is_file() else None})
    started, finished = job["started_at"], job["finished_at"]
    return {
        "id": job["id"], "model": job["model"], "modality": job["modality"], "state": job["state"],
        "position": job["position"],
        "progress": {"done": job["progress_done"], "total": job["progress_total"]},
        "timings": {"queued_at": _iso(job["queued_at"]), "started_at": _iso(started), "finished_at": _iso(finished),
                    "seconds": job["seconds"],
                    "wall_seconds": round(finished - started, 3) if started and finished else None},
        "seed": job["seed"], "seed_was_random": job["seed_was_random"], "params": job["params"],
        "cancel_requested": job["cancel_requested"], "results": results, "error": job["error"],
        "refusal": job["refusal"], "notes": job["notes"], "parameters": job["record"], "attempts": job["attempts"],
    }


def _validation_message(errors: list[dict]) -> tuple[int, str]:
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":
            context = error.get("ctx", {}).get("error", "")
            return 400, f"malformed JSON in the request body{f': {context}' if context else ''}"
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        if error.get("type") == "extra_forbidden":
            parts.append(f"{where}: unknown field (a request takes model, params, seed)")
        elif error.get("type") == "missing":
            parts.append(f"{where}: required")
        else:
            got = error.get("input")
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            parts.append(f"{where}: {error.get('msg')} (got {shown[:80]})")
    return 422, "; ".join(parts) or "invalid request"


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before the app reads it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(send)
            if not message.get("more_body"):
                break
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _refuse(self, send):
        response = JSONResponse({"detail": f"request body too large: the limit is {self.limit} bytes "
                                           f"(--max-body-bytes)"}, status_code=413)
        await response({"type": "http"}, None, send)


def create_app(config: ServiceConfig | None = None, *, catalogue: Catalogue | None = None) -> FastAPI:
    config = config or ServiceConfig()
    store = JobStore(config.data_dir, config.database, lease=config.lease)
    cache = PipelineCache()
    catalogue = catalogue or Catalogue(config.models_dir, include_shipped=config.include_shipped, cache=cache)
    # parameters are checked on the API's first device when it runs workers, else on the CPU (no GPU memory)
    check_device = config.devices[0] if config.workers > 0 else "cpu"
    pool = WorkerPool(store, devices=config.devices, count=config.workers, cache=catalogue.cache, poll=config.poll)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        requeued = store.requeue_lost()
        if requeued:
            log.warning("re-queued %d job(s) left running by a worker that is gone: %s", len(requeued),
                        ", ".join(requeued))
        app.state.requeued_at_start = requeued
        pool.start()
        try:
            yield
        finally:
            await run_in_threadpool(pool.close)
            store.close()

    app = FastAPI(title="noisecraft generation service", version=noisecraft.__version__, lifespan=lifespan,
        description="Queue generation jobs for any noisecraft model (every registered modality), follow their "
                    "progress, cancel them and download their results. Authenticate with `Authorization: Bearer "
                    "<token>` when the server was started with --token.")
    app.state.config, app.state.store, app.state.catalogue, app.state.pool = config, store, catalogue, pool
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError):
        return JSONResponse({"detail": error.detail, **error.extra}, status_code=error.status,
                            headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError):
        status, message = _validation_message(error.errors())
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, error: Exception):
        log.exception("internal error", exc_info=error)
        return JSONResponse({"detail": "internal server error; the server log has the details"}, status_code=500)

    def authorize(request: Request) -> None:
        if not config.token:
            return
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            raise ApiError(401, "missing bearer token: send the header 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(credentials.strip().encode(), config.token.encode()):
            raise ApiError(401, "wrong bearer token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    auth = [Depends(authorize)]

    def get_job(job_id: str) -> dict:
        if not valid_job_id(job_id):
            raise ApiError(400, f"invalid job id {job_id[:40]!r}: job ids are 32 lowercase hexadecimal digits")
        job = store.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id}")
        return job

    def model_entry(name: str):
        try:
            return catalogue.entry(name)
        except KeyError:
            known = ", ".join(catalogue.names()) or "none (start the server with --models DIR)"
            raise ApiError(404, f"unknown model {name[:100]!r}; known models: {known}") from None

    def load_pipeline(name: str):
        model_entry(name)
        try:
            return catalogue.pipeline(name, check_device)
        except registry.MissingDependency as error:
            raise ApiError(503, f"model {name!r} cannot be loaded on this server: {error}") from None

    # --- the web studio (no token needed for the page itself: every API call it makes sends the token) ---

    @app.get("/", include_in_schema=False)
    def studio() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=STUDIO_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # --- endpoints ---

    @app.get("/v1/health", tags=["service"])
    def health() -> dict:
        """Liveness and queue size (no token needed)."""
        counts = store.counts()
        return {"status": "ok", "queued": counts["queued"], "running": counts["running"],
                "workers": len(pool.workers), "models": len(catalogue.names())}

    @app.get("/v1/models", tags=["models"], dependencies=auth)
    def list_models() -> dict:
        """Every model: name, modality, parameters with their limits, and the params' JSON schema."""
        models = []
        for name in catalogue.names():
            try:
                models.append(catalogue.describe(name, check_device))
            except (registry.MissingDependency, ValueError, OSError) as error:
                entry = catalogue.entry(name)
                models.append({"name": name, "modality": entry.modality, "error": str(error)})
        return {"models": models}

    @app.get("/v1/models/{name}", tags=["models"], dependencies=auth)
    def get_model(name: str) -> dict:
        """One model: its modality, parameters and the params' JSON schema."""
        load_pipeline(name)
        return catalogue.describe(name, check_device)

    @app.post("/v1/jobs", status_code=202, tags=["jobs"], dependencies=auth)
    def submit(request: JobRequest) -> JSONResponse:
        """Queue a job; 202 with its id and queue position. Bad parameters are 422 naming the parameter; a
        request refused by a check is 422 with the reason; a full queue is 429 with Retry-After."""
        entry = model_entry(request.model)
        queued = store.queued_count()
        if queued >= config.max_queue:  # before the checks: a client retrying a full queue costs the workers little
            raise ApiError(429, str(QueueFull(config.max_queue, queued)), {"Retry-After": str(_retry_after(queued))})
        pipeline = load_pipeline(request.model)
        stored, checked = _uploads(pipeline, request.params)
        try:
            resolved = pipeline.check_params(checked)
            protocol.run_checks("before", pipeline, resolved)
        except ParameterError as error:
            raise ApiError(422, str(error), parameter=error.name) from None
        except Refused as refused:
            raise ApiError(422, f"refused: {refused.reason}", refused=True, reason=refused.reason,
                           check=refused.check) from None
        seed, random_seed = request.seed, request.seed is None
        if random_seed:
            seed = secrets.randbits(63)
        try:
            job = store.create(model=entry.name, modality=entry.modality, model_path=str(entry.path),
                               params=stored, seed=seed, seed_was_random=random_seed, max_queue=config.max_queue)
        except QueueFull as full:
            raise ApiError(429, str(full), {"Retry-After": str(_retry_after(full.queued))}) from None
        pool.notify()
        return JSONResponse({"id": job["id"], "state": job["state"], "position": job["position"], "seed": seed,
                             "url": f"/v1/jobs/{job['id']}"}, status_code=202,
                            headers={"Location": f"/v1/jobs/{job['id']}"})

    def _retry_after(queued: int) -> int:
        mean = store.recent_seconds() or 5.0
        return int(min(3600, max(1, math.ceil(mean * queued / max(1, len(pool.workers))))))

    def _uploads(pipeline, params: dict) -> tuple[dict, dict]:
        """(params as stored: uploads as ``uploads/<sha256>.<ext>``; params to check: uploads as paths)."""
        stored, checked = dict(params), dict(params)
        for param in pipeline.parameters():
            value = params.get(param.name)
            if param.kind != "image" or value is None:
                continue
            name = _save_upload(param.name, value)
            stored[param.name], checked[param.name] = name, str(store.data_dir / name)
        return stored, checked

    def _save_upload(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ApiError(422, f"parameter {name!r}: must be a base64-encoded image (or a data: URL), got "
                                f"{type(value).__name__}", parameter=name)
        if value.startswith("data:"):
            header, _, value = value.partition(",")
            if ";base64" not in header:
                raise ApiError(422, f"parameter {name!r}: a data: URL must be base64 (data:image/png;base64,...)",
                               parameter=name)
        limit = config.max_upload_bytes
        if len(value) > 4 * math.ceil(limit / 3) + 4:
            raise ApiError(413, f"parameter {name!r}: the image ({len(value)} base64 characters) is too large; the upload "
                                f"limit is {limit} bytes (--max-upload-bytes)", parameter=name)
        try:
            data = base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, f"parameter {name!r}: not valid base64", parameter=name) from None
        if len(data) > limit:
            raise ApiError(413, f"parameter {name!r}: the image is {len(data)} bytes; the upload limit is {limit} "
                                f"bytes (--max-upload-bytes)", parameter=name)
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                width, height = image.size
                if width * height > config.max_upload_pixels:
                    raise ApiError(413, f"parameter {name!r}: the image is {width}x{height} = {width * height} "
                                        f"pixels; the limit is {config.max_upload_pixels} pixels "
                                        f"(--max-upload-pixels)", parameter=name)
                if image.format not in UPLOAD_FORMATS:
                    raise ApiError(422, f"parameter {name!r}: {image.format} images are not accepted; send one of "
                                        f"{', '.join(UPLOAD_FORMATS)}", parameter=name)
                image.load()
        except ApiError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as error:
            raise ApiError(422, f"parameter {name!r}: not a readable image ({error})", parameter=name) from None
        relative = f"uploads/{hashlib.sha256(data).hexdigest()}.{UPLOAD_FORMATS[image.format]}"
        path = store.data_dir / relative
        if not path.is_file():
            temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        return relative

    @app.get("/v1/jobs", tags=["jobs"], dependencies=auth)
    def history(limit: int = Query(20, ge=1, le=100, description="Jobs per page (1 to 100)."),
                before: Optional[str] = Query(None, description="Only jobs submitted before this job id (the "
                                                                "previous page's `next`).")) -> dict:
        """Jobs, newest first, a page at a time."""
        if before is not None:
            get_job(before)
        jobs = store.list(limit=limit, before=before)
        return {"jobs": [job_json(job, store) for job in jobs],
                "next": jobs[-1]["id"] if len(jobs) == limit else None}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], dependencies=auth)
    def job_status(job_id: str) -> dict:
        """State, queue position, progress, timings, seed, params, result URLs, error or refusal reason."""
        return job_json(get_job(job_id), store)

    @app.post("/v1/jobs/{job_id}/cancel", tags=["jobs"], dependencies=auth)
    def cancel(job_id: str) -> dict:
        """Cancel: a queued job at once; a running one stops at its next step. A finished job is 409."""
        job = get_job(job_id)
        if job["state"] in FINISHED and job["state"] != "cancelled":
            raise ApiError(409, f"job {job_id} already {job['state']}; nothing to cancel")
        return job_json(store.request_cancel(job_id), store)

    @app.get("/v1/jobs/{job_id}/results/{index}", tags=["jobs"], dependencies=auth)
    def result(job_id: str, index: int) -> FileResponse:
        """Result file ``index`` (see the job's ``results``), with its media type."""
        job = get_job(job_id)
        if job["state"] != "succeeded":
            raise ApiError(409, f"job {job_id} is {job['state']}; results exist only for succeeded jobs")
        names = job["results"]
        if not 0 <= index < len(names):
            raise ApiError(404, f"job {job_id} has {len(names)} result file(s): index 0 to {len(names) - 1}")
        folder = store.results_dir(job_id).resolve()
        path = (folder / names[index]).resolve()
        if folder not in path.parents or not path.is_file():
            raise ApiError(404, f"result {index} of job {job_id} is missing from the data dir")
        return FileResponse(path, media_type=media_type(path.name), filename=path.name,
                            content_disposition_type="inline")

    @app.get("/v1/jobs/{job_id}/events", tags=["jobs"], dependencies=auth)
    async def events(job_id: str, request: Request) -> StreamingResponse:
        """Server-sent events: ``state`` on each state change, ``progress`` ({done, total}) as steps finish, and a
        final ``done`` event carrying the whole job."""
        await run_in_threadpool(get_job, job_id)

        async def stream():
            last_state, last_progress, last_sent = None, None, time.monotonic()
            while True:
                job = await run_in_threadpool(store.get, job_id)
                progress, state = (job["progress_done"], job["progress_total"]), (job["state"], job["position"])
                messages = []
                if state != last_state:
                    last_state = state
                    messages.append(_sse("state", {"state": job["state"], "position": job["position"]}))
                if progress != last_progress and progress[1]:
                    last_progress = progress
                    update = _sse("progress", {"done": progress[0], "total": progress[1]})
                    # the last steps' progress comes before the state that ends the job
                    messages.insert(0 if job["state"] in FINISHED else len(messages), update)
                for message in messages:
                    yield message
                    last_sent = time.monotonic()
                if job["state"] in FINISHED:
                    yield _sse("done", job_json(job, store))
                    return
                if await request.is_disconnected():
                    return
                if time.monotonic() - last_sent > 15:
                    yield ": keep-alive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(config.events_poll)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
