"""The HTML pages: the hub's index (`/`), a model's page (`/{owner}/{name}`, a version's, a prediction opened in
it), a shared prediction (`/p/{token}`), the sign-in form, and the static files.

Pages are rendered from the same objects the Replicate API answers (`model_object`, `version_objects`,
`replicate_prediction`); the page's script then talks to that API. Every page is `no-store` (it may show private
inputs) and carries the Content-Security-Policy of `security.page_headers`. A failure is an HTML page with the
status the API would have given and its message, never a stack trace.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from cocina.server.cog.routes import index as cog_index
from cocina.server.errors import ApiError, Forbidden, NotFound, Surface, error_response, surface_for_path
from cocina.server.replicate.models import (
    default_example,
    model_names,
    model_object,
    readme_of,
    version_objects,
)
from cocina.server.replicate.render import replicate_prediction
from cocina.server.state import base_url, may_admin, may_see, serving_of
from cocina.server.web import security, shares
from cocina.server.web.forms import form_fields, input_properties, output_schema
from cocina.server.web.markdown import render_markdown
from cocina.server.web.static import static_response, static_url
from cocina.serving import ModelState, Serving
from cocina.serving.errors import ServingError
from cocina.store import PredictionRecord, ShareRecord

log = logging.getLogger("cocina.server.web")

router = APIRouter(include_in_schema=False)  # before the APIs' routers: `/` for browsers, `/p/`, `/-/`
model_router = APIRouter(include_in_schema=False)  # after them: `/{owner}/{name}` would match their paths

TEMPLATES = Path(__file__).resolve().parent / "templates"
# Names a model owner cannot take on the page's URLs: the APIs' and the page's own paths.
RESERVED_OWNERS = frozenset({"v1", "p", "predictions", "shutdown", "health", "health-check", "metrics", "-"})
PAGE_SCHEMA_WAIT_S = 10.0  # a model never loaded: how long its page waits to learn its inputs


def _when(value: str | None) -> str:
    """An ISO timestamp as `2026-11-29 14:03 UTC`."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return value


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["static"] = static_url
    env.filters["when"] = _when
    env.filters["short"] = lambda v: (v or "")[:12]
    return env


@functools.lru_cache(maxsize=64)
def _readme_html(text: str) -> str:
    return render_markdown(text)


def _html(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    credential = security.credential_from_cookie(request.scope)
    keyed = security.keyed(request.app.state)
    context.setdefault("data", None)
    body = (
        _env()
        .get_template(template)
        .render(
            keyed=keyed,
            signed_in=keyed and credential is not None,
            csrf=security.csrf_token(credential if keyed else None),
            **context,
        )
    )
    headers = {**security.page_headers(), "Cache-Control": "no-store"}
    return HTMLResponse(body, status_code=status_code, headers=headers)


def _error_page(request: Request, exc: BaseException) -> HTMLResponse:
    """The page for an error: the status and message the Replicate API gives for it."""
    if isinstance(exc, ApiError | ServingError):
        answer = error_response(Surface.REPLICATE, exc)
        detail = json.loads(bytes(answer.body)).get("detail", "Something went wrong.")
        status = answer.status_code
    else:
        log.exception("page failed", exc_info=exc)
        status, detail = 500, "The server failed to show this page."
    title = {404: "Not found", 403: "Forbidden", 401: "Sign in"}.get(status, "Something went wrong")
    return _html(request, "error.html", status, title=title, status=status, detail=detail)


def page(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """A page handler whose errors are pages too. A path whose first part is one of the APIs' (`/v1/...`) is
    not a model's page: it gets the API's own 404."""

    @functools.wraps(handler)
    async def wrapped(request: Request, *args: Any, **kwargs: Any) -> Response:
        if kwargs.get("owner") in RESERVED_OWNERS:
            return error_response(surface_for_path(request.url.path), StarletteHTTPException(404))
        try:
            return await handler(request, *args, **kwargs)
        except Exception as exc:
            return _error_page(request, exc)

    return wrapped


# ---- the hub's index ---------------------------------------------------------------------------------------


def model_state(serving: Serving, name: str) -> dict[str, Any]:
    """Whether a model is warm (loaded), loading, cold or failed; whether it is kept loaded; whether it runs
    predictions now."""
    runtimes = [rt for (n, _v), rt in serving.models.runtimes.items() if n == name]
    states = {rt.model.state for rt in runtimes}
    if ModelState.READY in states:
        state = "warm"
    elif ModelState.LOADING in states:
        state = "loading"
    elif ModelState.FAILED in states:
        state = "failed"
    else:
        state = "cold"
    return {
        "state": state,
        "kept_warm": any(rt.model.warm for rt in runtimes),
        "busy": any(not rt.idle for rt in runtimes),
    }


@router.get("/")
async def index(request: Request) -> Response:
    """Browsers get the hub's index; API clients Cog's root document, as before."""
    if not security.wants_html(request.scope):
        return JSONResponse(await cog_index())
    return await _index_page(request)


@page
async def _index_page(request: Request) -> Response:
    serving = serving_of(request)
    counts = serving.run_counts()
    query = request.query_params.get("q", "").strip()
    models = []
    for name in model_names(request):
        obj = await model_object(request, name, counts, schema_wait_s=0)
        haystack = f"{name} {obj['description'] or ''}".lower()
        if query and query.lower() not in haystack:
            continue
        latest = obj["latest_version"] or {}
        models.append(
            {
                "name": name,
                "description": obj["description"],
                "run_count": obj["run_count"],
                "version": latest.get("id"),
                "version_created_at": latest.get("created_at"),
                **model_state(serving, name),
            }
        )
    return _html(
        request,
        "index.html",
        title="Models",
        models=models,
        query=query,
        may_admin=may_admin(request),
        data={"page": "index"},
    )


# ---- shared predictions ------------------------------------------------------------------------------------


def _shared(request: Request, token: str) -> tuple[ShareRecord, PredictionRecord]:
    """The live share and its prediction, or the one 404 for anything else."""
    serving = serving_of(request)
    share = shares.open_share(serving.store, token)
    rec = serving.get(share.prediction_id) if share is not None else None
    if share is None or rec is None:
        raise NotFound("This shared prediction does not exist (or is no longer shared).")
    return share, rec


@router.get("/p/{token}")
@page
async def shared_page(request: Request, token: str) -> Response:
    """A shared prediction, read-only, to anyone with the link (no key needed)."""
    share, rec = _shared(request, token)
    shown = replicate_prediction(rec, "")
    runtime = serving_of(request).models.runtimes.get((rec.model or "", rec.version or ""))
    schema = (runtime.model.schema if runtime is not None else None) or {}
    if not schema and rec.model and rec.version:
        stored = serving_of(request).store.get_version(rec.model, rec.version)
        schema = stored.openapi_schema if stored is not None else {}
    secrets = {name for name, prop, _required in input_properties(schema) if prop.get("format") == "password"}
    given = {k: ("**********" if k in secrets else v) for k, v in (rec.input or {}).items()}
    # The reader has no key: only what the prediction holds is shown (its Secret inputs masked, as Cog masks them
    # in logs), its files through the share itself.
    public = {
        "id": rec.id,
        "model": rec.model,
        "version": rec.version,
        "status": rec.status.value,
        "input": shares.through_share(given, token) if rec.input is not None else None,
        "output": shares.through_share(rec.output, token),
        "error": rec.error,
        "created_at": rec.created_at,
        "completed_at": rec.completed_at,
        "metrics": shown["metrics"],
        "data_removed": rec.data_removed,
        # The passages the answer was given (RAG): part of the prediction, shared with it.
        **({"sources": rec.sources} if rec.sources is not None else {}),
        **({"retrieval": rec.retrieval} if rec.retrieval is not None else {}),
    }
    inputs = [
        (k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in (public["input"] or {}).items()
    ]
    return _html(
        request,
        "share.html",
        title=f"{rec.model}: a shared prediction",
        prediction=public,
        inputs=inputs,
        share=share,
        tweak_url=f"/{rec.model}?share={quote(token)}#playground",
        data={"page": "share", "prediction": public, "output": output_schema(schema)},
    )


@router.api_route("/p/{token}/files/{file_id}", methods=["GET", "HEAD"])
async def shared_file(request: Request, token: str, file_id: str) -> Response:
    """A file that a shared prediction's input or output names, and no other."""
    try:
        _share, rec = _shared(request, token)
    except ApiError as exc:
        return _error_page(request, exc)
    if file_id not in shares.file_ids(rec.output) | shares.file_ids(rec.input):
        return _error_page(request, NotFound("Not found."))
    files = serving_of(request).files
    meta, path = files.get(file_id), files.content_path(file_id)
    if meta is None or path is None:
        return _error_page(request, NotFound("Not found."))
    headers = {**security.page_headers(), "Content-Security-Policy": "sandbox", "Cache-Control": "private"}
    return FileResponse(path, media_type=meta["content_type"], filename=meta["name"], headers=headers)


# ---- sign-in -----------------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path of this server (never `//elsewhere` or a URL)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


@router.get("/-/signin")
async def signin_form(request: Request) -> Response:
    target = _safe_next(request.query_params.get("next"))
    if not security.keyed(request.app.state):
        return RedirectResponse(target, status_code=303)
    return _signin(request, target, None, 200)


def _signin(request: Request, target: str, error: str | None, status: int) -> Response:
    token = security.new_signin_token()
    response = _html(request, "signin.html", status, title="Sign in", next=target, error=error, form_token=token)
    attrs = security.cookie_attributes(request)
    response.set_cookie(
        security.LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/-/signin",
        httponly=True,
        samesite="strict",
        secure=bool(attrs["secure"]),
    )
    return response


@router.post("/-/signin")
async def signin(request: Request) -> Response:
    """Checks the key and keeps it in the HttpOnly cookie; the form is protected by a double-submitted token."""
    if security.cross_origin(request):
        return _error_page(request, Forbidden("Sign in from this server's own page."))
    try:
        form = await request.form(max_files=0, max_fields=8)
    except Exception as exc:
        return _error_page(request, exc if isinstance(exc, ApiError) else Forbidden("The form could not be read."))
    target = _safe_next(str(form.get("next") or "/"))
    given_token = str(form.get("form_token") or "")
    expected = request.cookies.get(security.LOGIN_COOKIE, "")
    if not expected or not security.same_secret(given_token, expected):
        return _signin(request, target, "The sign-in form expired; please try again.", 403)
    key = str(form.get("key") or "").strip()
    if not key:
        return _signin(request, target, "Enter your API key.", 401)
    problem = security.check_key(request.app.state, key)
    if problem is not None:
        return _signin(request, target, problem, 401)
    response = RedirectResponse(target, status_code=303)
    attrs = security.cookie_attributes(request)
    response.set_cookie(
        security.SESSION_COOKIE,
        key,
        path="/",
        httponly=True,
        samesite="lax",
        secure=bool(attrs["secure"]),
    )
    response.delete_cookie(security.LOGIN_COOKIE, path="/-/signin")
    return response


@router.post("/-/signout")
async def signout(request: Request) -> Response:
    if security.cross_origin(request):
        return _error_page(request, Forbidden("Sign out from this server's own page."))
    credential = security.credential_from_cookie(request.scope)
    try:
        form = await request.form(max_files=0, max_fields=4)
    except Exception:
        return _error_page(request, Forbidden("The form could not be read."))
    if credential is not None and not security.same_secret(
        str(form.get("csrf") or ""), security.csrf_token(credential)
    ):
        return _error_page(request, Forbidden("This sign-out did not come from this server's page."))
    response = RedirectResponse("/-/signin" if security.keyed(request.app.state) else "/", status_code=303)
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response


# ---- static files ------------------------------------------------------------------------------------------


@router.get("/-/static/{name}")
async def static(request: Request, name: str) -> Response:
    return static_response(request, name)


# ---- a model's page ----------------------------------------------------------------------------------------


@model_router.get("/{owner}/{name}")
@page
async def model_page(request: Request, owner: str, name: str) -> Response:
    return await _model_page(request, f"{owner}/{name}")


@model_router.get("/{owner}/{name}/versions/{version_id}")
@page
async def version_page(request: Request, owner: str, name: str, version_id: str) -> Response:
    return await _model_page(request, f"{owner}/{name}", version_id=version_id)


@model_router.get("/{owner}/{name}/predictions/{prediction_id}")
@page
async def prediction_page(request: Request, owner: str, name: str, prediction_id: str) -> Response:
    """A prediction opened in its model's page (its `urls.web`): its inputs in the form, its output shown (and
    followed, if it still runs)."""
    full = f"{owner}/{name}"
    rec = serving_of(request).get(prediction_id)
    if rec is None or rec.model != full or not may_see(request, rec):
        raise NotFound("Prediction not found.")
    return await _model_page(request, full, opened=rec)


def _default_version(request: Request, full: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    """The version a prediction by `owner/name` runs: the one a served model was started with, else the newest
    pushed one."""
    runtime = serving_of(request).models.by_name.get(full)
    if runtime is not None and not runtime.model.spec.pushed:
        for v in versions:
            if v["id"] == runtime.model.version:
                return v
    return versions[0]


async def _model_page(
    request: Request, full: str, *, version_id: str | None = None, opened: PredictionRecord | None = None
) -> Response:
    serving = serving_of(request)
    base = base_url(request)
    versions = await version_objects(request, full, schema_wait_s=PAGE_SCHEMA_WAIT_S)
    if not versions:
        raise NotFound(f"Model {full} has no version yet: push one with `cocina push`.")
    obj = await model_object(request, full, serving.run_counts(), schema_wait_s=0)
    if version_id is not None:
        matches = [v for v in versions if v["id"].startswith(version_id)] if version_id else []
        if len(matches) != 1:
            raise NotFound(f"Version {version_id} of {full} not found.")
        version = matches[0]
    elif opened is not None and any(v["id"] == opened.version for v in versions):
        version = next(v for v in versions if v["id"] == opened.version)
    else:
        version = _default_version(request, full, versions)
    schema = version["openapi_schema"] or {}
    example = default_example(request, full)
    if example is not None and not may_see(request, example):
        example = None
    prefill: dict[str, Any] | None = None
    tweak = None
    token = request.query_params.get("share")
    if token:
        share = shares.open_share(serving.store, token)
        shared = serving.get(share.prediction_id) if share is not None else None
        if shared is None or shared.model != full:
            raise NotFound("This shared prediction does not exist (or is no longer shared).")
        prefill, tweak = shared.input, shared.id
    elif opened is not None:
        prefill = opened.input
    elif example is not None:
        prefill = example.input
    runtime = next(
        (rt for (n, v), rt in serving.models.runtimes.items() if n == full and v == version["id"]),
        None,
    )
    is_llm = bool(runtime.model.is_language_model) if runtime is not None else _is_llm_schema(schema)
    try:
        readme = readme_of(request, full, version["id"])
    except ApiError:
        readme = None
    # Retrieval: the model's own (`--rag`, cocina.yaml) always applies; the playground may pick an index when the
    # model has none and the server holds some (a language model only).
    spec_rag = runtime.model.spec.rag if runtime is not None else None
    indexes = serving.rag.store.names() if is_llm and spec_rag is None else []
    owner, short = full.split("/", 1)
    return _html(
        request,
        "model.html",
        title=full,
        model=full,
        owner=owner,
        short=short,
        description=obj["description"],
        run_count=obj["run_count"],
        version=version,
        versions=versions,
        pinned=version_id is not None,
        fields=form_fields(schema, prefill or {}),
        schema_known=bool(schema),
        readme_html=_readme_html(readme) if readme else None,
        is_llm=is_llm,
        indexes=indexes,
        model_rag=spec_rag,
        state=model_state(serving, full),
        may_admin=may_admin(request),
        data={
            "page": "model",
            "model": full,
            "version": version["id"],
            "versions": [{"id": v["id"], "created_at": v["created_at"]} for v in versions],
            "language_model": is_llm,
            "indexes": indexes,
            "output": output_schema(schema),
            "keyed": security.keyed(request.app.state),
            "max_body_bytes": request.app.state.config.max_body_bytes,
            "opened": replicate_prediction(opened, base) if opened is not None else None,
            "example": replicate_prediction(example, base) if example is not None and opened is None else None,
            "tweaked": tweak,
            "may_admin": may_admin(request),
        },
    )


def _is_llm_schema(schema: dict[str, Any]) -> bool:
    """A version that streams text from a prompt (the built-in language-model predictor's shape)."""
    props = schema.get("components", {}).get("schemas", {}).get("Input", {}).get("properties", {})
    out = output_schema(schema)
    return "prompt" in props and out.get("x-cog-array-display") == "concatenate"
