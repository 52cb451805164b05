"""The Cog HTTP API, as the server inside a Cog container serves it, except that a busy server queues (Cog:
409).

`/`, `/health-check`, `/openapi.json` (see `openapi.py`), `POST /predictions`, idempotent `PUT /predictions/{id}`,
`POST /predictions/{id}/cancel`, `POST /shutdown`. `Prefer: respond-async` answers 202 at once; `Accept:
text/event-stream` streams `start`, `log`, `output` and `completed` events; otherwise the request waits for the
result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cocina.server.bodies import accepts_event_stream, dumps, parse_body, prefer_tokens, sse_event
from cocina.server.errors import NotFound, RequestInvalid
from cocina.server.runtime import Runtime
from cocina.server.store import PredictionRecord

router = APIRouter()

WebhookEvent = Literal["start", "output", "logs", "completed"]


class CogPredictionRequest(pydantic.BaseModel):
    """`PredictionRequest` of Cog; unknown fields (created_at, output_file_prefix, ...) are ignored."""

    model_config = pydantic.ConfigDict(extra="ignore")

    id: str | None = pydantic.Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    input: dict[str, Any] = pydantic.Field(default_factory=dict)
    webhook: pydantic.AnyHttpUrl | None = None
    webhook_events_filter: list[WebhookEvent] | None = None


def cog_prediction(rec: PredictionRecord) -> dict[str, Any]:
    """Cog's `PredictionResponse`."""
    body: dict[str, Any] = {
        "id": rec.id,
        "input": rec.input,
        "output": rec.output,
        "logs": rec.logs,
        "error": rec.error,
        "status": rec.status.value,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "completed_at": rec.completed_at,
        "metrics": {k: v for k, v in rec.metrics.items() if k == "predict_time"},
    }
    if rec.webhook:
        body["webhook"] = rec.webhook
        body["webhook_events_filter"] = rec.webhook_events_filter or ["start", "output", "logs", "completed"]
    return body


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


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


@router.get("/health-check")
async def health_check(request: Request) -> dict[str, Any]:
    return runtime_of(request).health()


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
    rec = await runtime_of(request).cancel(prediction_id)
    if rec is None:
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
    runtime = runtime_of(request)
    rec, _ = runtime.submit(
        body.input,
        surface="cog",
        prediction_id=prediction_id,
        webhook=str(body.webhook) if body.webhook else None,
        webhook_events_filter=list(body.webhook_events_filter or []),
    )
    if accepts_event_stream(request):
        return StreamingResponse(
            _sse(runtime, rec.id), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )
    if "respond-async" in prefer_tokens(request):
        return JSONResponse(cog_prediction(rec), status_code=202)
    final = await runtime.wait(rec.id, None)
    assert final is not None
    return JSONResponse(cog_prediction(final), status_code=200)


async def _sse(runtime: Runtime, prediction_id: str) -> AsyncIterator[bytes]:
    async for ev in runtime.events(prediction_id):
        rec = runtime.get(prediction_id)
        if ev.kind in ("start", "completed"):
            yield sse_event(ev.kind, dumps(cog_prediction(rec) if rec else {}))
        else:
            yield sse_event(ev.kind, dumps(ev.data))
