"""Bearer-token auth on every route (pure ASGI), but an explicit allowlist of probes.

With a token configured, a request without `Authorization: Bearer <token>` (or `Token <token>`, as the
`replicate` client may send) gets 401 in its API's own error shape, whatever the route: Cog's `/predictions`,
`cancel` and `POST /shutdown` included. The allowlist is `/health` and `/health-check` (orchestrators probe
them without credentials) and `/metrics` when it is configured public. The token is kept as a SHA-256 digest
and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from cocina.server.errors import Unauthorized, error_response, surface_for_path

PROBES = frozenset({"/health", "/health-check"})


class TokenAuthMiddleware:
    """Refuses requests without the token (when one is set); `allow` are the paths that need none."""

    def __init__(self, app: ASGIApp, token: str | None, *, public_metrics: bool = False) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest() if token else None
        self.allow = PROBES | ({"/metrics"} if public_metrics else frozenset())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._digest is None or scope.get("path", "") in self.allow:
            await self.app(scope, receive, send)
            return
        problem = self._check(scope)
        if problem is not None:
            response = error_response(surface_for_path(scope.get("path", "")), Unauthorized(problem))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> str | None:
        """Why the request is refused, or None."""
        header = ""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        scheme, _, given = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not given.strip():
            return "You did not pass an authentication token."
        assert self._digest is not None
        if not hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), self._digest):
            return "Invalid authentication token."
        return None
