"""Replicate's predictions: created by version, model or deployment; read, listed, canceled, streamed.

`Prefer: wait[=N]` holds the answer until the prediction finishes or N seconds (at most 60) pass. When time runs
out the prediction is shown as `starting` without output: the 1.x client's `run()` treats any other status as
terminal, and its output iterator skips output already present in the creation answer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cocina.rag import RagConfig
from cocina.server.bodies import dumps, parse_body, parse_duration_s, prefer_tokens, sse_event
from cocina.server.errors import BadRequest, NotFound, RequestInvalid
from cocina.server.replicate.render import replicate_prediction
from cocina.server.state import base_url, may_see, principal_of, serving_of, set_guard_headers, sticky_key
from cocina.serving import AdmissionRequest, Serving
from cocina.serving.events import Completed, LogChunk, OutputChunk
from cocina.store import PredictionStatus

router = APIRouter(prefix="/v1")

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
    return await _create(request, body, f"{owner}/{name}", "model")


@router.post("/deployments/{owner}/{name}/predictions")
async def create_deployment_prediction(request: Request, owner: str, name: str) -> Response:
    """The deployment's current release picks the version (sticky by the request's key); a deployment named
    like a model that has none routes to that model."""
    body = await parse_body(request, ReplicatePredictionRequest)
    return await _create(request, body, None, "deployment", deployment=f"{owner}/{name}")


async def _create(
    request: Request,
    body: ReplicatePredictionRequest,
    ref: str | None,
    field: str,
    *,
    deployment: str | None = None,
    source: str = "api",
    rag: RagConfig | None = None,
) -> Response:
    """Admit the prediction and answer it (after `Prefer: wait`); `source` is `web` for the model page's, which
    alone may give `rag` (the playground's retrieval options)."""
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
            sticky_key=sticky_key(request),
            webhook=str(webhook) if webhook else None,
            webhook_events_filter=list(events or []),
            deadline=deadline,
            source=source,
            rag=rag,
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
