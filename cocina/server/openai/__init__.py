"""OpenAI's API for the server's language models, and embeddings."""

from fastapi import APIRouter

from cocina.server.openai.embeddings import router as embeddings_router
from cocina.server.openai.routes import router as generation_router

router = APIRouter()
router.include_router(generation_router)
router.include_router(embeddings_router)

__all__ = ["router"]
