"""The page's static files (one script, one stylesheet, a theme switch), read once from the package and kept in
memory with a gzip copy and a content hash.

URLs carry the hash (`/-/static/app.js?v=1a2b3c4d`), so a browser may keep a file for a year and still gets the
new one after an upgrade; a request without the current hash is answered with `no-cache` and an ETag instead.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from cocina.server.errors import NotFound
from cocina.server.web.security import page_headers

STATIC_DIR = Path(__file__).resolve().parent / "static"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    content_type: str
    version: str  # the first hex digits of the content's SHA-256


def _load() -> dict[str, Asset]:
    assets = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.is_file() and path.suffix in _TYPES:
            body = path.read_bytes()
            assets[path.name] = Asset(
                body, gzip.compress(body, 9, mtime=0), _TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:12]
            )
    return assets


_ASSETS: dict[str, Asset] = {}


def assets() -> dict[str, Asset]:
    if not _ASSETS:
        _ASSETS.update(_load())
    return _ASSETS


def static_url(name: str) -> str:
    """The URL of a static file, with its content hash."""
    return f"/-/static/{name}?v={assets()[name].version}"


def static_response(request: Request, name: str) -> Response:
    asset = assets().get(name)
    if asset is None:
        raise NotFound("No such file.")
    etag = f'"{asset.version}"'
    headers = {**page_headers(), "ETag": etag, "Vary": "Accept-Encoding"}
    if request.query_params.get("v") == asset.version:
        headers["Cache-Control"] = "public, max-age=31536000, immutable"
    else:
        headers["Cache-Control"] = "no-cache"
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.content_type, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)
