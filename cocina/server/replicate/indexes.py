"""The server's indexes over HTTP (cocina's own, in the Replicate API's manner: problem+json errors, paginated
lists): list, show, query, and `POST /v1/indexes` (the end of `cocina index push`: a version whose three files
were uploaded as hub blobs, installed and kept so that models and deployments can name it `NAME@VERSION`)."""

from __future__ import annotations

from typing import Any

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from cocina.hub.manifest import Manifest
from cocina.rag import EmbedderMismatch, IndexNotFound, RagError
from cocina.server.bodies import parse_body
from cocina.server.errors import RequestInvalid
from cocina.server.state import hub_of, serving_of
from cocina.serving import errors

router = APIRouter(prefix="/v1")


class QueryRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    query: str = pydantic.Field(min_length=1)
    top_k: int = pydantic.Field(default=5, ge=1, le=100)
    min_score: float | None = pydantic.Field(default=None, ge=-1, le=1)


class IndexPush(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str = pydantic.Field(min_length=1, max_length=64)
    version: str = pydantic.Field(min_length=64, max_length=64)
    files: list[dict[str, Any]] = pydantic.Field(min_length=1, max_length=16)
    current: bool = True  # make it the index's current version (what `NAME` without a version means)


def _rag_error(exc: RagError) -> errors.ServingError:
    if isinstance(exc, IndexNotFound):
        return errors.IndexNotFound(exc.message)
    if isinstance(exc, EmbedderMismatch):
        return errors.Conflict(exc.message)
    if isinstance(exc, ValueError):
        return errors.InvalidRequest(exc.message)
    return errors.ModelUnavailable(exc.message)


@router.get("/indexes")
async def list_indexes(request: Request) -> Response:
    rag = serving_of(request).rag
    results = []
    for name in rag.store.names():
        try:
            info = rag.index(name).info()
        except RagError:
            continue
        info.pop("documents", None)
        results.append(info)
    return JSONResponse({"previous": None, "next": None, "results": results})


@router.post("/indexes")
async def push_index(request: Request) -> Response:
    """A version of an index from uploaded blobs: 201 when new here, 200 when it was here already."""
    hub = hub_of(request)
    body = await parse_body(request, IndexPush)
    try:
        manifest = Manifest.from_json(body.files)
    except ValueError as exc:
        raise RequestInvalid([{"loc": ["body", "files"], "msg": str(exc), "type": "value_error"}]) from None
    index, created = await hub.add_index(body.name, body.version, manifest, make_current=body.current)
    info = index.info()
    info["versions"] = serving_of(request).rag.store.versions(body.name)
    return JSONResponse({**info, "created": created}, status_code=201 if created else 200)


@router.get("/indexes/{name}")
async def get_index(request: Request, name: str) -> Response:
    """An index (`NAME`: its current version; `NAME@VERSION`: that one) with its kept versions."""
    rag = serving_of(request).rag
    try:
        info = rag.index(name).info()
        info["versions"] = rag.store.versions(name.partition("@")[0])
    except RagError as exc:
        raise _rag_error(exc) from None
    return JSONResponse(info)


@router.post("/indexes/{name}/query")
async def query_index(request: Request, name: str) -> Response:
    body = await parse_body(request, QueryRequest)
    try:
        passages = await serving_of(request).rag.query(name, body.query, body.top_k, body.min_score)
    except RagError as exc:
        raise _rag_error(exc) from None
    return JSONResponse({"index": name, "query": body.query, "results": [p.source() for p in passages]})
