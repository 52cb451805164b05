"""Newer Cog's HTTP behaviour against a live server: custom metrics in responses, SSE and webhooks; the request
context; the predictor's own healthcheck() in /health-check; SSE only with the @streaming opt-in, and a late
subscriber's replayed history; file outputs uploaded to `--upload-url`."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cocina.serving.spec import project_spec
from tests.server.conftest import PROJECTS, LiveServer, plain_spec, start_server
from tests.server.fixtures.webhook_sink import WebhookSink
from tests.server.sse import parse_sse

FIXTURES = Path(__file__).parent.parent / "fixtures" / "predictors"
SSE = {"Accept": "text/event-stream"}
NO_STREAMING = "This model does not support streaming responses. Add @cog.streaming to predict() to enable SSE."


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The features project (a @streaming iterator with metrics, context, healthcheck) keeping 3 events of
    history for late subscribers."""
    spec = project_spec(PROJECTS / "features", name="acme/features").replace(
        env={"COG_STREAM_HISTORY_CAPACITY": "3"}
    )
    srv = start_server(tmp_path_factory.mktemp("features") / "data", [spec])
    try:
        yield srv
    finally:
        srv.stop()


def test_custom_metrics_in_the_response_beside_predict_time(features: LiveServer) -> None:
    body = features.client.post("/predictions", json={"input": {"n": 2}}).json()
    assert body["status"] == "succeeded" and body["output"] == ["chunk-0", "chunk-1"]
    metrics = body["metrics"]
    assert metrics.pop("predict_time") > 0
    assert metrics == {"temperature": 0.7, "tokens": 2, "timing": {"total": 0.5}}  # no total_time: not Cog's


def test_metrics_in_webhooks(features: LiveServer) -> None:
    sink = WebhookSink()
    try:
        r = features.client.post(
            "/predictions",
            json={"input": {"n": 1}, "webhook": sink.url, "webhook_events_filter": ["completed"]},
            headers={"Prefer": "respond-async"},
        )
        assert r.status_code == 202
        sink.wait_for(lambda evs: any(b["status"] == "succeeded" for _, b in evs))
        final = sink.events[-1][1]
        assert final["metrics"]["temperature"] == 0.7 and final["metrics"]["tokens"] == 1
        assert "predict_time" in final["metrics"]
    finally:
        sink.close()


def test_a_metric_cog_refuses_fails_with_its_message(features: LiveServer) -> None:
    body = features.client.post("/predictions", json={"input": {"mode": "bad_metric"}}).json()
    assert body["status"] == "failed" and "must start with a letter" in body["error"]


def test_sse_metric_events_and_the_completed_metrics(features: LiveServer) -> None:
    with features.client.stream("PUT", "/predictions/sse-m", json={"input": {"n": 2}}, headers=SSE) as r:
        assert r.status_code == 200
        events = parse_sse(r.iter_lines())
    assert [e["event"] for e in events] == [
        "start",
        "metric",
        "metric",
        "output",
        "metric",
        "output",
        "metric",
        "completed",
    ]
    metrics = [json.loads(e["data"]) for e in events if e["event"] == "metric"]
    assert metrics[0] == {"name": "temperature", "value": 0.7, "mode": "replace"}
    assert metrics[1] == {"name": "tokens", "value": 1, "mode": "increment"}
    completed = json.loads(events[-1]["data"])
    assert completed["status"] == "succeeded" and completed["metrics"]["tokens"] == 2


def test_a_late_subscriber_gets_the_kept_history_or_an_error(features: LiveServer) -> None:
    body = {"input": {"n": 3, "delay": 1.0}}

    def started(pid: str, outputs: int) -> None:
        """Until the prediction runs and has `outputs` outputs (asked again: the same prediction comes back)."""
        deadline = time.monotonic() + 30
        while True:
            now = features.client.put(f"/predictions/{pid}", json=body, headers={"Prefer": "respond-async"}).json()
            if now["status"] == "processing" and len(now["output"] or []) == outputs:
                return
            assert time.monotonic() < deadline, now
            time.sleep(0.02)

    # Started, and a metric: within the 3 events kept, so everything is replayed, then the rest live.
    started("late-1", 0)
    with features.client.stream("PUT", "/predictions/late-1", json=body, headers=SSE) as r:
        events = parse_sse(r.iter_lines())
    assert events[0]["event"] == "start" and events[-1]["event"] == "completed"
    outputs = [json.loads(e["data"])["chunk"] for e in events if e["event"] == "output"]
    assert outputs == ["chunk-0", "chunk-1", "chunk-2"]
    # Start, the metric, then (metric, output) twice: 6 events, more than are kept: one error saying 3 were dropped.
    started("late-2", 2)
    with features.client.stream("PUT", "/predictions/late-2", json=body, headers=SSE) as r:
        events = parse_sse(r.iter_lines())
    assert [e["event"] for e in events] == ["error"]
    assert json.loads(events[0]["data"]) == {"error": "SSE stream replay truncated; events were dropped", "skipped": 3}


def test_the_request_context(features: LiveServer) -> None:
    context = {"api_token": "secret123", "region": "us-east-1"}
    body = features.client.post("/predictions", json={"input": {"mode": "context"}, "context": context}).json()
    assert body["output"] == ["api_token=secret123,region=us-east-1"]
    assert "context" not in body  # Cog does not show it back
    r = features.client.post("/predictions", json={"input": {"mode": "context"}, "context": {"n": 3}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "context", "n"]


def test_health_check_runs_the_predictors_healthcheck(features: LiveServer) -> None:
    try:
        assert features.client.get("/health-check").json()["status"] == "READY"
        features.client.post("/predictions", json={"input": {"mode": "health_false"}})
        body = features.client.get("/health-check").json()
        assert body["status"] == "UNHEALTHY"
        assert "user-defined healthcheck returned False" in body["user_healthcheck_error"]
        features.client.post("/predictions", json={"input": {"mode": "health_raise"}})
        body = features.client.get("/health-check").json()
        assert body["status"] == "UNHEALTHY" and "disk is full" in body["user_healthcheck_error"]
        # Asked again each time, never cached.
        features.client.post("/predictions", json={"input": {"mode": "health_ok"}})
        body = features.client.get("/health-check").json()
        assert body["status"] == "READY" and "user_healthcheck_error" not in body
    finally:
        features.client.post("/predictions", json={"input": {"mode": "health_ok"}})


def test_sse_needs_the_streaming_opt_in(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", [plain_spec("acme/plain")])
    try:
        for method, path in (("POST", "/predictions"), ("PUT", "/predictions/no-sse")):
            r = srv.client.request(method, path, json={"input": {"text": "x"}}, headers=SSE)
            assert r.status_code == 406
            assert r.json() == {"error": NO_STREAMING}
        assert srv.serving.get("no-sse") is None  # refused before anything was recorded
        # Without the header the same predictor answers as JSON.
        assert srv.client.put("/predictions/no-sse", json={"input": {"text": "x"}}).json()["output"] == "x"
    finally:
        srv.stop()


# ---- --upload-url ---------------------------------------------------------------------------------------------


class UploadSink:
    """A real HTTP server taking PUTs as a signed-URL bucket does: it answers with a `Location` holding a query
    (a signature), or none for names with `noloc`, or 500 for names with `fail`."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, str, bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                path = urllib.parse.urlsplit(self.path).path
                sink.uploads.append((path, self.headers.get("content-type", ""), body))
                self.send_response(500 if "fail" in path else 200)
                if "noloc" not in path and "fail" not in path:
                    self.send_header("Location", f"https://cdn.example.com{path}?signature=secret")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/bucket"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, UploadSink]]:
    sink = UploadSink()
    specs = [
        project_spec(PROJECTS / "files", name="acme/files"),  # Iterator[Path]
        project_spec(FIXTURES / "file_output", name="acme/one"),  # Path
        project_spec(FIXTURES / "cog_docs_list_of_paths", name="acme/list"),  # list[Path]
    ]
    srv = start_server(tmp_path_factory.mktemp("uploads") / "data", specs, upload_url=sink.url)
    try:
        yield srv, sink
    finally:
        srv.stop()
        sink.close()


def test_file_outputs_go_to_the_upload_url(uploads: tuple[LiveServer, UploadSink]) -> None:
    srv, sink = uploads
    sink.uploads.clear()
    body = srv.client.post("/predictions", json={"input": {"n": 2, "name": "pic"}}).json()
    assert body["status"] == "succeeded"
    # Where the bucket said each went, without the signature; an iterator's items each uploaded.
    assert body["output"] == ["https://cdn.example.com/bucket/pic-0.png", "https://cdn.example.com/bucket/pic-1.png"]
    assert sink.uploads == [("/bucket/pic-0.png", "image/png", b"pic 0"), ("/bucket/pic-1.png", "image/png", b"pic 1")]
    # A single Path is a string; a list of paths stays a list (of one, or many).
    wait = {"Prefer": "wait"}
    one = srv.client.post("/v1/models/acme/one/predictions", json={"input": {"text": "a"}}, headers=wait).json()
    assert one["output"] == "https://cdn.example.com/bucket/result.txt"
    many = srv.client.post("/v1/models/acme/list/predictions", json={"input": {}}, headers=wait).json()
    assert many["output"] == [f"https://cdn.example.com/bucket/out-{i}.txt" for i in range(3)]
    assert ("/bucket/out-0.txt", "text/plain", b"foo") in sink.uploads
    single = srv.client.post("/predictions", json={"input": {"n": 1}}).json()
    assert single["output"] == ["https://cdn.example.com/bucket/out-0.png"]


def test_without_a_location_the_output_is_where_it_was_put(uploads: tuple[LiveServer, UploadSink]) -> None:
    srv, sink = uploads
    body = srv.client.post("/predictions", json={"input": {"n": 1, "name": "noloc"}}).json()
    assert body["output"] == [f"{sink.url}/noloc-0.png"]


def test_a_failed_upload_fails_the_prediction(uploads: tuple[LiveServer, UploadSink]) -> None:
    srv, sink = uploads
    body = srv.client.post("/predictions", json={"input": {"n": 2, "name": "fail"}}).json()
    assert body["status"] == "failed"
    where = f"{sink.url}/fail-0.png"
    assert body["error"] == f"Uploading the output file fail-0.png to {where} failed: the server answered 500."


def test_an_unreachable_upload_url_fails_the_prediction(tmp_path: Path) -> None:
    sink = UploadSink()
    gone = sink.url
    sink.close()  # nothing listens there any more
    srv = start_server(tmp_path / "data", [project_spec(PROJECTS / "files", name="acme/files")], upload_url=gone)
    try:
        body = srv.client.post("/predictions", json={"input": {"n": 1}}).json()
        assert body["status"] == "failed"
        assert body["error"].startswith(f"Uploading the output file out-0.png to {gone}/out-0.png failed: ConnectError")
    finally:
        srv.stop()
