"""Headers the guard decides, added to a route's response (pure ASGI): the rate-limit headers of the key's
limits and `AI-Disclosure` on generated answers. Routes put them in `scope["state"]["guard_headers"]`; this adds
them when the response starts, streams included."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class GuardHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra: dict[str, str] = scope.get("state", {}).get("guard_headers") or {}
                if extra:
                    present = {n.lower() for n, _ in message.get("headers", ())}
                    headers = list(message.get("headers", ()))
                    headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in extra.items()
                                if k.lower().encode() not in present]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
