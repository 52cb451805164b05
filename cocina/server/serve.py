"""Running the app under uvicorn with Cog's drain semantics.

On SIGTERM (or `POST /shutdown`) the server stops listening at once, drains serving — running predictions may
finish within `drain_grace_s`, the rest are canceled, the models' processes stop — and only then closes
connections, so requests waiting on a prediction get its final state rather than a reset.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from cocina.server.app import create_app
from cocina.server.config import ServerConfig
from cocina.serving import Serving

if TYPE_CHECKING:
    from cocina.hub import Hub


class CocinaServer(uvicorn.Server):
    """A uvicorn server that drains serving before closing connections."""

    app: FastAPI
    serving: Serving
    cocina_config: ServerConfig

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in getattr(self, "servers", []):
            server.close()  # stop accepting new connections first
        await self.serving.drain(self.cocina_config.drain_grace_s)
        await super().shutdown(sockets)


def build_server(serving: Serving, config: ServerConfig, hub: Hub | None = None) -> CocinaServer:
    """A server ready to `run()` (blocking) or `serve(sockets=...)`."""
    holder: list[CocinaServer] = []

    def request_shutdown() -> None:
        if holder:
            holder[0].should_exit = True

    app = create_app(serving, config, hub=hub, request_shutdown=request_shutdown)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,  # the request-id middleware writes one structured line per request
        lifespan="on",
        timeout_graceful_shutdown=int(config.drain_grace_s) + 15,
    )
    server = CocinaServer(uv_config)
    server.app = app
    server.serving = serving
    server.cocina_config = config
    holder.append(server)
    return server
