"""Domain exceptions and the one mapping from an exception to each surface's error body.

Three surfaces answer errors three ways:

- Cog (`/`, `/predictions...`): FastAPI's `{"detail": ...}`, with 422 `detail[]` items for invalid input.
- Replicate (`/v1/...`): RFC 7807 problem+json `{"title", "detail", "status"}`.
- OpenAI (`/v1/completions`, `/v1/chat/completions`, `GET /v1/models`): `{"error": {"message", "type",
"param",
  "code"}}`.

Handlers call `error_response(surface_for_path(path), exc)`; so do the middlewares (413) — one place decides shapes.
Nothing ever echoes an exception's repr or a traceback to the client.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from cocina.server.backend import InvalidInput

log = logging.getLogger("cocina.server")


class Surface(enum.Enum):
    COG = "cog"
    REPLICATE = "replicate"
    OPENAI = "openai"


_OPENAI_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/models")


def surface_for_path(path: str) -> Surface:
    """Which API a path belongs to (decides the error shape)."""
    if path.rstrip("/") in _OPENAI_PATHS:
        return Surface.OPENAI
    if path.startswith("/v1/"):
        return Surface.REPLICATE
    return Surface.COG


class ApiError(Exception):
    """An error with an HTTP status and a message safe to show to the client."""

    status: int = 400
    title: str = "Bad request"
    openai_type: str = "invalid_request_error"
    openai_code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status = 400
    title = "Bad request"


class Unauthorized(ApiError):
    status = 401
    title = "Unauthenticated"
    openai_code = "invalid_api_key"


class NotFound(ApiError):
    status = 404
    title = "Not found"
    openai_code = "model_not_found"


class PayloadTooLarge(ApiError):
    status = 413
    title = "Request entity too large"


class QueueFull(ApiError):
    """Every running slot is busy and the bounded queue is full."""

    status = 429
    title = "Too many requests"
    openai_type = "rate_limit_exceeded"
    openai_code = "rate_limit_exceeded"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "Request was throttled: the prediction queue is full. "
            f"Expected available in {retry_after_s} seconds.",
            headers={"Retry-After": str(retry_after_s)},
        )
        self.retry_after_s = retry_after_s


class Unavailable(ApiError):
    """Setup has not finished, failed, or the server is draining."""

    status = 503
    title = "Service unavailable"
    openai_type = "server_error"
    openai_code = "service_unavailable"


class ContextLengthExceeded(BadRequest):
    openai_code = "context_length_exceeded"


class RequestInvalid(Exception):
    """The request body does not have the shape the endpoint expects (not the predictor's input:
    `InvalidInput`)."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("invalid request")
        self.errors = [_safe_error_item(e) for e in errors]


def _safe_error_item(e: Mapping[str, Any]) -> dict[str, Any]:
    # pydantic error items may hold the offending object under "input"/"ctx"; keep only JSON-safe basics.
    loc = [x if isinstance(x, int | str) else str(x) for x in e.get("loc", ())]
    return {"loc": loc, "msg": str(e.get("msg", "invalid")), "type": str(e.get("type", "value_error"))}


def _describe(errors: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        parts.append(f"{'.'.join(loc) or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _param(errors: Sequence[Mapping[str, Any]]) -> str | None:
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body"]
        if loc:
            return loc[0]
    return None


def _cog(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


def _problem(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"title": title, "detail": detail, "status": status, **extra},
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/problem+json",
    )


def _openai(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


_HTTP_TITLES = {404: "Not found", 405: "Method not allowed", 400: "Bad request", 401: "Unauthenticated"}


def error_response(surface: Surface, exc: BaseException) -> JSONResponse:
    """The response `surface` gives for `exc`; unknown exceptions become a generic 500 without details."""
    if isinstance(exc, InvalidInput):
        errors = [_safe_error_item(e) for e in exc.errors]
        if surface is Surface.COG:
            return _cog(422, errors)
        if surface is Surface.REPLICATE:
            fields = [
                {"type": e["type"], "field": ".".join(str(x) for x in e["loc"][1:]), "description": e["msg"]}
                for e in errors
            ]
            return _problem(422, "Input validation failed", _describe(errors), invalid_fields=fields)
        return _openai(400, _describe(errors), "invalid_request_error", _param(errors))
    if isinstance(exc, RequestInvalid):
        if surface is Surface.COG:
            return _cog(422, exc.errors)
        if surface is Surface.REPLICATE:
            return _problem(422, "Invalid request", _describe(exc.errors))
        return _openai(400, _describe(exc.errors), "invalid_request_error", _param(exc.errors))
    if isinstance(exc, ApiError):
        if surface is Surface.COG:
            return _cog(exc.status, exc.message, exc.headers)
        if surface is Surface.REPLICATE:
            return _problem(exc.status, exc.title, exc.message, exc.headers)
        return _openai(exc.status, exc.message, exc.openai_type, exc.param, exc.openai_code, exc.headers)
    if isinstance(exc, StarletteHTTPException):
        message = str(exc.detail) if exc.detail else _HTTP_TITLES.get(exc.status_code, "Error")
        headers = dict(exc.headers or {})
        if surface is Surface.COG:
            return _cog(exc.status_code, message, headers)
        if surface is Surface.REPLICATE:
            title = _HTTP_TITLES.get(exc.status_code, "Error")
            return _problem(exc.status_code, title, message, headers)
        return _openai(exc.status_code, message, "invalid_request_error", headers=headers)
    log.error("unhandled error", exc_info=exc)
    if surface is Surface.COG:
        return _cog(500, "Internal server error")
    if surface is Surface.REPLICATE:
        return _problem(500, "Internal server error", "The server failed to handle the request.")
    return _openai(500, "The server failed to handle the request.", "server_error")
