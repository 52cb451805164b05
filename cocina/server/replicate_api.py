"""The Replicate HTTP API v1, enough for the official `replicate` Python client 1.x to work with a base URL.

The server serves one model, `settings.model_ref`, with one version (`settings.version_id`, a content hash of the
project). Predictions can be created by version, by model or by deployment (any deployment name routes to the one
model). Errors are problem+json (see `errors.py`).

`Prefer: wait[=N]` holds the answer until the prediction finishes or N seconds (at most 60) pass. When time runs out
the prediction is shown as `starting` without output: the 1.x client's `run()` treats any other status as terminal,
and its output iterator skips output already present in the creation answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from cocina.server.auth import check_auth
from cocina.server.backend import PredictionStatus
from cocina.server.bodies import dumps, parse_body, parse_duration_s, prefer_tokens, sse_event
from cocina.server.errors import ApiError, BadRequest, NotFound, RequestInvalid
from cocina.server.files import FileStore
from cocina.server.runtime import Runtime
from cocina.server.settings import ServerSettings
from cocina.server.store import PredictionRecord

router = APIRouter(prefix="/v1", dependencies=[Depends(check_auth)])

COG_VERSION = "0.16.0"  # the Cog release whose HTTP behaviour cocina follows
PAGE_SIZE = 100
MAX_WAIT_S = 60


class ReplicatePredictionRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    version: str | None = None
    input: dict[str, Any] = pydantic.Field(default_factory=dict)
    webhook: pydantic.AnyHttpUrl | None = None
    webhook_completed: pydantic.AnyHttpUrl | None = None
    webhook_events_filter: list[Literal["start", "output", "logs", "completed"]] | None = None
    stream: bool | None = None


def _settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def replicate_prediction(
    rec: PredictionRecord, settings: ServerSettings, base_url: str | None
) -> dict[str, Any]:
    """Replicate's prediction object."""
    base = (base_url or settings.base_url).rstrip("/")
    return {
        "id": rec.id,
        "model": settings.model_ref,
        "version": settings.version_id,
        "input": rec.input,
        "output": rec.output,
        "logs": rec.logs,
        "error": rec.error,
        "status": rec.status.value,
        "source": "api",
        "data_removed": rec.data_removed,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "completed_at": rec.completed_at,
        "metrics": dict(rec.metrics),
        "urls": {
            "get": f"{base}/v1/predictions/{rec.id}",
            "cancel": f"{base}/v1/predictions/{rec.id}/cancel",
            "stream": f"{base}/v1/predictions/{rec.id}/stream",
        },
    }


def _version_object(request: Request) -> dict[str, Any]:
    settings = _settings(request)
    runtime = _runtime(request)
    return {
        "id": settings.version_id,
        "created_at": runtime.setup_started_at,
        "cog_version": COG_VERSION,
        "openapi_schema": request.app.state.backend.openapi_schema if runtime.setup else {},
    }


def _check_model(request: Request, owner: str, name: str) -> None:
    settings = _settings(request)
    if (owner, name) != (settings.model_owner, settings.model_name):
        raise NotFound(f"Model {owner}/{name} not found; this server serves {settings.model_ref}.")


def _check_version(request: Request, ref: str | None) -> None:
    """`version` may be the id, `owner/name:id` or `owner/name`."""
    settings = _settings(request)
    if ref is None:
        raise RequestInvalid([{"loc": ["body", "version"], "msg": "Field required", "type": "missing"}])
    model, _, version = ref.partition(":")
    if "/" in model:
        owner, _, name = model.partition("/")
        _check_model(request, owner, name)
        if not version:
            return
    else:
        version = ref
    if version != settings.version_id:
        raise NotFound(f"Version {version} not found; this server serves version {settings.version_id}.")


# ---- predictions
# ---------------------------------------------------------------------------------------------


@router.post("/predictions")
async def create_prediction(request: Request) -> Response:
    body = await parse_body(request, ReplicatePredictionRequest)
    _check_version(request, body.version)
    return await _create(request, body)


@router.post("/models/{owner}/{name}/predictions")
async def create_model_prediction(request: Request, owner: str, name: str) -> Response:
    _check_model(request, owner, name)
    return await _create(request, await parse_body(request, ReplicatePredictionRequest))


@router.post("/deployments/{owner}/{name}/predictions")
async def create_deployment_prediction(request: Request, owner: str, name: str) -> Response:
    return await _create(request, await parse_body(request, ReplicatePredictionRequest))


async def _create(request: Request, body: ReplicatePredictionRequest) -> Response:
    runtime = _runtime(request)
    deadline = None
    cancel_after = request.headers.get("cancel-after")
    if cancel_after is not None:
        seconds = parse_duration_s(cancel_after)
        if seconds is None or seconds <= 0:
            raise BadRequest(f"Invalid Cancel-After duration {cancel_after!r}; use e.g. 30s, 5m or 1h30m.")
        deadline = time.time() + seconds
    webhook = body.webhook or body.webhook_completed
    events = body.webhook_events_filter
    if body.webhook is None and body.webhook_completed is not None:
        events = ["completed"]
    rec, _ = runtime.submit(
        body.input,
        surface="replicate",
        webhook=str(webhook) if webhook else None,
        webhook_events_filter=list(events or []),
        deadline=deadline,
    )
    headers: dict[str, str] = {}
    prefer = prefer_tokens(request)
    if "wait" in prefer:
        wait_s = _wait_seconds(prefer["wait"])
        headers["Preference-Applied"] = f"wait={wait_s}"
        final = await runtime.wait(rec.id, wait_s)
        rec = final or rec
        if not rec.status.is_terminal:
            shown = replicate_prediction(rec, _settings(request), _base(request))
            # Shown as it was at `starting` (no output yet): the client's output iterator skips the output the
            # creation answer already carries, so partial output here would be lost to it.
            shown["status"] = PredictionStatus.STARTING.value
            shown["output"] = None
            return JSONResponse(shown, status_code=201, headers=headers)
    return JSONResponse(
        replicate_prediction(rec, _settings(request), _base(request)), status_code=201, headers=headers
    )


def _wait_seconds(value: str | None) -> int:
    if value is None:
        return MAX_WAIT_S
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"Invalid Prefer: wait={value}; use an integer number of seconds (1-60).") from None
    if not 1 <= n <= MAX_WAIT_S:
        raise BadRequest(f"Invalid Prefer: wait={value}; it must be between 1 and {MAX_WAIT_S} seconds.")
    return n


@router.get("/predictions")
async def list_predictions(request: Request, cursor: str | None = None) -> dict[str, Any]:
    before = None
    if cursor is not None:
        try:
            before = int(cursor)
        except ValueError:
            raise BadRequest("Invalid cursor.") from None
    runtime = _runtime(request)
    records = runtime.store.page(before, PAGE_SIZE + 1)
    base = _base(request)
    page = records[:PAGE_SIZE]
    # The store has the durable state; an active prediction's freshest state is in memory.
    shown = [runtime.get(r.id) or r for r in page]
    next_url = f"{base}/v1/predictions?cursor={page[-1].seq}" if len(records) > PAGE_SIZE else None
    return {
        "next": next_url,
        "previous": None,
        "results": [replicate_prediction(r, _settings(request), base) for r in shown],
    }


@router.get("/predictions/{prediction_id}")
async def get_prediction(request: Request, prediction_id: str) -> dict[str, Any]:
    rec = _runtime(request).get(prediction_id)
    if rec is None:
        raise NotFound("Prediction not found.")
    return replicate_prediction(rec, _settings(request), _base(request))


@router.post("/predictions/{prediction_id}/cancel")
async def cancel_prediction(request: Request, prediction_id: str) -> dict[str, Any]:
    rec = await _runtime(request).cancel(prediction_id)
    if rec is None:
        raise NotFound("Prediction not found.")
    return replicate_prediction(rec, _settings(request), _base(request))


@router.get("/predictions/{prediction_id}/stream")
async def stream_prediction(request: Request, prediction_id: str) -> Response:
    runtime = _runtime(request)
    if runtime.get(prediction_id) is None:
        raise NotFound("Prediction not found.")
    return StreamingResponse(
        _stream(runtime, prediction_id), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def _stream(runtime: Runtime, prediction_id: str) -> AsyncIterator[bytes]:
    """Replicate's stream: `output` (text), `logs`, `error`, `done`, each with an `id:` (the client needs
    it)."""
    n = 0
    async for ev in runtime.events(prediction_id):
        n += 1
        if ev.kind == "output":
            chunk = ev.data["chunk"]
            yield sse_event("output", chunk if isinstance(chunk, str) else dumps(chunk), str(n))
        elif ev.kind == "log":
            yield sse_event("logs", ev.data["data"].rstrip("\n"), str(n))
        elif ev.kind == "completed":
            rec = runtime.get(prediction_id)
            if rec is not None and rec.status is PredictionStatus.FAILED:
                yield sse_event("error", dumps({"detail": rec.error or "Prediction failed"}), str(n))
                n += 1
            reason = (
                {"reason": "canceled"} if rec is not None and rec.status is PredictionStatus.CANCELED else {}
            )
            yield sse_event("done", dumps(reason), str(n))


# ---- models and versions
# -------------------------------------------------------------------------------------


@router.get("/models/{owner}/{name}")
async def get_model(request: Request, owner: str, name: str) -> dict[str, Any]:
    _check_model(request, owner, name)
    settings = _settings(request)
    counts = _runtime(request).store.count_by_status()
    return {
        "url": f"{_base(request)}/v1/models/{settings.model_ref}",
        "owner": settings.model_owner,
        "name": settings.model_name,
        "description": None,
        "visibility": "private",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": sum(counts.values()),
        "cover_image_url": None,
        "default_example": None,
        "latest_version": _version_object(request),
    }


@router.get("/models/{owner}/{name}/versions")
async def list_versions(request: Request, owner: str, name: str) -> dict[str, Any]:
    _check_model(request, owner, name)
    return {"next": None, "previous": None, "results": [_version_object(request)]}


@router.get("/models/{owner}/{name}/versions/{version_id}")
async def get_version(request: Request, owner: str, name: str, version_id: str) -> dict[str, Any]:
    _check_model(request, owner, name)
    if version_id != _settings(request).version_id:
        raise NotFound(f"Version {version_id} not found.")
    return _version_object(request)


# ---- files
# ---------------------------------------------------------------------------------------------------


def _files(request: Request) -> FileStore:
    files: FileStore = request.app.state.files
    return files


@router.post("/files")
async def create_file(request: Request) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("Upload the file as multipart/form-data with a `content` field.")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except ApiError:
        raise  # 413 from the body limit
    except Exception:
        raise BadRequest("The multipart body could not be parsed.") from None
    content = form.get("content")
    if content is None or isinstance(content, str):
        raise BadRequest("The multipart body has no `content` file field.")
    metadata: dict[str, Any] = {}
    raw_meta = form.get("metadata")
    if isinstance(raw_meta, str) and raw_meta:
        try:
            metadata = json.loads(raw_meta)
        except ValueError:
            raise BadRequest("`metadata` must be a JSON object.") from None
        if not isinstance(metadata, dict):
            raise BadRequest("`metadata` must be a JSON object.")
    data = await content.read()
    obj = _files(request).save(
        data,
        name=content.filename or "file",
        content_type=content.content_type or "application/octet-stream",
        metadata=metadata,
        base_url=_base(request),
    )
    await form.close()
    return JSONResponse(obj, status_code=201)


@router.get("/files/{file_id}")
async def get_file(request: Request, file_id: str) -> dict[str, Any]:
    obj = _files(request).get(file_id, _base(request))
    if obj is None:
        raise NotFound("File not found.")
    return obj


@router.get("/files/{file_id}/download")
async def download_file(request: Request, file_id: str) -> Response:
    files = _files(request)
    obj = files.get(file_id)
    path = files.content_path(file_id)
    if obj is None or path is None:
        raise NotFound("File not found.")
    return FileResponse(path, media_type=obj["content_type"], filename=obj["name"])


@router.delete("/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> Response:
    if not _files(request).delete(file_id):
        raise NotFound("File not found.")
    return Response(status_code=204)
