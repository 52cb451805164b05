"""Replicate's v1 routes: predictions (by version, model or deployment), models, versions, files.

Every model the server holds is a Replicate model (`owner/name`) with its version (a content hash of its
project). A prediction is created by version (`version` is the id, `owner/name:id` or `owner/name`), by model,
or by deployment (a deployment named like a model routes to it, until the hub gives deployments their own
releases). Errors are problem+json.

`Prefer: wait[=N]` holds the answer until the prediction finishes or N seconds (at most 60) pass. When time runs
out the prediction is shown as `starting` without output: the 1.x client's `run()` treats any other status as
terminal, and its output iterator skips output already present in the creation answer.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from cocina.server.bodies import dumps, parse_body, parse_duration_s, prefer_tokens, sse_event
from cocina.server.errors import ApiError, BadRequest, NotFound, RequestInvalid
from cocina.server.replicate.render import model_object, replicate_prediction, version_object
from cocina.server.state import (
    base_url,
    may_see,
    may_use_model,
    principal_of,
    serving_of,
    set_guard_headers,
)
from cocina.serving import AdmissionRequest, ServedModel, Serving
from cocina.serving.errors import ModelUnavailable
from cocina.serving.events import Completed, LogChunk, OutputChunk
from cocina.store import PredictionStatus

router = APIRouter(prefix="/v1")

PAGE_SIZE = 100
MAX_WAIT_S = 60
SCHEMA_WAIT_S = 60.0  # a version asked for before its model ever loaded: how long to wait for its schema


class ReplicatePredictionRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    version: str | None = None
    input: dict[str, Any] = pydantic.Field(default_factory=dict)
    webhook: pydantic.AnyHttpUrl | None = None
    webhook_completed: pydantic.AnyHttpUrl | None = None
    webhook_events_filter: list[Literal["start", "output", "logs", "completed"]] | None = None
    stream: bool | None = None


# ---- predictions -------------------------------------------------------------------------------------------


@router.post("/predictions")
async def create_prediction(request: Request) -> Response:
    body = await parse_body(request, ReplicatePredictionRequest)
    if body.version is None:
        raise RequestInvalid([{"loc": ["body", "version"], "msg": "Field required", "type": "missing"}])
    return await _create(request, body, body.version, "version")


@router.post("/models/{owner}/{name}/predictions")
async def create_model_prediction(request: Request, owner: str, name: str) -> Response:
    body = await parse_body(request, ReplicatePredictionRequest)
    return await _create(request, body, _model(request, owner, name).name, "model")


@router.post("/deployments/{owner}/{name}/predictions")
async def create_deployment_prediction(request: Request, owner: str, name: str) -> Response:
    body = await parse_body(request, ReplicatePredictionRequest)
    model = _model(request, owner, name, what="Deployment")
    return await _create(request, body, model.name, "deployment", deployment=model.name)


async def _create(
    request: Request,
    body: ReplicatePredictionRequest,
    ref: str,
    field: str,
    *,
    deployment: str | None = None,
) -> Response:
    serving = serving_of(request)
    deadline = None
    cancel_after = request.headers.get("cancel-after")
    if cancel_after is not None:
        seconds = parse_duration_s(cancel_after)
        if seconds is None or seconds <= 0:
            raise BadRequest(f"Invalid Cancel-After duration {cancel_after!r}; use e.g. 30s, 5m or 1h30m.")
        deadline = time.time() + seconds
    wait_s = None
    prefer = prefer_tokens(request)
    if "wait" in prefer:
        wait_s = _wait_seconds(prefer["wait"])
    webhook = body.webhook or body.webhook_completed
    events = body.webhook_events_filter
    if body.webhook is None and body.webhook_completed is not None:
        events = ["completed"]
    admitted = await serving.admit(
        AdmissionRequest(
            surface="replicate",
            input=body.input,
            model=ref,
            model_field=field,
            deployment=deployment,
            webhook=str(webhook) if webhook else None,
            webhook_events_filter=list(events or []),
            deadline=deadline,
            principal=principal_of(request),
        )
    )
    rec = admitted.record
    set_guard_headers(request, admitted.ticket, rec)
    headers: dict[str, str] = {}
    base = base_url(request)
    if wait_s is not None:
        headers["Preference-Applied"] = f"wait={wait_s}"
        rec = await serving.wait(rec.id, wait_s) or rec
        if not rec.status.is_terminal:
            shown = replicate_prediction(rec, base)
            # Shown as it was at `starting` (no output yet): the client's output iterator skips the output the
            # creation answer already carries, so partial output here would be lost to it.
            shown["status"] = PredictionStatus.STARTING.value
            shown["output"] = None
            return JSONResponse(shown, status_code=201, headers=headers)
    return JSONResponse(replicate_prediction(rec, base), status_code=201, headers=headers)


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
    serving = serving_of(request)
    principal = principal_of(request)
    own = principal.id if principal is not None and not principal.has_scope("admin") else None
    records = serving.page(before, PAGE_SIZE + 1, principal=own)
    base = base_url(request)
    page = records[:PAGE_SIZE]
    next_url = f"{base}/v1/predictions?cursor={page[-1].seq}" if len(records) > PAGE_SIZE else None
    return {"next": next_url, "previous": None, "results": [replicate_prediction(r, base) for r in page]}


@router.get("/predictions/{prediction_id}")
async def get_prediction(request: Request, prediction_id: str) -> dict[str, Any]:
    rec = serving_of(request).get(prediction_id)
    if rec is None or not may_see(request, rec):
        raise NotFound("Prediction not found.")
    set_guard_headers(request, rec=rec)
    return replicate_prediction(rec, base_url(request))


@router.post("/predictions/{prediction_id}/cancel")
async def cancel_prediction(request: Request, prediction_id: str) -> dict[str, Any]:
    serving = serving_of(request)
    if not may_see(request, serving.get(prediction_id)):
        raise NotFound("Prediction not found.")
    rec = serving.cancel(prediction_id)
    if rec is None:
        raise NotFound("Prediction not found.")
    return replicate_prediction(rec, base_url(request))


@router.get("/predictions/{prediction_id}/stream")
async def stream_prediction(request: Request, prediction_id: str) -> Response:
    serving = serving_of(request)
    rec = serving.get(prediction_id)
    if rec is None or not may_see(request, rec):
        raise NotFound("Prediction not found.")
    set_guard_headers(request, rec=rec)
    return StreamingResponse(
        _stream(serving, prediction_id), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def _stream(serving: Serving, prediction_id: str) -> AsyncIterator[bytes]:
    """Replicate's stream: `output` (text), `logs`, `error`, `done`, each with an `id:` (the client needs it)."""
    n = 0
    async for ev in serving.events(prediction_id):
        n += 1
        if isinstance(ev, OutputChunk):
            chunk = ev.value
            yield sse_event("output", chunk if isinstance(chunk, str) else dumps(chunk), str(n))
        elif isinstance(ev, LogChunk):
            yield sse_event("logs", ev.data.rstrip("\n"), str(n))
        elif isinstance(ev, Completed):
            rec = serving.get(prediction_id)
            if ev.status is PredictionStatus.FAILED:
                yield sse_event("error", dumps({"detail": (rec.error if rec else None) or "Prediction failed"}), str(n))
                n += 1
            reason = {"reason": "canceled"} if ev.status is PredictionStatus.CANCELED else {}
            yield sse_event("done", dumps(reason), str(n))


# ---- models and versions -----------------------------------------------------------------------------------


def _model(request: Request, owner: str, name: str, *, what: str = "Model") -> ServedModel:
    runtime = serving_of(request).models.by_name.get(f"{owner}/{name}")
    if runtime is None or not may_use_model(request, runtime.model.name):
        raise NotFound(f"{what} {owner}/{name} not found.")
    return runtime.model


async def _with_schema(serving: Serving, model: ServedModel) -> ServedModel:
    """The model, its schema learnt first if it never loaded (clients read a version's schema to know the
    output's shape)."""
    if model.schema is None:
        # Else shown with an empty schema; /health-check and the prediction errors say why.
        with contextlib.suppress(ModelUnavailable):
            await model.wait_schema(min(SCHEMA_WAIT_S, serving.config.load_timeout_s))
    return model


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Replicate's model page (`results`) and OpenAI's model list (`data`, language models only): both
    official clients call this path."""
    serving = serving_of(request)
    counts = serving.run_counts()
    base = base_url(request)
    results = [
        model_object(rt.model, base, counts.get(rt.model.name, 0))
        for rt in serving.models
        if may_use_model(request, rt.model.name)
    ]
    data = []
    for rt in serving.models.language_models():
        if not may_use_model(request, rt.model.name):
            continue
        created = int(datetime.fromisoformat(rt.model.version_created_at).timestamp())
        for model_id in (rt.model.name, *rt.model.spec.aliases):
            data.append({"id": model_id, "object": "model", "created": created, "owned_by": rt.model.spec.owner})
    return {"object": "list", "data": data, "next": None, "previous": None, "results": results}


@router.get("/models/{owner}/{name}")
async def get_model(request: Request, owner: str, name: str) -> dict[str, Any]:
    serving = serving_of(request)
    model = await _with_schema(serving, _model(request, owner, name))
    return model_object(model, base_url(request), serving.run_counts().get(model.name, 0))


@router.get("/models/{owner}/{name}/versions")
async def list_versions(request: Request, owner: str, name: str) -> dict[str, Any]:
    model = await _with_schema(serving_of(request), _model(request, owner, name))
    return {"next": None, "previous": None, "results": [version_object(model)]}


@router.get("/models/{owner}/{name}/versions/{version_id}")
async def get_version(request: Request, owner: str, name: str, version_id: str) -> dict[str, Any]:
    model = _model(request, owner, name)
    if version_id != model.version:
        raise NotFound(f"Version {version_id} of {model.name} not found.")
    return version_object(await _with_schema(serving_of(request), model))


# ---- files -------------------------------------------------------------------------------------------------


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
    obj = serving_of(request).files.save(
        data,
        name=content.filename or "file",
        content_type=content.content_type or "application/octet-stream",
        metadata=metadata,
        base_url=base_url(request),
    )
    await form.close()
    return JSONResponse(obj, status_code=201)


@router.get("/files/{file_id}")
async def get_file(request: Request, file_id: str) -> dict[str, Any]:
    obj = serving_of(request).files.get(file_id, base_url(request))
    if obj is None:
        raise NotFound("File not found.")
    return obj


@router.get("/files/{file_id}/download")
async def download_file(request: Request, file_id: str) -> Response:
    files = serving_of(request).files
    obj = files.get(file_id)
    path = files.content_path(file_id)
    if obj is None or path is None:
        raise NotFound("File not found.")
    return FileResponse(path, media_type=obj["content_type"], filename=obj["name"])


@router.delete("/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> Response:
    if not serving_of(request).files.delete(file_id):
        raise NotFound("File not found.")
    return Response(status_code=204)
