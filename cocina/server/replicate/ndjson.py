"""Long hub operations (a push, a comparison) answered as a stream of progress: with `Accept:
application/x-ndjson`, one JSON object a line (`{"progress": ...}` or the operation's own progress items), the last
holding the result or `{"error": problem}` (the status line has gone out before the outcome is known)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.responses import StreamingResponse

from cocina.server.errors import Surface, error_response
from cocina.serving.errors import ServingError

Emit = Callable[[dict[str, Any]], None]


def wants_ndjson(request: Request) -> bool:
    return "application/x-ndjson" in request.headers.get("accept", "")


def ndjson_response(
    request: Request, work: Callable[[Emit], Awaitable[dict[str, Any]]], *, finish_if_left: bool
) -> StreamingResponse:
    """Run `work(emit)` in a task of the app and stream what it emits, then its result. `finish_if_left`: a client
    that goes away leaves the work running to its end (a push: complete or absent), else it is cancelled."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def run() -> None:
        try:
            queue.put_nowait(await work(queue.put_nowait))
        except ServingError as exc:
            queue.put_nowait({"error": json.loads(bytes(error_response(Surface.REPLICATE, exc).body))})
        except Exception as exc:  # reported in the stream
            queue.put_nowait({"error": {"status": 500, "title": "Internal server error", "detail": type(exc).__name__}})
        finally:
            queue.put_nowait(None)

    request.app.state.tasks.add(task := asyncio.get_running_loop().create_task(run()))
    task.add_done_callback(request.app.state.tasks.discard)

    async def lines() -> AsyncIterator[bytes]:
        try:
            while (item := await queue.get()) is not None:
                yield (json.dumps(item) + "\n").encode()
        finally:
            if not finish_if_left and not task.done():
                task.cancel()

    return StreamingResponse(lines(), media_type="application/x-ndjson", headers={"Cache-Control": "no-store"})
