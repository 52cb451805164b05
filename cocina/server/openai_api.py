"""The OpenAI API for language-model predictors: `/v1/models`, `/v1/completions`, `/v1/chat/completions`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from cocina.server.auth import check_auth
from cocina.server.settings import ServerSettings

router = APIRouter(prefix="/v1", dependencies=[Depends(check_auth)])


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """OpenAI's model list; it also carries Replicate's page fields (`results`, `next`), as both clients call
    it."""
    settings: ServerSettings = request.app.state.settings
    generator = request.app.state.generator
    name = generator.model_name if generator is not None else settings.model_ref
    created = 0
    data = [{"id": name, "object": "model", "created": created, "owned_by": settings.model_owner}]
    return {"object": "list", "data": data, "next": None, "previous": None, "results": []}
