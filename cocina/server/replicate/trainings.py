"""Replicate's trainings: a version's `train:` entry point run with an input, its result a new version of the
`destination` model.

`POST /v1/models/{owner}/{name}/versions/{id}/trainings` (`{"destination": "owner/name", "input": {...},
"webhook": ...}`) admits the training through serving's one admission function (the version's `train` runtime,
its training schema, the same queue and store as predictions); `GET /v1/trainings[/{id}]` and
`POST /v1/trainings/{id}/cancel` read and cancel them. A prediction's id is not a training's: those routes
answer 404 for it (and the predictions' routes list only predictions).
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from cocina.server.bodies import parse_body
from cocina.server.errors import BadRequest, NotFound
from cocina.server.replicate.render import replicate_training
from cocina.server.state import base_url, history_principal, may_see, principal_of, serving_of, set_guard_headers
from cocina.serving import AdmissionRequest, Serving
from cocina.store import PredictionRecord

router = APIRouter(prefix="/v1")

PAGE_SIZE = 100


class TrainingRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    destination: str = pydantic.Field(min_length=1, max_length=300)
    input: dict[str, Any] = pydantic.Field(default_factory=dict)
    webhook: pydantic.AnyHttpUrl | None = None
    webhook_completed: pydantic.AnyHttpUrl | None = None
    webhook_events_filter: list[Literal["start", "output", "logs", "completed"]] | None = None


@router.post("/models/{owner}/{name}/versions/{version_id}/trainings")
async def create_training(request: Request, owner: str, name: str, version_id: str) -> Response:
    body = await parse_body(request, TrainingRequest)
    webhook = body.webhook or body.webhook_completed
    events = body.webhook_events_filter
    if body.webhook is None and body.webhook_completed is not None:
        events = ["completed"]
    admitted = await serving_of(request).admit(
        AdmissionRequest(
            surface="replicate",
            input=body.input,
            model=f"{owner}/{name}:{version_id}",
            model_field="version",
            kind="training",
            destination=body.destination,
            webhook=str(webhook) if webhook else None,
            webhook_events_filter=list(events or []),
            principal=principal_of(request),
        )
    )
    set_guard_headers(request, admitted.ticket, admitted.record)
    return JSONResponse(replicate_training(admitted.record, base_url(request)), status_code=201)


@router.get("/trainings")
async def list_trainings(request: Request, cursor: str | None = None) -> dict[str, Any]:
    before = None
    if cursor is not None:
        try:
            before = int(cursor)
        except ValueError:
            raise BadRequest("Invalid cursor.") from None
    serving = serving_of(request)
    records = serving.page(before, PAGE_SIZE + 1, kind="training", principal=history_principal(request))
    base = base_url(request)
    page = records[:PAGE_SIZE]
    next_url = f"{base}/v1/trainings?cursor={page[-1].seq}" if len(records) > PAGE_SIZE else None
    return {"next": next_url, "previous": None, "results": [replicate_training(r, base) for r in page]}


@router.get("/trainings/{training_id}")
async def get_training(request: Request, training_id: str) -> dict[str, Any]:
    serving = serving_of(request)
    return replicate_training(_training(request, serving, training_id), base_url(request))


@router.post("/trainings/{training_id}/cancel")
async def cancel_training(request: Request, training_id: str) -> dict[str, Any]:
    serving = serving_of(request)
    _training(request, serving, training_id)
    rec = serving.cancel(training_id)
    assert rec is not None
    return replicate_training(rec, base_url(request))


def _training(request: Request, serving: Serving, training_id: str) -> PredictionRecord:
    """The training, if it is one and the request's key may see it (another key's answers 404, as predictions)."""
    rec = serving.get(training_id)
    if rec is None or rec.kind != "training" or not may_see(request, rec):
        raise NotFound("Training not found.")
    return rec
