"""The one mapping from an error to each API's response: Cog `{"detail"}`, Replicate problem+json, OpenAI
`{"error"}`.

Serving's domain errors (`cocina.serving.errors`) get their HTTP status here; `ApiError` covers what only HTTP
knows (a bad header, a missing token, a body too large, an unknown route). Handlers and middleware all call
`error_response(surface_for_path(path), exc)`. Nothing ever echoes an exception's repr or a traceback.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from cocina.serving import errors as serving
from cocina.serving import gate

log = logging.getLogger("cocina.server")


class Surface(enum.Enum):
    COG = "cog"
    REPLICATE = "replicate"
    OPENAI = "openai"


_OPENAI_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/embeddings")


def surface_for_path(path: str) -> Surface:
    """Which API a path belongs to (decides the error shape). The web page's own API (`/-/api/`) answers as
    Replicate's does."""
    if path.rstrip("/") in _OPENAI_PATHS:
        return Surface.OPENAI
    if path.startswith(("/v1/", "/-/")):
        return Surface.REPLICATE
    return Surface.COG


class ApiError(Exception):
    """An HTTP-level error with a status and a message safe to show to the client."""

    status: int = 400
    title: str = "Bad request"
    openai_type: str = "invalid_request_error"
    openai_code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, headers: Mapping[str, str] | None = None) -> None:
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


class Forbidden(ApiError):
    status = 403
    title = "Forbidden"
    openai_type = "permission_error"
    openai_code = "permission_denied"


class HeadersTooLarge(ApiError):
    status = 431
    title = "Request header fields too large"


class NotFound(ApiError):
    status = 404
    title = "Not found"


class PayloadTooLarge(ApiError):
    status = 413
    title = "Request entity too large"


class GenerationFailed(ApiError):
    """A language-model request that was admitted but failed in the engine."""

    status = 500
    title = "Generation failed"
    openai_type = "server_error"


class RequestInvalid(Exception):
    """The request body does not have the shape the endpoint expects (not the predictor's input)."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("invalid request")
        self.errors = [_safe_error_item(e) for e in errors]


@dataclass(frozen=True)
class _Status:
    status: int
    title: str
    openai_type: str = "invalid_request_error"
    openai_code: str | None = None


# Serving's errors, most specific first (ContextLengthExceeded is an InvalidRequest).
_SERVING: tuple[tuple[type[serving.ServingError], _Status], ...] = (
    (serving.ModelNotFound, _Status(404, "Not found", openai_code="model_not_found")),
    (serving.PredictionNotFound, _Status(404, "Not found")),
    (serving.IndexNotFound, _Status(404, "Not found", openai_code="index_not_found")),
    (serving.ContextLengthExceeded, _Status(400, "Bad request", openai_code="context_length_exceeded")),
    (serving.InvalidRequest, _Status(400, "Bad request")),
    (serving.Conflict, _Status(409, "Conflict")),
    (serving.Unprocessable, _Status(422, "Unprocessable entity")),
    (serving.StreamingUnsupported, _Status(406, "Not acceptable")),
    (serving.QueueFull, _Status(429, "Too many requests", "rate_limit_exceeded", "rate_limit_exceeded")),
    (serving.ModelUnavailable, _Status(503, "Service unavailable", "server_error", "service_unavailable")),
    (serving.StoreUnavailable, _Status(503, "Service unavailable", "server_error", "service_unavailable")),
    (serving.ShuttingDown, _Status(503, "Service unavailable", "server_error", "service_unavailable")),
)


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


_HTTP_TITLES = {
    404: "Not found",
    405: "Method not allowed",
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
}


def _by_status(
    surface: Surface, st: _Status, message: str, param: str | None, headers: Mapping[str, str]
) -> JSONResponse:
    if surface is Surface.COG:
        return _cog(st.status, message, headers)
    if surface is Surface.REPLICATE:
        return _problem(st.status, st.title, message, headers)
    return _openai(st.status, message, st.openai_type, param, st.openai_code, headers)


def _field_errors(surface: Surface, errors: list[dict[str, Any]], title: str) -> JSONResponse:
    """422 (Cog, Replicate) or 400 (OpenAI) for items that each name a field."""
    if surface is Surface.COG:
        return _cog(422, errors)
    if surface is Surface.REPLICATE:
        fields = [
            {"type": e["type"], "field": ".".join(str(x) for x in e["loc"][1:]), "description": e["msg"]}
            for e in errors
        ]
        return _problem(422, title, _describe(errors), invalid_fields=fields)
    return _openai(400, _describe(errors), "invalid_request_error", _param(errors))


def limit_headers(states: Sequence[gate.LimitState]) -> dict[str, str]:
    """The rate-limit headers clients read: OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`
    and the IETF draft's `ratelimit-*` (the first, tightest limit)."""
    headers: dict[str, str] = {}
    for s in states:
        headers[f"x-ratelimit-limit-{s.name}"] = str(s.limit)
        headers[f"x-ratelimit-remaining-{s.name}"] = str(s.remaining)
        headers[f"x-ratelimit-reset-{s.name}"] = f"{max(0.0, s.reset_s):.3g}s"
    if states:
        tight = min(states, key=lambda s: s.remaining / max(1, s.limit))
        headers["ratelimit-limit"] = str(tight.limit)
        headers["ratelimit-remaining"] = str(tight.remaining)
        headers["ratelimit-reset"] = str(max(0, round(tight.reset_s)))
    return headers


def _guard_error(surface: Surface, exc: serving.ServingError) -> JSONResponse | None:
    """The guard's refusals: 403/404 for access, 429 for limits and budgets, 400 for blocked content."""
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else {}
    if isinstance(exc, gate.AccessDenied):
        if exc.hide:
            return _by_status(surface, _Status(404, "Not found", openai_code="model_not_found"), exc.message, "model",
                              {})
        return _by_status(surface, _Status(403, "Forbidden", "permission_error", "permission_denied"), exc.message,
                          None, {})
    if isinstance(exc, gate.RateLimited):
        headers.update(limit_headers(exc.limits))
        if exc.retry_after_s is None:
            headers["x-should-retry"] = "false"  # a request larger than the limit never fits: do not retry
        if surface is Surface.OPENAI:
            return _openai(429, exc.message, exc.reason, None, "rate_limit_exceeded", headers)
        if surface is Surface.REPLICATE:
            return _problem(429, "Too many requests", f"Request was throttled. {exc.message}", headers)
        return _cog(429, exc.message, headers)
    if isinstance(exc, gate.QuotaExceeded):
        headers["x-should-retry"] = "false"  # the OpenAI client would otherwise retry a spent budget
        if surface is Surface.OPENAI:
            return _openai(429, exc.message, "insufficient_quota", None, "insufficient_quota", headers)
        if surface is Surface.REPLICATE:
            return _problem(429, "Quota exceeded", exc.message, headers, code="insufficient_quota")
        return _cog(429, exc.message, headers)
    if isinstance(exc, gate.ContentBlocked):
        extra = {"x-cocina-prediction-id": exc.prediction_id} if exc.prediction_id else {}
        if surface is Surface.OPENAI:
            return _openai(400, exc.message, "invalid_request_error", None, "content_filter", extra)
        if surface is Surface.REPLICATE:
            return _problem(400, "Content blocked", exc.message, extra, scanner=exc.scanner)
        return _cog(400, exc.message, extra)
    return None


def error_response(surface: Surface, exc: BaseException) -> JSONResponse:
    """The response `surface` gives for `exc`; unknown exceptions become a generic 500 without details."""
    if isinstance(exc, gate.AccessDenied | gate.RateLimited | gate.QuotaExceeded | gate.ContentBlocked):
        response = _guard_error(surface, exc)
        assert response is not None
        return response
    if isinstance(exc, serving.InvalidInput):
        return _field_errors(surface, [_safe_error_item(e) for e in exc.errors], "Input validation failed")
    if isinstance(exc, RequestInvalid):
        if surface is Surface.REPLICATE:
            return _problem(422, "Invalid request", _describe(exc.errors))
        return _field_errors(surface, exc.errors, "Invalid request")
    if isinstance(exc, serving.InvalidModelName):
        item = {"loc": ["body", exc.param or "model"], "msg": exc.message, "type": "value_error"}
        return _field_errors(surface, [item], "Invalid model name")
    if isinstance(exc, serving.StreamingUnsupported) and surface is Surface.COG:
        return JSONResponse({"error": exc.message}, status_code=406)  # coglet's body for this refusal
    if isinstance(exc, serving.ServingError):
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else {}
        for kind, st in _SERVING:
            if isinstance(exc, kind):
                return _by_status(surface, st, exc.message, exc.param, headers)
    if isinstance(exc, ApiError):
        st = _Status(exc.status, exc.title, exc.openai_type, exc.openai_code)
        return _by_status(surface, st, exc.message, exc.param, exc.headers)
    if isinstance(exc, StarletteHTTPException):
        message = str(exc.detail) if exc.detail else _HTTP_TITLES.get(exc.status_code, "Error")
        st = _Status(exc.status_code, _HTTP_TITLES.get(exc.status_code, "Error"))
        return _by_status(surface, st, message, None, dict(exc.headers or {}))
    log.error("unhandled error", exc_info=exc)
    if surface is Surface.COG:
        return _cog(500, "Internal server error")
    if surface is Surface.REPLICATE:
        return _problem(500, "Internal server error", "The server failed to handle the request.")
    return _openai(500, "The server failed to handle the request.", "server_error")
