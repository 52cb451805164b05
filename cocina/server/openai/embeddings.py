"""`POST /v1/embeddings` (OpenAI's format) and the indexes over HTTP (`/v1/indexes`, cocina's own).

Embeddings come from the embedding models the server holds (the default, `multilingual-e5-small`, and those of
`--embedding-model NAME=PATH`), in a worker thread, batched with other requests that arrive together. The
official client asks for `encoding_format: "base64"` (float32, little-endian) by default; `"float"` gives lists.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from cocina.rag import EmbedderMismatch, EmbedderNotFound, IndexNotFound, RagError
from cocina.server.bodies import parse_body
from cocina.server.errors import BadRequest
from cocina.server.state import serving_of
from cocina.serving import errors

router = APIRouter(prefix="/v1")
MAX_INPUTS = 2048


class EmbeddingRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = pydantic.Field(default=None, ge=1)
    user: str | None = None
    input_type: Literal["query", "document"] = "document"  # cocina's: e5 models embed queries differently


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    serving = serving_of(request)
    body = await parse_body(request, EmbeddingRequest)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise BadRequest("input must not be empty.", param="input")
    if not all(isinstance(t, str) for t in texts):
        raise BadRequest("Token ids are not supported as input; send text.", param="input")
    if len(texts) > MAX_INPUTS:
        raise BadRequest(f"input holds {len(texts)} texts; at most {MAX_INPUTS} are allowed.", param="input")
    if any(not t for t in texts):
        raise BadRequest("input must not contain empty strings.", param="input")
    try:
        vectors, counts = await serving.rag.embed(body.model, [str(t) for t in texts], body.input_type)
    except EmbedderNotFound as exc:
        raise errors.ModelNotFound(exc.message, param="model") from None
    if body.dimensions is not None and body.dimensions != vectors.shape[1]:
        raise BadRequest(
            f"{body.model} gives {vectors.shape[1]}-dimensional embeddings; dimensions={body.dimensions} "
            "cannot be honoured.",
            param="dimensions",
        )
    data: list[dict[str, Any]] = []
    for i, v in enumerate(vectors):
        emb: Any = (
            base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else v.tolist()
        )
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = int(sum(counts))
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


class QueryRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    query: str = pydantic.Field(min_length=1)
    top_k: int = pydantic.Field(default=5, ge=1, le=100)
    min_score: float | None = pydantic.Field(default=None, ge=-1, le=1)


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


@router.get("/indexes/{name}")
async def get_index(request: Request, name: str) -> Response:
    try:
        return JSONResponse(serving_of(request).rag.index(name).info())
    except RagError as exc:
        raise _rag_error(exc) from None


@router.post("/indexes/{name}/query")
async def query_index(request: Request, name: str) -> Response:
    body = await parse_body(request, QueryRequest)
    try:
        passages = await serving_of(request).rag.query(name, body.query, body.top_k, body.min_score)
    except RagError as exc:
        raise _rag_error(exc) from None
    return JSONResponse({"index": name, "query": body.query, "results": [p.source() for p in passages]})
