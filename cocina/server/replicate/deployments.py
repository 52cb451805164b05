"""Replicate's deployments (`deployments.get/list/create/update/delete` of the official client), with cocina's
weighted releases: `versions: [{"version", "weight"}]` splits the traffic (sticky by the caller's key), every
change is a new numbered release, and `POST .../rollback` makes a release that routes as an earlier one did.
A release may carry retrieval options, `rag: {index, top_k, min_score, rewrite}` (or an index name): every
prediction through it answers from that index (docs/rag.md); `"rag": null` in an update drops them.

With API keys (the guard), the auth middleware has checked the route's scope (`deploy` for changes); here a key
whose `--models` patterns leave out a deployment's model does not see the deployment (404, as for the model
itself), and each release records the key that made it (`created_by`)."""

from __future__ import annotations

from typing import Any

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from cocina.hub.compare import MAX_EXAMPLES, example_of, run_compare
from cocina.hub.deployments import Split
from cocina.hub.hub import KEEP
from cocina.hub.objects import deployment_object, release_object
from cocina.server.bodies import parse_body
from cocina.server.errors import BadRequest, RequestInvalid
from cocina.server.replicate.ndjson import Emit, ndjson_response, wants_ndjson
from cocina.server.state import hub_of, may_use_model, principal_of, serving_of
from cocina.serving.errors import ModelNotFound
from cocina.serving.retrieval import parse_rag
from cocina.store import DeploymentRecord

router = APIRouter(prefix="/v1")


class Weighted(pydantic.BaseModel):
    version: str
    weight: int


class DeploymentCreate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    name: str = pydantic.Field(min_length=1, max_length=128)
    model: str
    version: str | None = None
    versions: list[Weighted] | None = None
    hardware: str | None = None
    min_instances: int = 0
    max_instances: int = 1
    rag: Any = None  # cocina's: the release's retrieval options, checked by `parse_rag` (its own messages)


class DeploymentUpdate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    version: str | None = None
    versions: list[Weighted] | None = None
    hardware: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    rag: Any = None  # absent: kept; null or false: dropped; else checked by `parse_rag`


class Rollback(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    release: int | None = None


def _splits(version: str | None, versions: list[Weighted] | None) -> list[Split] | None:
    if version is not None and versions is not None:
        raise BadRequest("give `version` (all traffic) or `versions` (weighted), not both", param="versions")
    if versions is not None:
        return [Split(v.version, v.weight) for v in versions]
    return [Split(version, 100)] if version is not None else None


def _by(request: Request) -> str | None:
    """Who makes a release: the API key's id (None without keys)."""
    principal = principal_of(request)
    return principal.id if principal is not None else None


def _deployment(request: Request, owner: str, name: str) -> DeploymentRecord:
    """The deployment, if the request's key may use its model; else answered exactly as a missing one."""
    full = f"{owner}/{name}"
    record = hub_of(request).get_deployment(full)
    if not may_use_model(request, record.model):
        raise ModelNotFound(f"Deployment {full} not found.", param="deployment")
    return record


@router.get("/deployments")
async def list_deployments(request: Request) -> dict[str, Any]:
    records = [d for d in hub_of(request).list_deployments() if may_use_model(request, d.model)]
    return {"next": None, "previous": None, "results": [deployment_object(d) for d in records]}


@router.post("/deployments")
async def create_deployment(request: Request) -> Response:
    body = await parse_body(request, DeploymentCreate)
    owner = body.model.split("/", 1)[0]
    name = body.name if "/" in body.name else f"{owner}/{body.name}"  # owned by the model's owner
    splits = _splits(body.version, body.versions)
    if splits is None:
        raise BadRequest("a deployment needs `version` or `versions`", param="version")
    if not may_use_model(request, body.model):
        raise ModelNotFound(f"Model {body.model} not found.", param="model")
    record = hub_of(request).create_deployment(
        name,
        body.model,
        splits,
        min_instances=body.min_instances,
        max_instances=body.max_instances,
        rag=parse_rag(body.rag),
        by=_by(request),
    )
    return JSONResponse(deployment_object(record), status_code=201)


@router.get("/deployments/{owner}/{name}")
async def get_deployment(request: Request, owner: str, name: str) -> dict[str, Any]:
    return deployment_object(_deployment(request, owner, name))


@router.patch("/deployments/{owner}/{name}")
async def update_deployment(request: Request, owner: str, name: str) -> dict[str, Any]:
    body = await parse_body(request, DeploymentUpdate)
    _deployment(request, owner, name)
    record = hub_of(request).update_deployment(
        f"{owner}/{name}",
        splits=_splits(body.version, body.versions),
        min_instances=body.min_instances,
        max_instances=body.max_instances,
        rag=parse_rag(body.rag) if "rag" in body.model_fields_set else KEEP,
        by=_by(request),
    )
    return deployment_object(record)


@router.delete("/deployments/{owner}/{name}")
async def delete_deployment(request: Request, owner: str, name: str) -> Response:
    _deployment(request, owner, name)
    hub_of(request).delete_deployment(f"{owner}/{name}")
    return Response(status_code=204)


@router.get("/deployments/{owner}/{name}/releases")
async def list_releases(request: Request, owner: str, name: str) -> dict[str, Any]:
    hub = hub_of(request)
    record = _deployment(request, owner, name)
    releases = hub.releases(record.name)
    return {"next": None, "previous": None, "results": [release_object(r, record.model) for r in releases]}


@router.get("/deployments/{owner}/{name}/stats")
async def stats(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Each version's live traffic: predictions, failures, latency and output tokens/s."""
    _deployment(request, owner, name)
    return hub_of(request).stats(f"{owner}/{name}")


class Compare(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    examples: list[dict[str, Any]] = pydantic.Field(min_length=1, max_length=MAX_EXAMPLES)
    timeout: float = pydantic.Field(300.0, gt=0, le=3600, description="seconds for each prediction")
    perplexity: bool = True


@router.post("/deployments/{owner}/{name}/compare")
async def compare(request: Request, owner: str, name: str) -> Response:
    """The same examples through each version of the current release, one at a time: latency, errors, output
    tokens/s and quality against references, with differences and their 95% intervals (`cocina.hub.compare`).
    With `Accept: application/x-ndjson`, progress streams as `{"done", "total"}` lines before the report."""
    hub = hub_of(request)
    body = await parse_body(request, Compare)
    examples = []
    for i, item in enumerate(body.examples):
        try:
            examples.append(example_of(item, f"example {i + 1}"))
        except ValueError as exc:
            raise RequestInvalid([{"loc": ["body", "examples", i], "msg": str(exc), "type": "value_error"}]) from None
    full = f"{owner}/{name}"
    _deployment(request, owner, name)  # a 404 before any work
    principal = principal_of(request)  # the examples run as this key's predictions: its limits, the audit log

    async def work(emit: Emit | None = None) -> dict[str, Any]:
        return await run_compare(
            hub,
            serving_of(request),
            full,
            examples,
            timeout_s=body.timeout,
            perplexity=body.perplexity,
            progress=emit,
            principal=principal,
        )

    if not wants_ndjson(request):
        return JSONResponse(await work())

    async def streamed(emit: Emit) -> dict[str, Any]:
        return {"report": await work(emit)}

    return ndjson_response(request, streamed, finish_if_left=False)


@router.post("/deployments/{owner}/{name}/rollback")
async def rollback(request: Request, owner: str, name: str) -> dict[str, Any]:
    body = await parse_body(request, Rollback, empty_ok=True)
    _deployment(request, owner, name)
    return deployment_object(hub_of(request).rollback(f"{owner}/{name}", body.release, by=_by(request)))
