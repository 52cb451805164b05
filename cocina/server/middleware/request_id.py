"""Request ids with one structured access-log line per request (pure ASGI)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("cocina.server.access")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Gives every request an id (the client's `X-Request-Id` if sane, else a new one), returns it as
    `X-Request-Id`, and logs one JSON line per request when the response ends.

    `on_response(path, method, status, duration_s)` is called then too (the metrics); it must not raise.
    """

    def __init__(self, app: ASGIApp, on_response: Callable[[str, str, int, float], None] | None = None) -> None:
        self.app = app
        self.on_response = on_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = value.decode("latin-1")
                break
        request_id = given if _CLIENT_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 0
        sent = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration_s = time.perf_counter() - start
            # No response started means the app raised past every handler: the client sees a 500 (or nothing).
            final_status = status or 500
            if self.on_response is not None:
                self.on_response(str(scope.get("path", "")), str(scope.get("method")), final_status, duration_s)
            record: dict[str, Any] = {
                "event": "request",
                "request_id": request_id,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": final_status,
                "duration_ms": round(duration_s * 1000, 2),
                "bytes_out": sent,
            }
            client = scope.get("client")
            if client:
                record["client"] = client[0]
            access_log.info(json.dumps(record))
