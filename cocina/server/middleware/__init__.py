"""Pure ASGI middleware: request ids and the access log, the body size limit, token auth."""

from cocina.server.middleware.auth import TokenAuthMiddleware
from cocina.server.middleware.body_limit import BodySizeLimitMiddleware
from cocina.server.middleware.request_id import RequestIdMiddleware

__all__ = ["BodySizeLimitMiddleware", "RequestIdMiddleware", "TokenAuthMiddleware"]
