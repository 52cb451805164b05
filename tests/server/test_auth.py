"""With a token set, every route needs it (Cog's included), in each API's own error shape; the probes do not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import replicate
from starlette.routing import Route

from cocina.server.middleware.auth import PUBLIC_PREFIXES
from tests.server.conftest import LiveServer, start_server

TOKEN = "s3cret-token"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[LiveServer]:
    srv = start_server(tmp_path / "d", api_token=TOKEN)
    try:
        yield srv
    finally:
        srv.stop()


def _flat(routes: list[Any], prefix: str = "") -> list[tuple[str, Route]]:
    """(prefix, route) of every route, also those inside included routers: FastAPI 0.165 keeps an included
    router as one `_IncludedRouter` entry rather than copying its routes (then a plain walk misses them all)."""
    out: list[tuple[str, Route]] = []
    for route in routes:
        if isinstance(route, Route):
            out.append((prefix, route))
        elif hasattr(route, "original_router"):
            context = getattr(route, "include_context", None)
            out += _flat(route.original_router.routes, prefix + str(getattr(context, "prefix", "") or ""))
    return out


def _routes(srv: LiveServer) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, path parameters filled with a sample value."""
    out = []
    for prefix, route in _flat(srv.server.app.routes):
        path = (prefix + route.path).replace("{owner}", "acme").replace("{name}", "echo")
        for param in ("{prediction_id}", "{file_id}", "{version_id}"):
            path = path.replace(param, "x")
        out += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return sorted(set(out))


def test_every_route_but_the_probes_needs_the_token(guarded: LiveServer) -> None:
    routes = _routes(guarded)
    assert ("POST", "/predictions") in routes and ("POST", "/shutdown") in routes and ("GET", "/metrics") in routes
    # Every API's routes are walked, those of included routers too (Replicate's, the hub's, the audit log's).
    for expected in [
        ("POST", "/v1/predictions"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/deployments/acme/echo/predictions"),
        ("PUT", "/v1/hub/blobs/sha256/{digest}"),
        ("POST", "/v1/files"),
        ("GET", "/v1/audit/checkpoint"),
    ]:
        assert expected in routes, expected
    open_ = {("GET", "/health"), ("GET", "/health-check")}
    for method, path in routes:
        r = httpx.request(method, f"{guarded.url}{path}", json={})
        if (method, path) in open_:
            assert r.status_code in (200, 503), (method, path)
            continue
        if path.startswith(PUBLIC_PREFIXES):  # the web's static files, sign-in form and shared predictions
            assert r.status_code != 401, (method, path)
            continue
        assert r.status_code == 401, (method, path, r.status_code)
        body = r.json()
        if path in ("/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/embeddings"):
            assert body["error"]["code"] == "invalid_api_key"
        elif path.startswith(("/v1/", "/-/")):
            assert r.headers["content-type"].startswith("application/problem+json") and body["status"] == 401
        else:
            assert body == {"detail": "You did not pass an authentication token."}
    assert guarded.thread.is_alive()  # POST /shutdown without the token did not stop it


def test_a_wrong_token_and_the_right_one(guarded: LiveServer) -> None:
    wrong = httpx.post(
        f"{guarded.url}/predictions", json={"input": {"text": "x"}}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["detail"] == "Invalid authentication token."
    right = httpx.post(
        f"{guarded.url}/predictions",
        json={"input": {"text": "x", "n": 1}},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert right.status_code == 200 and right.json()["output"] == ["x0"]
    token_scheme = httpx.get(f"{guarded.url}/v1/predictions", headers={"Authorization": f"Token {TOKEN}"})
    assert token_scheme.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{guarded.url}/v1", api_key="nope", max_retries=0).models.list()
    assert replicate.Client(api_token=TOKEN, base_url=guarded.url).models.get("acme/echo").name == "echo"
    cancel = httpx.post(f"{guarded.url}/predictions/x/cancel")
    assert cancel.status_code == 401


def test_metrics_can_be_public(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", api_token=TOKEN, public_metrics=True)
    try:
        assert httpx.get(f"{srv.url}/metrics").status_code == 200
        assert httpx.get(f"{srv.url}/v1/openapi.json").status_code == 401
    finally:
        srv.stop()
