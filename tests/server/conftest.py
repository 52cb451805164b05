"""Live cocina servers on 127.0.0.1 for the real-client tests: uvicorn in a thread, a free port, and models in
real worker processes (the echo project of `fixtures/projects`, a tiny random-weight language model)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocina.guard import Guard, GuardConfig
from cocina.hub import Hub
from cocina.server.config import ServerConfig
from cocina.server.serve import CocinaServer, build_server
from cocina.serving import ModelSpec, Serving, ServingConfig
from cocina.serving.spec import model_spec, project_spec
from cocina.store import Store

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
ECHO = PROJECTS / "echo"
ECHO_PLAIN = PROJECTS / "echo_plain"
# A small engine for the 2-core test machine: CPU, fp32, a short context, a small KV cache.
TINY_ENGINE = {
    "device": "cpu",
    "dtype": "float32",
    "max_model_len": 256,
    "kv_cache_bytes": 8 * 2**20,
    "max_num_seqs": 8,
}


def echo_spec(name: str = "acme/echo", *, env: dict[str, str] | None = None, warm: bool = False) -> ModelSpec:
    """The echo project (iterator output, async, concurrency 4) as a model."""
    return project_spec(ECHO, name=name).replace(env=dict(env or {}), warm=warm)


def plain_spec(name: str = "acme/plain", *, warm: bool = False) -> ModelSpec:
    """A sync predictor with a plain string output."""
    return project_spec(ECHO_PLAIN, name=name).replace(warm=warm)


def llm_spec(model_dir: Path, name: str = "acme/tiny", *, warm: bool = False, **engine: Any) -> ModelSpec:
    """A tiny language model on cocina's engine (`--model DIR`)."""
    return model_spec(str(model_dir), name=name, engine_options={**TINY_ENGINE, **engine}).replace(warm=warm)


@dataclass
class LiveServer:
    """A running server: `url`, a sync httpx `client`, its `serving`, and `stop()`."""

    url: str
    server: CocinaServer
    thread: threading.Thread
    serving: Serving
    client: httpx.Client
    loop: asyncio.AbstractEventLoop

    def wait_status(self, status: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Until Cog's `/health-check` says `status`."""
        deadline = time.monotonic() + timeout_s
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            body = self.client.get("/health-check").json()
            if body["status"] == status:
                return body
            time.sleep(0.02)
        raise AssertionError(f"health never became {status}: {body}")

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's event loop (serving is not thread-safe) and return its result."""
        result: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                result["value"] = fn()
            except BaseException as exc:
                result["error"] = exc
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(10), "the server's loop did not run the call"
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Await `coro` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def runtime(self, name: str = "acme/echo") -> Any:
        return self.serving.models.by_name[name]

    def stop(self, timeout_s: float = 60.0) -> None:
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
    specs: list[ModelSpec] | None = None,
    *,
    wait: str | None = "READY",
    default: str | None = None,
    store: Store | None = None,
    api_token: str | None = None,
    public_metrics: bool = False,
    max_body_bytes: int = 16 * 2**20,
    drain_grace_s: float = 2.0,
    guard: GuardConfig | None = None,
    hub: bool | Hub = False,
    **serving: Any,
) -> LiveServer:
    """A server for `specs` (default: the echo project as `acme/echo`, warm); waits until Cog's health says
    `wait` (None: does not wait). With `guard`, the guard (keys, scanners, disclosure, audit) runs too. With
    `hub=True`, it has a hub in `data_dir/hub` (environments built offline, from `data_dir/wheels` only) and
    serves its pushed models; a `Hub` given is served as it is (its store must be `store`)."""
    sock = free_socket()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    if specs is None:
        specs = [] if hub else [echo_spec(warm=True)]
    if specs:
        specs = [s.replace(warm=True) if s.name == (default or specs[0].name) else s for s in specs]
    the_hub = hub if isinstance(hub, Hub) else None
    if hub is True:
        from cocina.hub.envs import EnvironmentBuilder
        from cocina.store import SQLiteStore

        store = store or SQLiteStore(data_dir / "predictions.db")
        (data_dir / "wheels").mkdir(parents=True, exist_ok=True)
        builder = EnvironmentBuilder(data_dir / "hub" / "envs", find_links=[str(data_dir / "wheels")], no_index=True)
        the_hub = Hub(store, data_dir / "hub", builder=builder, engine_options=TINY_ENGINE)
    fields: dict[str, Any] = {"max_queue": 8, "lease_s": 5.0, "webhook_min_interval_s": 0.5, "load_timeout_s": 60.0}
    config = ServingConfig(data_dir=data_dir, public_url=url, drain_grace_s=drain_grace_s, **{**fields, **serving})
    gate = Guard(guard, data_dir) if guard is not None else None
    service = Serving(config, specs, store=store, default=default, gate=gate, catalog=the_hub)
    server_config = ServerConfig(
        host="127.0.0.1",
        port=port,
        max_body_bytes=max_body_bytes,
        api_token=api_token,
        public_metrics=public_metrics,
        drain_grace_s=drain_grace_s,
    )
    server = build_server(service, server_config, the_hub)
    holder: dict[str, asyncio.AbstractEventLoop] = {}

    def run() -> None:
        async def main() -> None:
            holder["loop"] = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        asyncio.run(main())
        sock.close()

    thread = threading.Thread(target=run, name=f"cocina-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
    live = LiveServer(
        url, server, thread, service, httpx.Client(base_url=url, timeout=60, headers=headers), holder["loop"]
    )
    if wait:
        live.wait_status(wait)
    return live


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A READY server with the echo project as `acme/echo`."""
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        if srv.thread.is_alive():
            srv.stop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight GPT-2 with a locally trained tokenizer (and a chat template), built once."""
    from cocina.models.tiny import make_tiny_model

    return Path(make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-gpt2", arch="gpt2"))
