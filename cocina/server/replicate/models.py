"""Replicate's models and versions, over the server's models and its hub's.

A model is one the server was started with (a project directory, `--model`) or one pushed to its hub; its
versions are the one it was started with and every pushed one. `GET /v1/models` answers both clients: Replicate's
`results` and OpenAI's `data` (the language models). Pushing (`POST /v1/models/{o}/{n}/versions` with a manifest,
after the files went to `/v1/hub/blobs`) checks the version before it exists; with `Accept: application/x-ndjson`
the answer streams its progress, one JSON object a line, the last holding the version or the error.

With API keys (the guard), the auth middleware has checked the route's scope (`push` for changes); a model the
key's `--models` patterns leave out is hidden here (404), in lists, reads and writes alike.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from cocina.hub.manifest import Manifest
from cocina.hub.objects import version_object
from cocina.server.bodies import parse_body
from cocina.server.errors import NotFound, RequestInvalid
from cocina.server.replicate.ndjson import Emit, ndjson_response, wants_ndjson
from cocina.server.replicate.render import replicate_prediction
from cocina.server.replicate.render import version_object as served_version
from cocina.server.state import base_url, hub_of, may_use_model, serving_of
from cocina.serving import ServedModel, Serving
from cocina.serving.errors import ModelUnavailable
from cocina.store import PredictionRecord

router = APIRouter(prefix="/v1")

SCHEMA_WAIT_S = 60.0  # a served model asked for before it ever loaded: how long to wait for its schema


class ModelCreate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    owner: str
    name: str
    visibility: Literal["public", "private"] = "private"
    hardware: str | None = None
    description: str | None = None


class VersionCreate(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    manifest: list[dict[str, Any]]


def _hub(request: Request) -> Any:
    return getattr(request.app.state, "hub", None)


def _served(serving: Serving, name: str) -> ServedModel | None:
    runtime = serving.models.by_name.get(name)
    return runtime.model if runtime is not None else None


async def _with_schema(serving: Serving, model: ServedModel, wait_s: float = SCHEMA_WAIT_S) -> ServedModel:
    """The model, its schema learnt first if it never loaded (clients read a version's schema to know the
    output's shape)."""
    if model.schema is None and wait_s > 0:
        # Else shown with an empty schema; /health-check and the prediction errors say why.
        with contextlib.suppress(ModelUnavailable):
            await model.wait_schema(min(wait_s, serving.config.load_timeout_s))
    return model


def model_names(request: Request) -> list[str]:
    """Every model's name the request's key may use: the served ones, then the hub's."""
    names = list(serving_of(request).models.by_name)
    hub = _hub(request)
    if hub is not None:
        names += [m.name for m in hub.list_models() if m.name not in names]
    return [n for n in names if may_use_model(request, n)]


def _allowed(request: Request, name: str) -> str:
    """`name`, if the request's key may use that model; else the model is hidden (404), as in predictions."""
    if not may_use_model(request, name):
        raise NotFound(f"Model {name} not found.")
    return name


def default_example(request: Request, name: str) -> PredictionRecord | None:
    """The model's default example (the prediction that pre-fills its page's form), if it has one."""
    for example in serving_of(request).store.list_examples(name):
        if example.is_default:
            return serving_of(request).get(example.prediction_id)
    return None


async def model_object(
    request: Request, name: str, counts: dict[str, int], *, schema_wait_s: float = SCHEMA_WAIT_S
) -> dict[str, Any]:
    """Replicate's model object; `schema_wait_s` 0 leaves a never-loaded served model's schema empty rather
    than loading it to learn it (the hub's index page)."""
    serving = serving_of(request)
    _allowed(request, name)
    hub = _hub(request)
    record = hub.store.get_model(name) if hub is not None else None
    pushed = hub.store.list_versions(name, pushed_only=True) if hub is not None else []
    served = _served(serving, name)
    if served is None and record is None:
        raise NotFound(f"Model {name} not found.")
    owner, short = name.split("/", 1)
    if pushed:
        latest = version_object(pushed[0])
    elif served is not None:
        latest = served_version(await _with_schema(serving, served, schema_wait_s))
    else:
        latest = None
    example = default_example(request, name)
    body = {
        "url": f"{base_url(request)}/v1/models/{name}",
        "owner": owner,
        "name": short,
        "description": record.description if record else None,
        "visibility": record.visibility if record else "private",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": counts.get(name, 0),
        "cover_image_url": None,
        "default_example": replicate_prediction(example, base_url(request)) if example is not None else None,
        "latest_version": latest,
    }
    return body


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Replicate's model page (`results`) and OpenAI's model list (`data`, language models only): both official
    clients call this path."""
    serving = serving_of(request)
    counts = serving.run_counts()
    results = [await model_object(request, name, counts) for name in model_names(request)]
    data = []
    for rt in serving.models.language_models():
        if not may_use_model(request, rt.model.name):
            continue
        created = int(datetime.fromisoformat(rt.model.version_created_at).timestamp())
        for model_id in (rt.model.name, *rt.model.spec.aliases):
            data.append({"id": model_id, "object": "model", "created": created, "owned_by": rt.model.spec.owner})
    return {"object": "list", "data": data, "next": None, "previous": None, "results": results}


@router.post("/models")
async def create_model(request: Request) -> Response:
    body = await parse_body(request, ModelCreate)
    record = hub_of(request).create_model(
        _allowed(request, f"{body.owner}/{body.name}"), description=body.description, visibility=body.visibility
    )
    return JSONResponse(await model_object(request, record.name, {}), status_code=201)


@router.get("/models/{owner}/{name}")
async def get_model(request: Request, owner: str, name: str) -> dict[str, Any]:
    return await model_object(request, f"{owner}/{name}", serving_of(request).run_counts())


@router.delete("/models/{owner}/{name}")
async def delete_model(request: Request, owner: str, name: str) -> Response:
    hub_of(request).delete_model(_allowed(request, f"{owner}/{name}"))
    return Response(status_code=204)


async def version_objects(request: Request, full: str, *, schema_wait_s: float = SCHEMA_WAIT_S) -> list[dict[str, Any]]:
    """A model's versions, newest first: the pushed ones, and the one the server was started with (last)."""
    _allowed(request, full)
    hub = _hub(request)
    results = [version_object(v) for v in (hub.store.list_versions(full, pushed_only=True) if hub else [])]
    served = _served(serving_of(request), full)
    if served is not None and served.version not in {r["id"] for r in results}:
        results.append(served_version(await _with_schema(serving_of(request), served, schema_wait_s)))
    if not results and (hub is None or hub.store.get_model(full) is None):
        raise NotFound(f"Model {full} not found.")
    return results


@router.get("/models/{owner}/{name}/versions")
async def list_versions(request: Request, owner: str, name: str) -> dict[str, Any]:
    """Newest first: the pushed versions, and the one the server was started with."""
    return {"next": None, "previous": None, "results": await version_objects(request, f"{owner}/{name}")}


@router.get("/models/{owner}/{name}/examples")
async def list_examples(request: Request, owner: str, name: str) -> dict[str, Any]:
    """The model's examples (predictions), the default first (Replicate's `models.examples`)."""
    full = f"{owner}/{name}"
    if full not in model_names(request):
        raise NotFound(f"Model {full} not found.")
    serving = serving_of(request)
    base = base_url(request)
    results = []
    for example in serving.store.list_examples(full):
        rec = serving.get(example.prediction_id)
        if rec is not None:
            results.append(replicate_prediction(rec, base))
    return {"next": None, "previous": None, "results": results}


@router.get("/models/{owner}/{name}/readme")
async def get_readme(request: Request, owner: str, name: str) -> Response:
    """The model's README.md as Markdown text (Replicate's `models.readme`); 404 when it has none."""
    text = readme_of(request, f"{owner}/{name}")
    if text is None:
        raise NotFound(f"Model {owner}/{name} has no README.")
    return Response(text, media_type="text/markdown; charset=utf-8")


def readme_of(request: Request, full: str, version: str | None = None) -> str | None:
    """The README.md of a version's project (default: the model's default version), or of its weights'
    directory for a language model given by path."""
    serving = serving_of(request)
    spec = None
    for (n, v), rt in serving.models.runtimes.items():
        if n == full and (version is None or v == version):
            spec = rt.model.spec
            if version is not None or serving.models.by_name.get(full) is rt:
                break
    hub = _hub(request)
    if spec is None and hub is not None:
        spec = hub.find(full, version)
    if spec is None:
        if full not in model_names(request):
            raise NotFound(f"Model {full} not found.")
        return None
    directories = [spec.project.root]
    if spec.engine is not None and spec.engine.model:
        directories.append(Path(spec.engine.model))
    return read_readme(directories)


MAX_README_BYTES = 512 * 1024  # a longer README is cut (a model page weighs at most 150 KB)


def read_readme(directories: list[Path]) -> str | None:
    """The first `README.md` (any case) found in `directories`, as text."""
    for directory in directories:
        try:
            candidates = sorted(p for p in directory.iterdir() if p.name.lower() == "readme.md" and p.is_file())
            for path in candidates:
                with path.open("rb") as f:
                    return f.read(MAX_README_BYTES).decode("utf-8", errors="replace")
        except OSError:
            continue
    return None


@router.get("/models/{owner}/{name}/versions/{version_id}")
async def get_version(request: Request, owner: str, name: str, version_id: str) -> dict[str, Any]:
    full = _allowed(request, f"{owner}/{name}")
    served = _served(serving_of(request), full)
    if served is not None and served.version == version_id:
        return served_version(await _with_schema(serving_of(request), served))
    hub = _hub(request)
    if hub is None:
        if served is None:
            raise NotFound(f"Model {full} not found.")
        raise NotFound(f"Version {version_id} of {full} not found.")
    return version_object(hub.get_version(full, version_id))


@router.delete("/models/{owner}/{name}/versions/{version_id}")
async def delete_version(request: Request, owner: str, name: str, version_id: str) -> Response:
    await hub_of(request).delete_version(_allowed(request, f"{owner}/{name}"), version_id)
    return Response(status_code=204)


@router.post("/models/{owner}/{name}/versions")
async def create_version(request: Request, owner: str, name: str) -> Response:
    """A pushed version: its files must have been uploaded; the version exists only once it checked out."""
    hub = hub_of(request)
    full = _allowed(request, f"{owner}/{name}")
    body = await parse_body(request, VersionCreate)
    try:
        manifest = Manifest.from_json(body.manifest)
    except ValueError as exc:
        raise RequestInvalid([{"loc": ["body", "manifest"], "msg": str(exc), "type": "value_error"}]) from None
    if not wants_ndjson(request):
        result = await hub.create_version(full, manifest)
        return JSONResponse(version_object(result.version), status_code=201 if result.created else 200)

    async def work(emit: Emit) -> dict[str, Any]:
        result = await hub.create_version(full, manifest, lambda line: emit({"progress": line}))
        return {"version": version_object(result.version), "created": result.created}

    # A push the client leaves keeps going: it completes, or leaves nothing behind.
    return ndjson_response(request, work, finish_if_left=True)
