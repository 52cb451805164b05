"""Cog's HTTP API on the server's default model, except that a busy model queues (Cog: 409).

`/`, `/health-check`, `/openapi.json`, `POST /predictions`, idempotent `PUT /predictions/{id}`,
`POST /predictions/{id}/cancel`, `POST /shutdown`. `Prefer: respond-async` answers 202 at once; `Accept:
text/event-stream` (for a predictor marked `@streaming`, else 406) streams `start`, `log`, `output`, `metric`
and `completed` events — a `PUT` of a prediction that exists subscribes to it, replaying what it kept of its
history (`COG_STREAM_HISTORY_CAPACITY`); otherwise the request waits for the result. The request's `context`
reaches the predictor (`current_scope().context`). Every prediction goes through serving's one admission
function. `/health-check` runs the predictor's own `healthcheck()` once the model is ready.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cocina.server.bodies import accepts_event_stream, dumps, parse_body, prefer_tokens, sse_event
from cocina.server.cog.openapi import cog_openapi
from cocina.server.cog.render import cog_prediction
from cocina.server.errors import NotFound, RequestInvalid
from cocina.server.state import may_see, principal_of, serving_of, set_guard_headers
from cocina.serving import AdmissionRequest, ModelState, ServerState, Serving
from cocina.serving.errors import ServingError
from cocina.serving.events import Completed, LogChunk, MetricChunk, OutputChunk, ReplayTruncated, Started

router = APIRouter()

WebhookEvent = Literal["start", "output", "logs", "completed"]


class CogPredictionRequest(pydantic.BaseModel):
    """`PredictionRequest` of Cog; unknown fields (created_at, output_file_prefix, ...) are ignored."""

    model_config = pydantic.ConfigDict(extra="ignore")

    id: str | None = pydantic.Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    input: dict[str, Any] = pydantic.Field(default_factory=dict)
    context: dict[pydantic.StrictStr, pydantic.StrictStr] = pydantic.Field(default_factory=dict)
    webhook: pydantic.AnyHttpUrl | None = None
    webhook_events_filter: list[WebhookEvent] | None = None


@router.get("/")
async def index() -> dict[str, Any]:
    return {
        "docs_url": "/docs",
        "openapi_url": "/openapi.json",
        "shutdown_url": "/shutdown",
        "healthcheck_url": "/health-check",
        "predictions_url": "/predictions",
        "predictions_idempotent_url": "/predictions/{prediction_id}",
        "predictions_cancel_url": "/predictions/{prediction_id}/cancel",
    }


async def cog_health(serving: Serving) -> dict[str, Any]:
    """Cog's `/health-check` body: the default model's state and its last setup; when it is ready (busy or
    not), the predictor's own `healthcheck()` runs (every time: one call may pass and the next fail), and a
    failing one makes it `UNHEALTHY` with `user_healthcheck_error`."""
    runtime = serving.models.default
    model = runtime.model
    if serving.state is ServerState.STOPPED:
        status = "DEFUNCT"
    elif serving.state is ServerState.DRAINING:
        status = "BUSY"
    elif model.state is ModelState.READY:
        status = "BUSY" if runtime.queue_full else "READY"
    elif model.state is ModelState.FAILED:
        status = "SETUP_FAILED"
    else:
        status = "STARTING"
    setup: dict[str, Any] = {"started_at": None, "completed_at": None, "status": None, "logs": ""}
    if model.setup is not None and model.state is not ModelState.LOADING:
        setup = {
            "started_at": model.setup.started_at,
            "completed_at": model.setup.completed_at,
            "status": model.setup.status,
            "logs": model.setup.logs,
        }
    body: dict[str, Any] = {"status": status, "setup": setup}
    if status in ("READY", "BUSY") and serving.state is ServerState.READY:
        try:
            error = await model.healthcheck()
        except ServingError:
            error = None  # the process went away meanwhile: the next check sees the model loading again
        if error is not None:
            body["status"] = "UNHEALTHY"
            body["user_healthcheck_error"] = error
    return body


@router.get("/health-check")
async def health_check(request: Request) -> dict[str, Any]:
    return await cog_health(serving_of(request))


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> Response:
    """Exactly what a Cog container serves, for the default model (empty Input/Output until it is known)."""
    return JSONResponse(cog_openapi(serving_of(request).models.default.model.schema or {}))


@router.post("/predictions")
async def create_prediction(request: Request) -> Response:
    body = await parse_body(request, CogPredictionRequest)
    return await _predict(request, body, body.id)


@router.put("/predictions/{prediction_id}")
async def create_prediction_idempotent(request: Request, prediction_id: str) -> Response:
    body = await parse_body(request, CogPredictionRequest)
    if body.id is not None and body.id != prediction_id:
        raise RequestInvalid(
            [
                {
                    "loc": ["body", "id"],
                    "msg": "prediction ID must match the ID supplied in the URL",
                    "type": "value_error",
                }
            ]
        )
    _check_path_id(prediction_id)
    return await _predict(request, body, prediction_id)


@router.post("/predictions/{prediction_id}/cancel")
async def cancel_prediction(request: Request, prediction_id: str) -> dict[str, Any]:
    serving = serving_of(request)
    if not may_see(request, serving.get(prediction_id)) or serving.cancel(prediction_id) is None:
        raise NotFound("Not found")
    return {}


@router.post("/shutdown")
async def shutdown(request: Request) -> dict[str, Any]:
    request.app.state.request_shutdown()
    return {}


def _check_path_id(prediction_id: str) -> None:
    try:
        CogPredictionRequest(id=prediction_id)
    except pydantic.ValidationError as exc:
        raise RequestInvalid(
            [{"loc": ["path", "prediction_id"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from None


async def _predict(request: Request, body: CogPredictionRequest, prediction_id: str | None) -> Response:
    serving = serving_of(request)
    stream = accepts_event_stream(request)
    admitted = await serving.admit(
        AdmissionRequest(
            surface="cog",
            input=body.input,
            prediction_id=prediction_id,
            webhook=str(body.webhook) if body.webhook else None,
            webhook_events_filter=list(body.webhook_events_filter or []),
            context=dict(body.context),
            require_streaming=stream,
            principal=principal_of(request),
        )
    )
    rec = admitted.record
    if not admitted.created and not may_see(request, rec):
        raise NotFound("Not found")  # another key's prediction id
    set_guard_headers(request, admitted.ticket, rec)
    if stream:
        return StreamingResponse(
            _sse(serving, rec.id, late=not admitted.created),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )
    if "respond-async" in prefer_tokens(request):
        return JSONResponse(cog_prediction(rec), status_code=202)
    final = await serving.wait(rec.id, None)
    assert final is not None
    return JSONResponse(cog_prediction(final), status_code=200)


async def _sse(serving: Serving, prediction_id: str, *, late: bool) -> AsyncIterator[bytes]:
    """Cog's events; `late`: a subscriber to a prediction that exists already (a history replay that was cut
    short is one `error` event saying how many events were dropped, as Cog's)."""
    async for ev in serving.events(prediction_id, late=late):
        if isinstance(ev, Started | Completed):
            rec = serving.get(prediction_id)
            name = "start" if isinstance(ev, Started) else "completed"
            yield sse_event(name, dumps(cog_prediction(rec) if rec else {}))
        elif isinstance(ev, LogChunk):
            yield sse_event("log", dumps({"data": ev.data, "source": ev.source}))
        elif isinstance(ev, OutputChunk):
            yield sse_event("output", dumps({"chunk": ev.value, "index": ev.index}))
        elif isinstance(ev, MetricChunk):
            yield sse_event("metric", dumps({"name": ev.name, "value": ev.value, "mode": ev.mode}))
        elif isinstance(ev, ReplayTruncated):
            body = {"error": "SSE stream replay truncated; events were dropped", "skipped": ev.skipped}
            yield sse_event("error", dumps(body))
