"""`create_app(settings, backend, generator)`: the FastAPI application with the three surfaces.

The lifespan opens the store, recovers it, starts the backend's setup in the background, and on shutdown drains the
runtime. Every exception goes through `errors.error_response` with the surface of the request's path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from cocina.server import cog_api
from cocina.server.auth import TokenAuth
from cocina.server.backend import InvalidInput, PredictorBackend, TextGenerator
from cocina.server.errors import ApiError, RequestInvalid, error_response, surface_for_path
from cocina.server.files import FileStore
from cocina.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from cocina.server.metrics import ServerMetrics
from cocina.server.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from cocina.server.openapi import cog_openapi
from cocina.server.openapi_v1 import full_openapi
from cocina.server.runtime import Runtime, ServerState
from cocina.server.settings import ServerSettings
from cocina.server.store import PredictionStore
from cocina.server.webhooks import WebhookSender

log = logging.getLogger("cocina.server")


def create_app(
    settings: ServerSettings,
    backend: PredictorBackend,
    generator: TextGenerator | None = None,
    *,
    request_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """The server application. `request_shutdown` is what `POST /shutdown` calls (the CLI stops uvicorn)."""
    from cocina.server import openai_api, replicate_api

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = PredictionStore(settings.db_path)
        files = FileStore(settings.files_dir, settings.base_url)
        webhooks = WebhookSender(
            min_interval_s=settings.webhook_min_interval_s, retries=settings.webhook_retries
        )
        runtime = Runtime(settings, store, backend, files, webhooks)
        runtime.renderers["cog"] = cog_api.cog_prediction
        runtime.renderers["replicate"] = lambda rec: replicate_api.replicate_prediction(rec, settings, None)
        runtime.finish_observers.append(lambda rec: metrics.observe_prediction(rec.surface, rec.status.value))
        metrics.runtime = runtime
        app.state.runtime = runtime
        app.state.files = files
        await runtime.start()
        try:
            yield
        finally:
            await runtime.drain(settings.drain_grace_s)
            store.close()

    app = FastAPI(
        title="cocina",
        lifespan=lifespan,
        openapi_url=None,  # /openapi.json is the predictor's Cog document, served below
        docs_url=None,
        redoc_url=None,
    )
    metrics = ServerMetrics(engine_stats=_engine_stats_source(backend, generator))
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.backend = backend
    app.state.generator = generator
    app.state.auth = TokenAuth(settings.api_token)
    app.state.request_shutdown = request_shutdown or (
        lambda: log.warning("POST /shutdown: no server to stop")
    )

    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(surface_for_path(request.url.path), exc)

    async def handle_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(surface_for_path(request.url.path), RequestInvalid(exc.errors()))

    for exc_type in (ApiError, RequestInvalid, InvalidInput, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, handle)
    app.add_exception_handler(RequestValidationError, handle_request_validation)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        if runtime.state in (ServerState.STARTING, ServerState.SETUP_FAILED):
            return JSONResponse(cog_openapi({}))
        return JSONResponse(cog_openapi(backend.openapi_schema))

    @app.get("/v1/openapi.json", include_in_schema=False)
    async def openapi_full(request: Request) -> Response:
        # Every surface this server has (Cog, Replicate, OpenAI when there is a generator); /openapi.json stays
        # exactly Cog's, because Cog tooling and Replicate read the predictor's Input/Output from it.
        request.app.state.auth.check(request)
        runtime: Runtime = request.app.state.runtime
        ready = runtime.state not in (ServerState.STARTING, ServerState.SETUP_FAILED)
        gen: TextGenerator | None = request.app.state.generator
        return JSONResponse(
            full_openapi(
                backend.openapi_schema if ready else {},
                settings,
                with_openai=gen is not None,
                generator_name=gen.model_name if gen is not None else None,
            )
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    app.include_router(cog_api.router)
    app.include_router(replicate_api.router)
    app.include_router(openai_api.router)
    # Outermost first: the request id wraps everything, so a 413 is logged with its id too.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware, on_response=metrics.observe_request)
    return app


def _engine_stats_source(backend: PredictorBackend, generator: TextGenerator | None) -> Callable[[], Any] | None:
    """The engine's `stats()` when the generator or the backend runs on cocina's engine (they expose
    `engine_stats`), else None: a user predictor in the worker has no engine metrics."""
    for candidate in (generator, backend):
        source = getattr(candidate, "engine_stats", None)
        if callable(source):
            return source
    return None


def app_runtime(app: Any) -> Runtime:
    """The app's runtime (after startup)."""
    runtime: Runtime = app.state.runtime
    return runtime
