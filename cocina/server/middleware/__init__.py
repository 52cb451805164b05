"""Pure ASGI middleware: request ids and the access log, the body and header size limits, auth (keys or
a token), and the guard's response headers."""

from cocina.server.middleware.auth import TokenAuthMiddleware
from cocina.server.middleware.body_limit import BodySizeLimitMiddleware
from cocina.server.middleware.guard_headers import GuardHeadersMiddleware
from cocina.server.middleware.request_id import RequestIdMiddleware

__all__ = ["BodySizeLimitMiddleware", "GuardHeadersMiddleware", "RequestIdMiddleware", "TokenAuthMiddleware"]
