"""Several models in one server over HTTP: listing, lazy loading (a cold model's request waits, as Replicate's
cold boot), unknown and malformed names in each API's format, and `/health`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import replicate

from tests.server.conftest import LiveServer, echo_spec, plain_spec, start_server


@pytest.fixture
def three(tmp_path: Path) -> Iterator[LiveServer]:
    """`acme/echo` (the default, warm), and two cold models: `acme/plain` and another echo, `acme/echo2`."""
    srv = start_server(tmp_path / "d", [echo_spec(), plain_spec(), echo_spec("acme/echo2")])
    try:
        yield srv
    finally:
        srv.stop()


def test_listing_and_lazy_loading(three: LiveServer) -> None:
    assert three.client.get("/health").json() == {
        "status": "ok",
        "models": {"acme/echo": "ready", "acme/plain": "unloaded", "acme/echo2": "unloaded"},
    }
    rep = replicate.Client(api_token="x", base_url=three.url)
    listed = {f"{m.owner}/{m.name}": m for m in rep.models.list()}
    assert set(listed) == {"acme/echo", "acme/plain", "acme/echo2"}
    assert listed["acme/echo"].latest_version is not None
    # A cold model: the prediction is accepted at once (starting) and runs when the model has loaded.
    r = three.client.post("/v1/models/acme/echo2/predictions", json={"input": {"text": "c", "n": 1}})
    assert r.status_code == 201 and r.json()["status"] == "starting" and r.json()["model"] == "acme/echo2"
    pid = r.json()["id"]
    deadline = time.monotonic() + 30
    while three.client.get(f"/v1/predictions/{pid}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert three.client.get("/health").json()["models"]["acme/echo2"] == "ready"
    # Prefer: wait through a cold start: the answer is the finished prediction.
    done = three.client.post(
        "/v1/models/acme/plain/predictions", json={"input": {"text": "p"}}, headers={"Prefer": "wait=30"}
    )
    assert done.json()["status"] == "succeeded" and done.json()["output"] == "p"
    # Versions of each model; a never-loaded model's schema is learnt when asked for.
    plain = rep.models.get("acme/plain")
    assert (
        plain.latest_version is not None
        and plain.latest_version.openapi_schema["components"]["schemas"]["Output"]["type"] == "string"
    )
    assert three.client.get(f"/v1/models/acme/plain/versions/{'0' * 64}").status_code == 404


def test_unknown_and_malformed_names_in_each_format(three: LiveServer) -> None:
    r = three.client.post("/v1/models/acme/nope/predictions", json={"input": {}})
    assert r.status_code == 404 and r.json()["title"] == "Not found" and "acme/nope" in r.json()["detail"]
    r = three.client.get("/v1/models/acme/nope")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = three.client.post("/v1/predictions", json={"version": "acme/nope", "input": {}})
    assert r.status_code == 404
    r = three.client.post("/v1/predictions", json={"version": "not a model", "input": {}})
    assert r.status_code == 422 and r.json()["invalid_fields"][0]["field"] == "version"
    r = three.client.post("/v1/completions", json={"model": "acme/echo", "prompt": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"  # not a language model
    r = three.client.post("/v1/chat/completions", json={"model": "", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = httpx.post(f"{three.url}/v1/deployments/acme/nope/predictions", json={"input": {}})
    assert r.status_code == 404 and "Deployment acme/nope" in r.json()["detail"]


def test_each_prediction_records_its_model_and_version(three: LiveServer) -> None:
    a = three.client.post("/predictions", json={"input": {"text": "a", "n": 1}}).json()
    b = three.client.post(
        "/v1/models/acme/plain/predictions", json={"input": {"text": "b"}}, headers={"Prefer": "wait=30"}
    ).json()
    rows = {p["id"]: p for p in three.client.get("/v1/predictions").json()["results"]}
    assert rows[a["id"]]["model"] == "acme/echo" and rows[b["id"]]["model"] == "acme/plain"
    assert rows[a["id"]]["version"] == three.runtime().model.version
    assert rows[b["id"]]["version"] == three.runtime("acme/plain").model.version
    counts = {m["name"]: m["run_count"] for m in three.client.get("/v1/models").json()["results"]}
    assert counts["echo"] >= 1 and counts["plain"] == 1 and counts["echo2"] == 0
