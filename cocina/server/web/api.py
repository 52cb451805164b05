"""The page's own JSON API (`/-/api/`): what the Replicate API has no call for. Answers and errors are
Replicate's shapes (problem+json).

- `POST /-/api/predictions`: a prediction as `POST /v1/predictions` makes it, recorded with `source: web`; the
  playground may add `rag` (an index name or `{index, top_k, min_score, rewrite}`, as the OpenAI API's `rag`) to
  answer a language model's question from an index, its sources in the answer (docs/rag.md).
- `POST /-/api/models/{o}/{n}/validate`: the input checked by the same validator admission uses (the same
  messages), before anything runs.
- `POST /-/api/models/{o}/{n}/load` and `/unload`: warm a model up, or let one go.
- `GET /-/api/models/{o}/{n}/predictions`: the model's history, filtered by version, status and source.
- `GET /-/api/models/{o}/{n}/diff?from=A&to=B`: what changed in the schema between two versions.
- Examples (`POST .../examples`, `POST .../examples/{id}/default`, `DELETE .../examples/{id}`) and shares
  (`POST/GET /-/api/predictions/{id}/shares`, `DELETE /-/api/shares/{id}`).

Every call that changes something must come from the page: no foreign `Origin`, and the `X-Cocina-CSRF` header
(which a cross-site form cannot send; with a signed-in cookie the auth middleware also checks its value).
"""

from __future__ import annotations

import re
from typing import Any

import pydantic
from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response

from cocina.hub.schema_diff import diff_schemas
from cocina.server.bodies import parse_body
from cocina.server.errors import BadRequest, Forbidden, NotFound
from cocina.server.middleware.auth import bearer
from cocina.server.replicate.models import model_names, version_objects
from cocina.server.replicate.predictions import ReplicatePredictionRequest
from cocina.server.replicate.predictions import _create as admit_and_answer  # the same admission, source=web
from cocina.server.replicate.render import replicate_prediction
from cocina.server.state import base_url, history_principal, may_admin, may_see, principal_id, serving_of
from cocina.server.web import security, shares
from cocina.server.web.pages import model_state
from cocina.serving.errors import Conflict, Unprocessable
from cocina.serving.retrieval import parse_rag
from cocina.store import ExampleRecord, PredictionRecord, PredictionStatus, utc_now

HISTORY_PAGE = 20
VALIDATE_SCHEMA_WAIT_S = 10.0  # a model never loaded: how long checking an input waits to learn its schema
_VERSION = re.compile(r"^[0-9a-f]{1,64}$")
_SOURCE = re.compile(r"^[a-z]{1,16}$")


async def from_the_page(request: Request) -> None:
    """Calls that change something come from this server's own page (see the module's docstring)."""
    if request.method in security.SAFE_METHODS:
        return
    if security.cross_origin(request):
        raise Forbidden("Cross-site requests are refused.")
    if bearer(request.scope) is None and security.CSRF_HEADER not in request.headers:
        raise Forbidden("This request lacks the page's CSRF token (X-Cocina-CSRF); reload the page and try again.")


router = APIRouter(prefix="/-/api", include_in_schema=False, dependencies=[Depends(from_the_page)])


def _model(request: Request, owner: str, name: str) -> str:
    full = f"{owner}/{name}"
    if full not in model_names(request):
        raise NotFound(f"Model {full} not found.")
    return full


def _prediction(request: Request, prediction_id: str) -> PredictionRecord:
    rec = serving_of(request).get(prediction_id)
    if rec is None or not may_see(request, rec):
        raise NotFound("Prediction not found.")
    return rec


def _admin(request: Request) -> None:
    if not may_admin(request):
        raise Forbidden("This key may not manage models.")


# ---- predictions -------------------------------------------------------------------------------------------


class WebPredictionRequest(ReplicatePredictionRequest):
    rag: Any = None  # this request's retrieval options (checked by `parse_rag`, the OpenAI API's messages)


@router.post("/predictions")
async def create_prediction(request: Request) -> Response:
    """As `POST /v1/predictions` (`version` is a version id, `owner/name` or `owner/name:version`), from the
    web; `rag` turns retrieval on for this one prediction (a language model only: else a 400 naming `rag`)."""
    body = await parse_body(request, WebPredictionRequest)
    if body.version is None:
        raise BadRequest("version is required.", param="version")
    rag = parse_rag(body.rag)
    return await admit_and_answer(request, body, body.version, "version", source="web", rag=rag)


class ValidateBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    version: str | None = None
    input: dict[str, Any] = pydantic.Field(default_factory=dict)


@router.post("/models/{owner}/{name}/validate")
async def validate(request: Request, owner: str, name: str) -> dict[str, Any]:
    """The input as admission would check it: 200 with the normalized input, or Replicate's 422 naming each
    field (the same messages a prediction would get)."""
    full = _model(request, owner, name)
    body = await parse_body(request, ValidateBody)
    if body.version is not None and not _VERSION.match(body.version):
        raise BadRequest("version must be a version id.", param="version")
    serving = serving_of(request)
    runtime = serving.models.resolve(f"{full}:{body.version}" if body.version else full)
    await runtime.model.wait_schema(min(VALIDATE_SCHEMA_WAIT_S, serving.config.load_timeout_s))
    return {"valid": True, "input": runtime.model.validate(body.input)}


# ---- loading -----------------------------------------------------------------------------------------------


@router.post("/models/{owner}/{name}/load")
async def load(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Start loading the model's default version (or `?version=`); answers at once with its state."""
    _admin(request)
    full = _model(request, owner, name)
    serving = serving_of(request)
    version = request.query_params.get("version")
    if version is not None and not _VERSION.match(version):
        raise BadRequest("version must be a version id.", param="version")
    runtime = serving.models.resolve(f"{full}:{version}" if version else full)
    runtime.model.request_load()
    state = model_state(serving, full)
    if state["state"] == "cold":
        state["state"] = "loading"  # asked for: the load starts as soon as the loop turns
    return {"model": full, "version": runtime.model.version, **state}


@router.post("/models/{owner}/{name}/unload")
async def unload(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Unload every loaded version of the model; refused while one runs predictions or is kept warm."""
    _admin(request)
    full = _model(request, owner, name)
    serving = serving_of(request)
    runtimes = [rt for (n, _v), rt in serving.models.runtimes.items() if n == full]
    kept = [rt for rt in runtimes if rt.model.warm]
    if kept:
        raise Conflict(
            f"{full} is kept loaded (the default model, --warm, or a deployment's min_instances): it cannot be "
            "unloaded here."
        )
    busy = [rt for rt in runtimes if not rt.idle]
    if busy:
        raise Conflict(f"{full} is running predictions; unload it when they have finished.")
    for rt in runtimes:
        await rt.model.unload()
    return {"model": full, **model_state(serving, full)}


# ---- history -----------------------------------------------------------------------------------------------


@router.get("/models/{owner}/{name}/predictions")
async def history(request: Request, owner: str, name: str) -> dict[str, Any]:
    """The model's predictions the caller may see, newest first, 20 a page; filters `version`, `status`
    (starting, processing, succeeded, failed, canceled) and `source` (web, api)."""
    full = _model(request, owner, name)
    q = request.query_params
    version, status, source, cursor = q.get("version"), q.get("status"), q.get("source"), q.get("cursor")
    if version and not _VERSION.match(version):
        raise BadRequest("version must be a version id.", param="version")
    if status and status not in {s.value for s in PredictionStatus}:
        raise BadRequest(f"status must be one of {', '.join(s.value for s in PredictionStatus)}.", param="status")
    if source and not _SOURCE.match(source):
        raise BadRequest("source must be web or api.", param="source")
    before = None
    if cursor:
        try:
            before = int(cursor)
        except ValueError:
            raise BadRequest("Invalid cursor.", param="cursor") from None
    serving = serving_of(request)
    records = serving.page(
        before,
        HISTORY_PAGE + 1,
        model=full,
        version=version or None,
        status=status or None,
        source=source or None,
        principal=history_principal(request),
    )
    page = records[:HISTORY_PAGE]
    base = base_url(request)
    next_url = None
    if len(records) > HISTORY_PAGE:
        params = {k: v for k, v in (("version", version), ("status", status), ("source", source)) if v}
        params["cursor"] = str(page[-1].seq)
        query = "&".join(f"{k}={v}" for k, v in params.items())
        next_url = f"{base}/-/api/models/{full}/predictions?{query}"
    results = [replicate_prediction(r, base) for r in page if may_see(request, r)]
    return {"next": next_url, "previous": None, "results": results}


# ---- versions ----------------------------------------------------------------------------------------------


@router.get("/models/{owner}/{name}/diff")
async def diff(request: Request, owner: str, name: str) -> dict[str, Any]:
    """What changed in the inputs and output from version `from` to version `to` (ids or unique prefixes), and
    whether it breaks callers."""
    full = _model(request, owner, name)
    versions = await version_objects(request, full, schema_wait_s=0)

    def find(param: str) -> dict[str, Any]:
        given = request.query_params.get(param, "")
        if not _VERSION.match(given):
            raise BadRequest(f"`{param}` must be a version id.", param=param)
        matches = [v for v in versions if v["id"].startswith(given)]
        if len(matches) != 1:
            raise NotFound(f"Version {given} of {full} not found.")
        return matches[0]

    old, new = find("from"), find("to")
    return {"from": old["id"], "to": new["id"], **diff_schemas(old["openapi_schema"], new["openapi_schema"]).to_json()}


# ---- examples ----------------------------------------------------------------------------------------------


class ExampleCreate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    prediction: str = pydantic.Field(min_length=1, max_length=128)
    default: bool = False


@router.post("/models/{owner}/{name}/examples")
async def add_example(request: Request, owner: str, name: str) -> Response:
    """Add one of the model's succeeded predictions to its examples (`default: true` makes it pre-fill the
    form)."""
    _admin(request)
    full = _model(request, owner, name)
    body = await parse_body(request, ExampleCreate)
    rec = _prediction(request, body.prediction)
    if rec.model != full:
        raise Unprocessable(f"Prediction {rec.id} is of {rec.model}, not {full}.", param="prediction")
    if rec.status is not PredictionStatus.SUCCEEDED:
        raise Unprocessable(f"Only a succeeded prediction can be an example; this one is {rec.status.value}.")
    store = serving_of(request).store
    if not store.put_example(ExampleRecord(full, rec.id, is_default=body.default, created_by=principal_id(request))):
        raise Conflict(f"Prediction {rec.id} is an example of {full} already.")
    return JSONResponse(replicate_prediction(rec, base_url(request)), status_code=201)


@router.post("/models/{owner}/{name}/examples/{prediction_id}/default")
async def make_default_example(request: Request, owner: str, name: str, prediction_id: str) -> dict[str, Any]:
    _admin(request)
    full = _model(request, owner, name)
    if not serving_of(request).store.set_default_example(full, prediction_id):
        raise NotFound(f"Prediction {prediction_id} is not an example of {full}.")
    return {"model": full, "default_example": prediction_id}


@router.delete("/models/{owner}/{name}/examples/{prediction_id}")
async def remove_example(request: Request, owner: str, name: str, prediction_id: str) -> Response:
    _admin(request)
    full = _model(request, owner, name)
    if not serving_of(request).store.delete_example(full, prediction_id):
        raise NotFound(f"Prediction {prediction_id} is not an example of {full}.")
    return Response(status_code=204)


# ---- shares ------------------------------------------------------------------------------------------------


class ShareCreate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    expires_in_s: int | None = pydantic.Field(default=None, ge=60, le=shares.MAX_EXPIRY_S)


@router.post("/predictions/{prediction_id}/shares")
async def create_share(request: Request, prediction_id: str) -> Response:
    """A new link to this prediction (its URL is in this answer only: the server keeps a digest)."""
    rec = _prediction(request, prediction_id)
    body = await parse_body(request, ShareCreate, empty_ok=True)
    token, share = shares.create_share(
        serving_of(request).store, rec.id, expires_in_s=body.expires_in_s, by=principal_id(request)
    )
    return JSONResponse(shares.share_object(share, base_url(request), token), status_code=201)


@router.get("/predictions/{prediction_id}/shares")
async def list_shares(request: Request, prediction_id: str) -> dict[str, Any]:
    rec = _prediction(request, prediction_id)
    base = base_url(request)
    return {"results": [shares.share_object(s, base) for s in serving_of(request).store.list_shares(rec.id)]}


@router.delete("/shares/{share_id}")
async def revoke_share(request: Request, share_id: str) -> dict[str, Any]:
    """Revoke a share: its link is a 404 from now on."""
    store = serving_of(request).store
    share = store.get_share(share_id)
    if share is None or not may_see(request, serving_of(request).get(share.prediction_id)):
        raise NotFound("Share not found.")
    if not store.revoke_share(share_id, utc_now()):
        raise Conflict("This share was revoked already.")
    revoked = store.get_share(share_id)
    assert revoked is not None
    return shares.share_object(revoked, base_url(request))
