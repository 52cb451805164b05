"""What every route reads from the application (the `Serving` it fronts, the hub), and from a request (the URL
it reached the server at, the key that keeps a user on one version of a deployment, what its caller may see and
do)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from cocina.server.errors import NotFound
from cocina.serving import Serving
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


def sticky_key(request: Request) -> str | None:
    """What keeps one user on one version of a deployment: the `Cocina-Sticky` header, else the
    `cocina_sticky` cookie, else the caller's credentials (each API token is one user)."""
    given = request.headers.get(STICKY_HEADER) or request.cookies.get(STICKY_COOKIE)
    if given:
        return given
    token = request.headers.get("authorization", "").partition(" ")[2]
    return f"token:{token.strip()}" if token.strip() else None


# What a caller may see and do. One API token (or none) lets its holder see and do everything; API keys with
# scopes and per-key predictions (the guard) narrow these four, and every route asks them rather than deciding.


def principal_id(request: Request) -> str | None:
    """Who is asking, as stored on their predictions and shares (an API key's id; None with a single token)."""
    return None


def may_see(request: Request, rec: PredictionRecord | None) -> bool:
    """Whether the caller may see this prediction (its inputs, outputs, shares)."""
    return rec is not None


def history_principal(request: Request) -> str | None:
    """The principal whose predictions a history lists (None: everyone's, which the caller may see)."""
    return None


def may_admin(request: Request) -> bool:
    """Whether the caller may load and unload models."""
    return True
