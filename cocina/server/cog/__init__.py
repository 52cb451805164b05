"""Cog's HTTP API, as the server inside a Cog container serves it, on the server's default model."""

from cocina.server.cog.render import cog_prediction
from cocina.server.cog.routes import router

__all__ = ["cog_prediction", "router"]
