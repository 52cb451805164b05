"""Running the app under uvicorn with Cog's drain semantics.

On SIGTERM (or `POST /shutdown`) the server stops listening at once, drains the runtime — running predictions may
finish within `drain_grace_s`, the rest are canceled — and only then closes connections, so requests waiting on a
prediction get its final state rather than a reset.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from cocina.server.app import create_app
from cocina.server.backend import PredictorBackend, TextGenerator
from cocina.server.runtime import Runtime
from cocina.server.settings import ServerSettings


class CocinaServer(uvicorn.Server):
    """A uvicorn server that drains the prediction runtime before closing connections."""

    app: FastAPI
    settings: ServerSettings

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in getattr(self, "servers", []):
            server.close()  # stop accepting new connections first
        runtime: Runtime | None = getattr(self.app.state, "runtime", None)
        if runtime is not None:
            await runtime.drain(self.settings.drain_grace_s)
        await super().shutdown(sockets)


def build_server(
    settings: ServerSettings, backend: PredictorBackend, generator: TextGenerator | None = None
) -> CocinaServer:
    """A server ready to `run()` (blocking) or `serve(sockets=...)`."""
    holder: list[CocinaServer] = []

    def request_shutdown() -> None:
        if holder:
            holder[0].should_exit = True

    app = create_app(settings, backend, generator, request_shutdown=request_shutdown)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # the request-id middleware writes one structured line per request
        lifespan="on",
        timeout_graceful_shutdown=int(settings.drain_grace_s) + 15,
    )
    server = CocinaServer(config)
    server.app = app
    server.settings = settings
    holder.append(server)
    return server
