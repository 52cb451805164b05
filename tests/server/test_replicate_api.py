"""The Replicate v1 API with the official `replicate` 1.x client pointed at a live server."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError

from cocina.serving.spec import version_id
from tests.server.conftest import ECHO, LiveServer, plain_spec, start_server
from tests.server.sse import parse_sse

TOKEN = "r8_test_token"
VERSION = version_id(ECHO)  # the echo project's content hash


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[LiveServer]:
    srv = start_server(tmp_path / "data", api_token=TOKEN)
    try:
        yield srv
    finally:
        if srv.thread.is_alive():
            srv.stop()


@pytest.fixture
def live_plain(tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose predictor has a plain (non-iterator) string output."""
    srv = start_server(tmp_path / "data", [plain_spec("acme/echo")])
    try:
        yield srv
    finally:
        if srv.thread.is_alive():
            srv.stop()


def client(srv: LiveServer) -> replicate.Client:
    c = replicate.Client(api_token=TOKEN, base_url=srv.url)
    c.poll_interval = 0.05
    return c


def test_run_by_version_iterator_output(authed: LiveServer) -> None:
    out = client(authed).run(f"acme/echo:{VERSION}", input={"text": "x", "n": 3})
    assert list(out) == ["x0", "x1", "x2"]


def test_run_by_model_and_polling_when_wait_runs_out(authed: LiveServer) -> None:
    c = client(authed)
    assert c.run("acme/echo", input={"text": "m", "n": 2}) == ["m0", "m1"]
    # A prediction longer than Prefer: wait=1: the client polls until the end.
    out = c.run(f"acme/echo:{VERSION}", input={"text": "p", "n": 4, "delay": 0.4}, wait=1)
    assert list(out) == ["p0", "p1", "p2", "p3"]


def test_run_plain_output(live_plain: LiveServer) -> None:
    c = replicate.Client(api_token="any", base_url=live_plain.url)
    version = live_plain.runtime().model.version
    assert c.run(f"acme/echo:{version}", input={"text": "plain"}) == "plain"


def test_failed_prediction_raises_model_error(authed: LiveServer) -> None:
    with pytest.raises(ModelError) as err:
        client(authed).run(f"acme/echo:{VERSION}", input={"text": "x", "mode": "fail"})
    assert err.value.prediction.error == "boom"


def test_stream(authed: LiveServer) -> None:
    events = list(client(authed).stream(f"acme/echo:{VERSION}", input={"text": "s", "n": 3, "delay": 0.02}))
    assert "".join(str(e) for e in events) == "s0s1s2"
    assert events[-1].event.value == "done"


def test_stream_events_have_ids_and_error_event(authed: LiveServer) -> None:
    c = client(authed)
    pred = c.predictions.create(version=VERSION, input={"text": "e", "mode": "fail"}, stream=True)
    assert pred.urls is not None
    url = pred.urls["stream"]
    with httpx.stream("GET", url, headers={"Accept": "text/event-stream", "Authorization": f"Bearer {TOKEN}"}) as r:
        events = parse_sse(r.iter_lines())
    assert all("id" in e for e in events)
    assert [e["event"] for e in events][-2:] == ["error", "done"]


def test_predictions_create_get_list_cancel(authed: LiveServer) -> None:
    c = client(authed)
    pred = c.predictions.create(version=VERSION, input={"text": "c", "n": 200, "delay": 0.02})
    assert pred.status == "starting" and pred.model == "acme/echo" and pred.version == VERSION
    assert pred.urls is not None and pred.urls["get"].endswith(f"/v1/predictions/{pred.id}")
    time.sleep(0.1)
    c.predictions.cancel(pred.id)
    pred.wait()
    assert pred.status == "canceled"
    got = c.predictions.get(pred.id)
    assert got.status == "canceled" and got.metrics and "predict_time" in got.metrics
    other = c.models.predictions.create(model="acme/echo", input={"text": "m"})
    dep = c.deployments.predictions.create("acme/echo", input={"text": "d"})
    other.wait()
    dep.wait()
    assert other.output == ["m0", "m1", "m2"] and dep.status == "succeeded"
    assert c.predictions.get(dep.id).model == "acme/echo"
    with pytest.raises(ReplicateError) as err:
        c.deployments.predictions.create("acme/nope", input={"text": "d"})
    assert err.value.status == 404
    ids = [p.id for p in c.predictions.list().results]
    assert ids[:3] == [dep.id, other.id, pred.id]  # newest first


def test_list_cursor_pagination(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", max_queue=300, concurrency=4)
    try:
        c = replicate.Client(api_token="t", base_url=srv.url)
        created = {c.predictions.create(version=VERSION, input={"text": "p", "n": 0}).id for _ in range(105)}
        page = c.predictions.list()
        assert len(page.results) == 100 and page.next
        page2 = c.predictions.list(page.next)
        assert len(page2.results) == 5 and page2.next is None
        assert {p.id for p in page.results} | {p.id for p in page2.results} == created
        assert httpx.get(f"{srv.url}/v1/predictions?cursor=abc").status_code == 400
    finally:
        srv.stop()


def test_models_and_versions(authed: LiveServer) -> None:
    c = client(authed)
    model = c.models.get("acme/echo")
    assert model.owner == "acme" and model.name == "echo"
    assert model.latest_version is not None and model.latest_version.id == VERSION
    versions = model.versions.list()
    assert [v.id for v in versions] == [VERSION]
    version = model.versions.get(VERSION)
    assert version.openapi_schema["components"]["schemas"]["Output"]["x-cog-array-type"] == "iterator"
    with pytest.raises(ReplicateError) as err:
        c.models.get("acme/other")
    assert err.value.status == 404


def test_file_input_upload(authed: LiveServer) -> None:
    c = client(authed)
    data = b"hello file" * 10
    out = c.run(f"acme/echo:{VERSION}", input={"text": "f", "mode": "file", "file": io.BytesIO(data)})
    assert list(out) == [str(len(data))]
    up = c.files.create(io.BytesIO(b"abc"), filename="a.txt")
    assert up.size == 3 and up.content_type == "text/plain"
    r = httpx.get(up.urls["download"], headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.content == b"abc"


def test_auth_problem_json(authed: LiveServer) -> None:
    r = httpx.get(f"{authed.url}/v1/predictions")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["title"] == "Unauthenticated"
    with pytest.raises(ReplicateError) as err:
        replicate.Client(api_token="wrong", base_url=authed.url).predictions.list()
    assert err.value.status == 401


def test_validation_and_version_errors_are_problem_json(authed: LiveServer) -> None:
    c = client(authed)
    with pytest.raises(ReplicateError) as err:
        c.predictions.create(version=VERSION, input={"n": "x"})
    assert err.value.status == 422 and "input.text" in (err.value.detail or "")
    with pytest.raises(ReplicateError) as err:
        c.predictions.create(version="b" * 64, input={"text": "x"})
    assert err.value.status == 404
    with pytest.raises(ReplicateError) as err:
        c.predictions.create(version="acme/echo:" + "c" * 64, input={"text": "x"})
    assert err.value.status == 404 and "not found" in (err.value.detail or "")
    for malformed in ("not a version", "acme/echo:", "/echo", "a/b/c"):
        with pytest.raises(ReplicateError) as err:
            c.predictions.create(version=malformed, input={"text": "x"})
        assert err.value.status == 422 and "version" in (err.value.detail or ""), malformed
    h = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{authed.url}/v1/predictions", content=b"{", headers=h)
    assert r.status_code == 422 and r.json()["status"] == 422
    assert httpx.get(f"{authed.url}/v1/predictions/nope", headers=h).status_code == 404


def test_prefer_wait_and_cancel_after(authed: LiveServer) -> None:
    h = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(
        f"{authed.url}/v1/predictions",
        json={"version": VERSION, "input": {"text": "w"}},
        headers={**h, "Prefer": "wait=5"},
    )
    assert r.status_code == 201 and r.json()["status"] == "succeeded"
    assert r.headers["preference-applied"] == "wait=5"
    r = httpx.post(
        f"{authed.url}/v1/predictions",
        json={"version": VERSION, "input": {"text": "w", "n": 100, "delay": 0.05}},
        headers={**h, "Prefer": "wait=2", "Cancel-After": "300ms"},
        timeout=10,
    )
    assert r.json()["status"] == "canceled"
    bad = httpx.post(
        f"{authed.url}/v1/predictions",
        json={"version": VERSION, "input": {"text": "w"}},
        headers={**h, "Cancel-After": "soon"},
    )
    assert bad.status_code == 400


def test_replicate_webhook_gets_replicate_shape(authed: LiveServer) -> None:
    from tests.server.fixtures.webhook_sink import WebhookSink

    sink = WebhookSink()
    try:
        pred = client(authed).predictions.create(
            version=VERSION,
            input={"text": "h", "n": 2},
            webhook=sink.url,
            webhook_events_filter=["completed"],
        )
        sink.wait_for(lambda evs: len(evs) == 1)
        body = sink.events[0][1]
        assert body["id"] == pred.id and body["status"] == "succeeded" and body["version"] == VERSION
        assert body["output"] == ["h0", "h1"] and body["urls"]["get"].endswith(pred.id)
    finally:
        sink.close()
