"""Auth on every route (pure ASGI), but an explicit allowlist of probes and of the web's public pages: API keys
once any exist (`cocina keys create`, the guard), else the server's single token (if set).

A credential comes in `Authorization: Bearer <key>` (or `Token <key>`, as the `replicate` client may send), or,
for a browser signed in on the web page, in its HttpOnly cookie (`cocina.server.web.security`); a request the
cookie authenticates that changes anything must also carry the page's CSRF token. With keys, the key's principal
is put in the scope (`scope["state"]["principal"]`) for the routes, which pass it to admission. What scope a route
needs is `required_scopes`: `admin` for `POST /shutdown` and `/metrics`; `push` for the hub's models and versions
(creating, pushing, deleting), its blob uploads and indexes (and with `predict`, trainings, which make versions);
`deploy` for creating, changing, rolling back and deleting deployments (and `compare`, which also runs
predictions, so `predict` too); `predict` for every other write; any valid key reads. Without keys,
`COCINA_API_TOKEN` is kept as a SHA-256 digest and compared in constant time. A
refusal is 401 (403 for a missing scope or CSRF token) in the API's own shape; a browser navigating to a page
without a credential is sent to the sign-in form instead.

The allowlist is `/health` and `/health-check` (orchestrators probe them without credentials), `/metrics` when it
is configured public, and what the web serves to anyone: its static files, the sign-in form, and shared
predictions (`/p/{token}`, whose token is their own credential).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from cocina.server.errors import Forbidden, Unauthorized, error_response, surface_for_path
from cocina.server.web.security import credential_from_cookie, csrf_problem, wants_html

if TYPE_CHECKING:
    from cocina.guard import Guard

PROBES = frozenset({"/health", "/health-check"})
PUBLIC_PREFIXES = ("/-/static/", "/-/signin", "/-/signout", "/p/")
ADMIN_PATHS = frozenset({"/shutdown", "/metrics"})
READS = frozenset({"GET", "HEAD", "OPTIONS"})
HUB_PREFIX = "/v1/hub/"  # the hub's blob uploads (and the query of which are missing): only a push uses them


def required_scopes(method: str, path: str) -> tuple[str, ...]:
    """The scopes (all of them) an API key needs for `method path`; () for any valid key."""
    if path in ADMIN_PATHS:
        return ("admin",)
    if path.startswith(HUB_PREFIX):
        return ("push",)  # HEAD too: whether a blob exists says whether someone pushed that file
    if method in READS:
        return ()
    parts = path.rstrip("/").split("/")[1:]  # "/v1/models/o/n" -> ["v1", "models", "o", "n"]
    if parts[:2] == ["v1", "models"]:
        # POST /v1/models, DELETE /v1/models/o/n, POST /v1/models/o/n/versions, DELETE .../versions/{id}
        if len(parts) in (2, 4) or (len(parts) in (5, 6) and parts[4] == "versions"):
            return ("push",)
        if len(parts) == 7 and parts[4] == "versions" and parts[6] == "trainings":
            return ("predict", "push")  # a training runs, and its result is a new version of its destination
    elif parts == ["v1", "indexes"]:
        return ("push",)  # installing a pushed index version (cocina index push); a query is predict's
    elif parts[:2] == ["v1", "deployments"]:
        # POST /v1/deployments, PATCH/DELETE /v1/deployments/o/n, POST .../rollback; .../predictions is predict's
        if len(parts) in (2, 4) or (len(parts) == 5 and parts[4] == "rollback"):
            return ("deploy",)
        if len(parts) == 5 and parts[4] == "compare":
            return ("deploy", "predict")  # it runs the examples as predictions of this key
    return ("predict",)


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
    """Refuses requests without a valid key or token; `allow` are the paths that need none."""

    def __init__(
        self, app: ASGIApp, token: str | None, *, public_metrics: bool = False, guard: Guard | None = None
    ) -> None:
        self.app = app
        self._digest = hashlib.sha256(token.encode()).digest() if token else None
        self.allow = PROBES | ({"/metrics"} if public_metrics else frozenset())
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path in self.allow or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        keyed = self.guard is not None and self.guard.keyed()
        if not keyed and self._digest is None:
            await self.app(scope, receive, send)
            return
        problem = self._check(scope, keyed)
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

    def _check(self, scope: Scope, keyed: bool) -> Exception | None:
        """Why the request is refused, or None."""
        given = bearer(scope)
        from_cookie = False
        if given is None:
            given = credential_from_cookie(scope)
            from_cookie = given is not None
        problem = self._check_key(scope, given) if keyed else self._check_token(given)
        if problem is None and from_cookie:
            assert given is not None
            csrf = csrf_problem(scope, given)
            if csrf is not None:
                return Forbidden(csrf)
        return problem

    def _check_token(self, given: str | None) -> Exception | None:
        if given is None:
            return Unauthorized("You did not pass an authentication token.")
        assert self._digest is not None
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._digest):
            return Unauthorized("Invalid authentication token.")
        return None

    def _check_key(self, scope: Scope, given: str | None) -> Exception | None:
        from cocina.guard.keys import failure_message

        assert self.guard is not None
        if given is None:
            return Unauthorized(failure_message("missing"))
        principal = self.guard.authenticate(given)
        if isinstance(principal, str):
            return Unauthorized(failure_message(principal))
        for needed in required_scopes(scope.get("method", "GET"), scope.get("path", "")):
            if not principal.has_scope(needed):
                return Forbidden(f"This API key lacks the `{needed}` scope this route needs.")
        scope.setdefault("state", {})["principal"] = principal
        return None
