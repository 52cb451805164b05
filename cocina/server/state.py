"""What every route reads from the application (the `Serving` it fronts, the hub), and from a request (the URL
it reached the server at, the API key's principal, the key that keeps a user on one version of a deployment,
what its caller may see and do), and the guard's response headers it sets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from cocina.guard.keys import Principal
from cocina.server.errors import NotFound, limit_headers
from cocina.serving import Serving
from cocina.serving.gate import Ticket
from cocina.store import PredictionRecord

if TYPE_CHECKING:
    from cocina.hub import Hub

STICKY_HEADER = "cocina-sticky"
STICKY_COOKIE = "cocina_sticky"


def serving_of(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


def hub_of(request: Request) -> Hub:
    """The server's hub; `NotFound` on a server started without one (a test's)."""
    hub: Hub | None = getattr(request.app.state, "hub", None)
    if hub is None:
        raise NotFound("This server has no hub: models cannot be pushed or deployed here.")
    return hub


def base_url(request: Request) -> str:
    """The URL this request reached the server at (for the URLs in answers)."""
    return str(request.base_url).rstrip("/")


def principal_of(request: Request) -> Principal | None:
    """The API key's principal the auth middleware resolved (None without keys)."""
    principal = request.scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else None


def may_see(request: Request, rec: PredictionRecord | None) -> bool:
    """Whether the request's key may see this prediction: its own, or any with the `admin` scope (all, without
    keys)."""
    if rec is None:
        return False
    principal = principal_of(request)
    return principal is None or principal.has_scope("admin") or rec.principal == principal.id


def may_use_model(request: Request, name: str) -> bool:
    principal = principal_of(request)
    return principal is None or principal.allows_model(name)


def disclosure_header(marker: dict[str, Any] | None) -> dict[str, str]:
    """`AI-Disclosure` (draft-abaris-aicdh, an RFC 9651 dictionary) for an answer with this marker."""
    if not marker:
        return {}
    parts = [f"mode={marker.get('mode', 'machine-generated')}"]
    for key in ("model", "provider"):
        if marker.get(key):
            parts.append(f'{key}="{marker[key]}"')
    return {"AI-Disclosure": ", ".join(parts)}


def set_guard_headers(request: Request, ticket: Ticket | None = None, rec: PredictionRecord | None = None) -> None:
    """Ask the guard-headers middleware to add the key's rate-limit headers and the answer's AI disclosure."""
    headers: dict[str, str] = {}
    if ticket is not None:
        headers.update(limit_headers(ticket.limits))
        headers.update(disclosure_header(ticket.record.get("ai_disclosure")))
    if rec is not None:
        headers.update(disclosure_header(rec.guard.get("ai_disclosure")))
    if headers:
        request.scope.setdefault("state", {}).setdefault("guard_headers", {}).update(headers)


def sticky_key(request: Request) -> str | None:
    """What keeps one user on one version of a deployment: the `Cocina-Sticky` header, else the
    `cocina_sticky` cookie, else the caller's API key's id (stable across its rotations), else the caller's
    credentials (each token is one user)."""
    given = request.headers.get(STICKY_HEADER) or request.cookies.get(STICKY_COOKIE)
    if given:
        return given
    principal = principal_of(request)
    if principal is not None:
        return f"key:{principal.id}"
    token = request.headers.get("authorization", "").partition(" ")[2]
    return f"token:{token.strip()}" if token.strip() else None


# What a caller may see and do, which every route asks rather than deciding: without API keys (one token or
# none), everything; with the guard's keys, a key sees its own predictions and `admin` sees and does everything.


def principal_id(request: Request) -> str | None:
    """Who is asking, as stored on their predictions and shares (an API key's id; None with a single token)."""
    principal = principal_of(request)
    return principal.id if principal is not None else None


def history_principal(request: Request) -> str | None:
    """The principal whose predictions a history lists (None: everyone's, which the caller may see)."""
    principal = principal_of(request)
    return None if principal is None or principal.has_scope("admin") else principal.id


def may_admin(request: Request) -> bool:
    """Whether the caller may load and unload models."""
    principal = principal_of(request)
    return principal is None or principal.has_scope("admin")
