"""`POST /v1/embeddings` (OpenAI's format).

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

from cocina.rag import EmbedderNotFound
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
