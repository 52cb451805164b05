"""`create_app(serving, config)`: the FastAPI application with the three APIs and the web pages over one
`Serving`.

The lifespan starts serving (store, leases, warm models) and drains it on shutdown. Every exception goes through
`errors.error_response` with the surface of the request's path. Middleware, outermost first: request id and
access log, auth (API keys, or the token), body and header size limits, the guard's response headers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from cocina.guard import Guard
from cocina.server import audit, cog, openai, replicate
from cocina.server.config import ServerConfig
from cocina.server.errors import ApiError, RequestInvalid, error_response, surface_for_path
from cocina.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from cocina.server.metrics import ModelGauges, ServerMetrics
from cocina.server.middleware import (
    BodySizeLimitMiddleware,
    GuardHeadersMiddleware,
    RequestIdMiddleware,
    TokenAuthMiddleware,
)
from cocina.server.openapi_v1 import ModelEntry, full_openapi
from cocina.server.replicate.blobs import BLOB_PREFIX
from cocina.server.state import serving_of
from cocina.server.web import api as web_api
from cocina.server.web import pages as web_pages
from cocina.serving import ModelState, Serving
from cocina.serving.errors import ServingError

if TYPE_CHECKING:
    from cocina.hub import Hub

log = logging.getLogger("cocina.server")


def create_app(
    serving: Serving,
    config: ServerConfig,
    *,
    hub: Hub | None = None,
    request_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The server application: `serving`'s models, and `hub`'s pushed models and deployments when given.
    `request_shutdown` is what `POST /shutdown` calls (the CLI stops uvicorn)."""
    metrics = ServerMetrics()
    if hub is not None:
        hub.serving = serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving.renderers["cog"] = cog.cog_prediction
        serving.renderers["replicate"] = lambda rec: (
            replicate.replicate_training if rec.kind == "training" else replicate.replicate_prediction
        )(rec, serving.config.public_url)
        serving.book.finish_observers.append(
            lambda rec: metrics.observe_prediction(rec.surface, rec.status.value, rec.model, rec.version)
        )
        await serving.start()
        try:
            yield
        finally:
            await serving.drain(config.drain_grace_s)

    app = FastAPI(
        title="cocina",
        lifespan=lifespan,
        openapi_url=None,  # /openapi.json is the default model's Cog document (cocina.server.cog)
        docs_url=None,
        redoc_url=None,
    )
    guard = serving.gate if isinstance(serving.gate, Guard) else None
    app.state.serving = serving
    app.state.hub = hub
    app.state.tasks = set()  # work that outlives its request (a push whose client went away)
    app.state.config = config
    app.state.metrics = metrics
    app.state.guard = guard
    if guard is not None:
        metrics.guard = guard.metrics
    app.state.request_shutdown = request_shutdown or (lambda: log.warning("POST /shutdown: no server to stop"))

    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(surface_for_path(request.url.path), exc)

    async def handle_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(surface_for_path(request.url.path), RequestInvalid(exc.errors()))

    for exc_type in (ApiError, RequestInvalid, ServingError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handle)
    app.add_exception_handler(RequestValidationError, handle_request_validation)

    @app.get("/health", include_in_schema=False)
    async def health(request: Request) -> Response:
        ok, body = serving_of(request).health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/openapi.json", include_in_schema=False)
    async def openapi_full(request: Request) -> Response:
        # Every surface and model this server has; /openapi.json stays exactly Cog's (the default model's),
        # because Cog tooling and Replicate read the predictor's Input/Output from it.
        s = serving_of(request)
        default = s.models.default_name
        entries = [
            ModelEntry(
                rt.model.name,
                rt.model.version,
                rt.model.name == default,
                rt.model.spec.aliases,
                rt.model.is_language_model,
            )
            for rt in s.models
        ]
        schema = s.models.default.model.schema or {}
        return JSONResponse(full_openapi(schema, entries, max_tokens_limit=s.config.max_tokens_limit))

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        s = serving_of(request)
        engines = await s.engine_stats()
        gauges = [
            ModelGauges(
                rt.model.name,
                rt.model.version,
                rt.model.state is ModelState.READY,
                rt.num_queued,
                rt.num_running,
                rt.concurrency,
                engines.get(rt.model.name),
            )
            for rt in s.models
        ]
        return Response(metrics.render(gauges), media_type=METRICS_CONTENT_TYPE)

    app.include_router(web_pages.router)  # `/` for browsers (API clients still get Cog's), `/p/`, `/-/`
    app.include_router(cog.router)
    app.include_router(replicate.router)
    app.include_router(openai.router)
    app.include_router(web_api.router)
    app.include_router(web_pages.model_router)  # `/{owner}/{name}` last: it would match the APIs' paths
    app.include_router(audit.router)
    # add_middleware wraps: the last added is the outermost.
    app.add_middleware(GuardHeadersMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes, exempt_prefixes=(BLOB_PREFIX,))
    app.add_middleware(TokenAuthMiddleware, token=config.api_token, public_metrics=config.public_metrics, guard=guard)
    app.add_middleware(RequestIdMiddleware, on_response=metrics.observe_request)
    return app
