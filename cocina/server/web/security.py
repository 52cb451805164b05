"""What keeps the web pages safe: response headers (a Content-Security-Policy without inline scripts), the
signed-in key's cookie, and protection against cross-site requests.

- **Sign-in.** With a key configured, a browser signs in once with a form; the key is then kept in an HttpOnly,
  SameSite=Lax cookie (`cocina_key`), which the auth middleware reads as one more place a key may come from
  (`credential_from_cookie`). Scripts never see it.
- **Cross-site requests.** A request authenticated by that cookie and not a GET must carry the page's CSRF token
  in the `X-Cocina-CSRF` header: an HMAC of the key (so it proves the page was served to that key's holder and
  reveals nothing of it). Without keys, the page's own API (`/-/api/`) still asks for the header, which a
  cross-site form cannot send, and refuses an `Origin` that is not the server's own. The sign-in form is
  protected by a double-submitted token (a cookie and a form field).

`check_key` is the seam to the server's credentials: the guard's API keys once any exist, else the single API
token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from starlette.requests import Request, cookie_parser
from starlette.types import Scope

SESSION_COOKIE = "cocina_key"
LOGIN_COOKIE = "cocina_signin"  # the sign-in form's double-submitted token
CSRF_HEADER = "x-cocina-csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Scripts and styles only from the server itself; images and media from it, from data: URLs (small outputs) and
# blob: (a picked file's preview); nothing framed, no plugins, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' data: blob:; connect-src 'self'; font-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)


def page_headers() -> dict[str, str]:
    """Headers of every HTML page (and static asset). The referrer only to this server: a share page's URL is
    its secret, and must not leave in a `Referer` to anywhere else (`no-referrer` would also blank the `Origin`
    of the page's own form posts, which the sign-in checks)."""
    return {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def _cookies(scope: Scope) -> dict[str, str]:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            return cookie_parser(value.decode("latin-1"))
    return {}


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def credential_from_cookie(scope: Scope) -> str | None:
    """The key a signed-in browser holds in its cookie, or None."""
    value = _cookies(scope).get(SESSION_COOKIE, "").strip()
    return value or None


def csrf_token(credential: str | None) -> str:
    """The CSRF token of pages served to the holder of `credential` (a constant without keys: the header's
    presence is what counts then)."""
    if credential is None:
        return "open"
    return hmac.new(credential.encode(), b"cocina-web-csrf", hashlib.sha256).hexdigest()


def csrf_problem(scope: Scope, credential: str) -> str | None:
    """Why a cookie-authenticated request that changes something is refused, or None."""
    if str(scope.get("method", "GET")) in SAFE_METHODS:
        return None
    given = _header(scope, CSRF_HEADER.encode()) or ""
    if not hmac.compare_digest(given.encode(), csrf_token(credential).encode()):
        return "This request lacks the page's CSRF token (X-Cocina-CSRF); reload the page and try again."
    return None


def cross_origin(request: Request) -> bool:
    """An `Origin` header naming another site than the one the request reached."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin.rstrip("/") != f"{request.url.scheme}://{request.headers.get('host', '')}"


def wants_html(scope: Scope) -> bool:
    """A browser navigating to a page (rather than a client calling the API)."""
    if scope.get("method") not in ("GET", "HEAD") or str(scope.get("path", "")).startswith("/v1/"):
        return False
    return "text/html" in (_header(scope, b"accept") or "")


def check_key(app_state: object, given: str) -> str | None:
    """Why `given` is not a credential of this server, or None: one of the guard's API keys once any exist,
    else the single API token."""
    guard = getattr(app_state, "guard", None)
    if guard is not None and guard.keyed():
        from cocina.guard.keys import failure_message

        principal = guard.authenticate(given)
        return failure_message(principal) if isinstance(principal, str) else None
    config = getattr(app_state, "config", None)
    token = getattr(config, "api_token", None)
    if not token:
        return None
    if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest()):
        return "That key is not valid here."
    return None


def keyed(app_state: object) -> bool:
    """Whether this server asks for a key (the guard's API keys, or the single token)."""
    guard = getattr(app_state, "guard", None)
    if guard is not None and guard.keyed():
        return True
    config = getattr(app_state, "config", None)
    return bool(getattr(config, "api_token", None))


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(given.encode(), expected.encode())


def new_signin_token() -> str:
    return secrets.token_urlsafe(24)


def cookie_attributes(request: Request) -> Mapping[str, object]:
    """HttpOnly, SameSite=Lax (a link from elsewhere opens the page signed in; anything that changes state needs
    the CSRF token), Secure when the server is reached over HTTPS."""
    return {"httponly": True, "samesite": "lax", "secure": request.url.scheme == "https", "path": "/"}
