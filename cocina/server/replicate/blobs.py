"""Uploading a version's files (cocina's push): which of these does the hub lack, and one file by its SHA-256.

`PUT /v1/hub/blobs/sha256/{digest}` streams the body to disk while hashing it and keeps it only when the hash
matches: an interrupted or wrong upload stores nothing. It is exempt from the request body limit (files are
weights): it goes to disk as it arrives, never into memory.
"""

from __future__ import annotations

from typing import Any

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from cocina.server.bodies import parse_body
from cocina.server.state import hub_of

router = APIRouter(prefix="/v1/hub")

BLOB_PREFIX = "/v1/hub/blobs/sha256/"


class Digests(pydantic.BaseModel):
    digests: list[str] = pydantic.Field(max_length=1_000_000)


@router.post("/blobs/missing")
async def missing(request: Request) -> dict[str, Any]:
    body = await parse_body(request, Digests)
    return {"missing": hub_of(request).missing_blobs(body.digests)}


@router.put("/blobs/sha256/{digest}")
async def put_blob(request: Request, digest: str) -> Response:
    hub = hub_of(request)
    if not hub.missing_blobs([digest]):  # (a malformed digest is a 400 there)
        return JSONResponse({"digest": digest, "stored": False}, status_code=200)
    size = await hub.put_blob(digest, request.stream())
    return JSONResponse({"digest": digest, "stored": True, "size": size}, status_code=201)


@router.head("/blobs/sha256/{digest}")
async def has_blob(request: Request, digest: str) -> Response:
    return Response(status_code=404 if hub_of(request).missing_blobs([digest]) else 200)
