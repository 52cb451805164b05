"""Bearer-token auth on every route (pure ASGI), but an explicit allowlist of probes and of the web's public
pages.

With a token configured, a request without `Authorization: Bearer <token>` (or `Token <token>`, as the
`replicate` client may send) gets 401 in its API's own error shape, whatever the route: Cog's `/predictions`,
`cancel` and `POST /shutdown` included. A browser signed in on the web page carries the token in its HttpOnly
cookie instead (`cocina.server.web.security`): that is one more place the token is read from, and a request it
authenticates that changes anything must also carry the page's CSRF token. A browser navigating to a page
without a token is sent to the sign-in form rather than shown a 401.

The allowlist is `/health` and `/health-check` (orchestrators probe them without credentials), `/metrics` when
it is configured public, and what the web serves to anyone: its static files, the sign-in form, and shared
predictions (`/p/{token}`, whose token is their own credential). The token is kept as a SHA-256 digest and
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cocina.server.errors import Forbidden, Unauthorized, error_response, surface_for_path
from cocina.server.web.security import credential_from_cookie, csrf_problem, wants_html

PROBES = frozenset({"/health", "/health-check"})
PUBLIC_PREFIXES = ("/-/static/", "/-/signin", "/-/signout", "/p/")


def bearer(scope: Scope) -> str | None:
    """The token of the `Authorization` header (Bearer or Token), or None."""
    header = ""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    scheme, _, given = header.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not given.strip():
        return None
    return given.strip()


class TokenAuthMiddleware:
    """Refuses requests without the token (when one is set); `allow` are the paths that need none."""

    def __init__(self, app: ASGIApp, token: str | None, *, public_metrics: bool = False) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest() if token else None
        self.allow = PROBES | ({"/metrics"} if public_metrics else frozenset())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or self._digest is None or path in self.allow or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        problem = self._check(scope)
        if problem is not None:
            response: Response
            if isinstance(problem, Unauthorized) and wants_html(scope):
                query = scope.get("query_string", b"").decode("latin-1")
                target = path + (f"?{query}" if query else "")
                response = RedirectResponse(f"/-/signin?next={quote(target, safe='')}", status_code=303)
            else:
                response = error_response(surface_for_path(path), problem)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> Exception | None:
        """Why the request is refused, or None."""
        given = bearer(scope)
        from_cookie = False
        if given is None:
            given = credential_from_cookie(scope)
            from_cookie = given is not None
        if given is None:
            return Unauthorized("You did not pass an authentication token.")
        assert self._digest is not None
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest):
            return Unauthorized("Invalid authentication token.")
        if from_cookie:
            csrf = csrf_problem(scope, given)
            if csrf is not None:
                return Forbidden(csrf)
        return None
