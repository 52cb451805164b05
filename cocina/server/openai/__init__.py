"""OpenAI's API for the server's language models."""

from cocina.server.openai.routes import router

__all__ = ["router"]
