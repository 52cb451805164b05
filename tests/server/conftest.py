"""A live cocina server on 127.0.0.1 (uvicorn in a thread, a free port) for the real-client tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocina.server.backend import PredictorBackend, TextGenerator
from cocina.server.runtime import Runtime
from cocina.server.serve import CocinaServer, build_server
from cocina.server.settings import ServerSettings
from tests.server.fixtures.backends import CharGenerator, EchoBackend


@dataclass
class LiveServer:
    """A running server: `url`, a sync httpx `client`, the `backend`, and `stop()`."""

    url: str
    server: CocinaServer
    thread: threading.Thread
    backend: Any
    generator: Any
    settings: ServerSettings
    client: httpx.Client

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.server.app.state.runtime
        return runtime

    def wait_status(self, status: str, timeout_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.client.get("/health-check").json()
            if body["status"] == status:
                return body
            time.sleep(0.02)
        raise AssertionError(f"health never became {status}: {body}")

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)
        self.client.close()
        assert not self.thread.is_alive(), "server did not stop"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def start_server(
    data_dir: Path,
    backend: PredictorBackend | None = None,
    generator: TextGenerator | None = None,
    wait_for: str | None = "READY",
    **overrides: Any,
) -> LiveServer:
    sock = free_socket()
    port = sock.getsockname()[1]
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "data_dir": data_dir,
        "model_owner": "acme",
        "model_name": "echo",
        "version_id": "a" * 64,
        "concurrency": 2,
        "max_queue": 8,
        "drain_grace_s": 2.0,
        "webhook_min_interval_s": 0.5,
    }
    settings = ServerSettings(**{**fields, **overrides})
    backend = backend if backend is not None else EchoBackend()
    server = build_server(settings, backend, generator)
    holder: dict[str, asyncio.AbstractEventLoop] = {}

    def run() -> None:
        async def main() -> None:
            holder["loop"] = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        asyncio.run(main())
        sock.close()

    thread = threading.Thread(target=run, name=f"cocina-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    live = LiveServer(url, server, thread, backend, generator, settings, httpx.Client(base_url=url, timeout=30))
    if wait_for:
        live.wait_status(wait_for)
    return live


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A READY server with an iterator-output echo backend and a character generator."""
    srv = start_server(tmp_path / "data", EchoBackend(iterator=True), CharGenerator())
    try:
        yield srv
    finally:
        if srv.thread.is_alive():
            srv.stop()


@pytest.fixture
def live_plain(tmp_path: Path) -> Iterator[LiveServer]:
    """A READY server whose predictor has a plain (non-iterator) string output."""
    srv = start_server(tmp_path / "data", EchoBackend(iterator=False))
    try:
        yield srv
    finally:
        if srv.thread.is_alive():
            srv.stop()
