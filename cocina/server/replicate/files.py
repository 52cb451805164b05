"""Replicate's files: uploads for file inputs (`POST /v1/files`), read, downloaded, deleted."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, JSONResponse, Response

from cocina.server.errors import ApiError, BadRequest, NotFound
from cocina.server.state import base_url, serving_of

router = APIRouter(prefix="/v1")


# ---- files -------------------------------------------------------------------------------------------------


@router.post("/files")
async def create_file(request: Request) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest("Upload the file as multipart/form-data with a `content` field.")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except ApiError:
        raise  # 413 from the body limit
    except Exception:
        raise BadRequest("The multipart body could not be parsed.") from None
    content = form.get("content")
    if content is None or isinstance(content, str):
        raise BadRequest("The multipart body has no `content` file field.")
    metadata: dict[str, Any] = {}
    raw_meta = form.get("metadata")
    if isinstance(raw_meta, str) and raw_meta:
        try:
            metadata = json.loads(raw_meta)
        except ValueError:
            raise BadRequest("`metadata` must be a JSON object.") from None
        if not isinstance(metadata, dict):
            raise BadRequest("`metadata` must be a JSON object.")
    data = await content.read()
    obj = serving_of(request).files.save(
        data,
        name=content.filename or "file",
        content_type=content.content_type or "application/octet-stream",
        metadata=metadata,
        base_url=base_url(request),
    )
    await form.close()
    return JSONResponse(obj, status_code=201)


@router.get("/files/{file_id}")
async def get_file(request: Request, file_id: str) -> dict[str, Any]:
    obj = serving_of(request).files.get(file_id, base_url(request))
    if obj is None:
        raise NotFound("File not found.")
    return obj


@router.get("/files/{file_id}/download")
async def download_file(request: Request, file_id: str) -> Response:
    files = serving_of(request).files
    obj = files.get(file_id)
    path = files.content_path(file_id)
    if obj is None or path is None:
        raise NotFound("File not found.")
    return FileResponse(path, media_type=obj["content_type"], filename=obj["name"])


@router.delete("/files/{file_id}")
async def delete_file(request: Request, file_id: str) -> Response:
    if not serving_of(request).files.delete(file_id):
        raise NotFound("File not found.")
    return Response(status_code=204)
