"""The request body size limit (pure ASGI): 413 in the surface's own error shape."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cocina.server.errors import HeadersTooLarge, PayloadTooLarge, error_response, surface_for_path

MAX_HEADER_BYTES = 32 * 1024  # all header names and values together (uvicorn's parsers allow more)


class BodySizeLimitMiddleware:
    """Refuses bodies over `max_bytes` with 413 in the surface's error shape: at once when `Content-Length`
    says so, else when the streamed body crosses the limit (the app's body read raises `PayloadTooLarge`).
    Headers over `max_header_bytes` in all get 431, on every route; paths under `exempt_prefixes` (a pushed
    file streamed to disk) are spared only the body's limit."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        max_header_bytes: int = MAX_HEADER_BYTES,
        exempt_prefixes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes
        self.exempt_prefixes = exempt_prefixes  # routes that stream their body to disk (a pushed file)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(n) + len(v) for n, v in scope.get("headers", ()))
        if header_bytes > self.max_header_bytes:
            error = HeadersTooLarge(f"The request headers are larger than the limit of {self.max_header_bytes} bytes.")
            response = error_response(surface_for_path(scope.get("path", "")), error)
            await response(scope, receive, send)
            return
        if self.exempt_prefixes and str(scope.get("path", "")).startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)  # the headers' limit holds; the body's is the route's own
            return
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        if declared is not None and declared > self.max_bytes:
            response = error_response(surface_for_path(scope.get("path", "")), self._error())
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error()
            return message

        await self.app(scope, limited_receive, send)

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than the limit of {self.max_bytes} bytes.")
