"""What every route reads from the application: the `Serving` it fronts, and the URL clients reach it at."""

from __future__ import annotations

from starlette.requests import Request

from cocina.serving import Serving


def serving_of(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


def base_url(request: Request) -> str:
    """The URL this request reached the server at (for the URLs in answers)."""
    return str(request.base_url).rstrip("/")
