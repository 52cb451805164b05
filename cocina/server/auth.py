"""Bearer-token auth for `/v1/*`: the token is kept as a SHA-256 digest and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from cocina.server.errors import Unauthorized


class TokenAuth:
    """`check(request)` raises `Unauthorized` unless the request carries the token (or no token is
    configured)."""

    def __init__(self, token: str | None) -> None:
        self._digest = hashlib.sha256(token.encode()).digest() if token else None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def check(self, request: Request) -> None:
        if self._digest is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not given:
            raise Unauthorized("You did not pass an authentication token.")
        if not hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), self._digest):
            raise Unauthorized("Invalid authentication token.")


def check_auth(request: Request) -> None:
    """FastAPI dependency for `/v1` routers."""
    auth: TokenAuth = request.app.state.auth
    auth.check(request)
