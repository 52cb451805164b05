"""A real HTTP server on 127.0.0.1 whose timing the tests control, speaking OpenAI SSE, Replicate v1 and Cog.

Every request streams `max_tokens` tokens: the first after `ttft_s`, the next ones `itl_s` apart. Behaviour
per request comes from the prompt: "FAIL500" / "FAIL429" answer that HTTP error, "HANG" never answers,
"STREAMERR" sends an error in the stream. The model name "no-usage" leaves the usage chunk out (token counts
then come from chunks).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeState:
    ttft_s: float = 0.05
    itl_s: float = 0.02
    in_flight: int = 0
    max_in_flight: int = 0
    received: list[float] = field(default_factory=list)  # perf_counter at each generation request
    bodies: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, dict[str, Any]] = field(default_factory=dict)
    base_url: str = ""


def build_app(state: FakeState) -> Starlette:
    def control(prompt: str) -> Response | None:
        for code in (500, 429, 503):
            if f"FAIL{code}" in prompt:
                return JSONResponse({"error": {"message": f"injected {code}", "type": "x"}}, status_code=code)
        return None

    async def tokens(n: int) -> AsyncIterator[tuple[int, str]]:
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            await asyncio.sleep(state.ttft_s)
            for i in range(n):
                if i:
                    await asyncio.sleep(state.itl_s)
                yield i, f" t{i}"
        finally:
            state.in_flight -= 1

    async def root(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def openai(request: Request) -> Response:
        body = await request.json()
        state.received.append(time.perf_counter())
        state.bodies.append(body)
        chat = request.url.path.endswith("chat/completions")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        if (err := control(prompt)) is not None:
            return err
        if "HANG" in prompt:
            await asyncio.sleep(3600)
        n = int(body["max_tokens"])
        usage = body.get("model") != "no-usage" and (body.get("stream_options") or {}).get("include_usage")

        async def gen() -> AsyncIterator[str]:
            if chat:  # real servers open a chat stream with a role-only chunk, before any token exists
                yield (
                    "data: "
                    + json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
                    + "\n\n"
                )
            async for i, tok in tokens(n):
                if "STREAMERR" in prompt and i == 2:
                    yield "data: " + json.dumps({"error": {"message": "boom mid-stream"}}) + "\n\n"
                    return
                choice = {"index": 0, "delta": {"content": tok}} if chat else {"index": 0, "text": tok}
                yield "data: " + json.dumps({"choices": [choice]}) + "\n\n"
            if usage:
                u = {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": n + 5}
                yield "data: " + json.dumps({"choices": [], "usage": u}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def replicate_create(request: Request) -> Response:
        body = await request.json()
        state.received.append(time.perf_counter())
        state.bodies.append(body)
        inp = body["input"]
        if (err := control(inp["prompt"])) is not None:
            return JSONResponse(
                {"title": "error", "detail": "injected", "status": err.status_code}, err.status_code
            )
        pid = uuid.uuid4().hex[:12]
        state.predictions[pid] = inp
        pred = {
            "id": pid,
            "model": request.path_params.get("name", "x"),
            "version": "v",
            "status": "starting",
            "input": inp,
            "urls": {
                "get": f"{state.base_url}/v1/predictions/{pid}",
                "stream": f"{state.base_url}/stream/{pid}",
            },
        }
        return JSONResponse(pred, status_code=201)

    async def replicate_stream(request: Request) -> Response:
        inp = state.predictions[request.path_params["pid"]]

        async def gen() -> AsyncIterator[str]:
            async for i, tok in tokens(int(inp["max_tokens"])):
                yield f"event: output\nid: {i}\ndata: {tok}\n\n"
            yield "event: done\nid: end\ndata: {}\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def cog(request: Request) -> Response:
        body = await request.json()
        state.received.append(time.perf_counter())
        state.bodies.append(body)
        inp = body["input"]
        if (err := control(inp["prompt"])) is not None:
            return JSONResponse({"detail": "injected"}, err.status_code)

        async def gen() -> AsyncIterator[str]:
            yield "event: start\ndata: {}\n\n"
            out = []
            async for i, tok in tokens(int(inp["max_tokens"])):
                out.append(tok)
                yield "event: output\ndata: " + json.dumps({"chunk": tok, "index": i}) + "\n\n"
            final = {
                "status": "failed" if "CRASH" in inp["prompt"] else "succeeded",
                "output": out,
                "error": None,
            }
            yield "event: completed\ndata: " + json.dumps(final) + "\n\n"

        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/", root),
            Route("/v1/models", models),
            Route("/v1/completions", openai, methods=["POST"]),
            Route("/v1/chat/completions", openai, methods=["POST"]),
            Route("/v1/predictions", replicate_create, methods=["POST"]),
            Route("/v1/models/{owner}/{name}/predictions", replicate_create, methods=["POST"]),
            Route("/stream/{pid}", replicate_stream),
            Route("/predictions", cog, methods=["POST"]),
        ]
    )


@dataclass
class FakeServer:
    url: str
    state: FakeState


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeServer]:
    state = FakeState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    state.base_url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(
        build_app(state), log_level="error", lifespan="off", timeout_graceful_shutdown=1, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    yield FakeServer(state.base_url, state)
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture()
def server(fake_server: FakeServer) -> FakeServer:
    """The module's server with its counters reset and the default timing."""
    s = fake_server.state
    s.ttft_s, s.itl_s = 0.05, 0.02
    s.max_in_flight = 0
    s.received.clear()
    s.bodies.clear()
    return fake_server
