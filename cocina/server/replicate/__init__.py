"""The Replicate HTTP API v1, enough for the official `replicate` client 1.x to work with a base URL."""

from cocina.server.replicate.render import replicate_prediction
from cocina.server.replicate.routes import router

__all__ = ["replicate_prediction", "router"]
