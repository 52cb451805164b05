"""The Cog HTTP API against a live server: every endpoint, webhooks, SSE, idempotent PUT, failure modes."""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path

import httpx
import pytest

from cocina.store import SQLiteStore
from tests.server.conftest import LiveServer, echo_spec, start_server
from tests.server.fixtures.webhook_sink import WebhookSink
from tests.server.sse import parse_sse


def test_root_health_and_openapi(live: LiveServer) -> None:
    root = live.client.get("/").json()
    assert root["predictions_url"] == "/predictions"
    health = live.client.get("/health-check").json()
    assert health["status"] == "READY"
    assert health["setup"]["status"] == "succeeded"
    assert health["setup"]["logs"] == "setup done\n"
    doc = live.client.get("/openapi.json").json()
    assert doc["components"]["schemas"]["Input"]["required"] == ["text"]
    assert doc["components"]["schemas"]["Output"]["x-cog-array-type"] == "iterator"
    assert {"/predictions", "/predictions/{prediction_id}", "/predictions/{prediction_id}/cancel"} <= set(doc["paths"])


def test_sync_prediction(live: LiveServer) -> None:
    r = live.client.post("/predictions", json={"input": {"text": "hi", "n": 2, "unknown": 1}})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["output"] == ["hi0", "hi1"]
    assert body["logs"] == "echo ok\n"
    assert body["metrics"]["predict_time"] >= 0
    assert body["started_at"] and body["completed_at"]
    assert r.headers["x-request-id"]


def test_request_id_is_echoed_when_given(live: LiveServer) -> None:
    r = live.client.get("/health-check", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = live.client.get("/health-check", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"


def test_invalid_input_is_cog_422(live: LiveServer) -> None:
    r = live.client.post("/predictions", json={"input": {"n": "three"}})
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["detail"]]
    assert ["body", "input", "text"] in locs and ["body", "input", "n"] in locs


def test_malformed_bodies_are_422_never_500(live: LiveServer) -> None:
    for content in [
        b"not json",
        b"[]",
        b'{"input": 5}',
        b'{"webhook": "nope"}',
        b'{"webhook_events_filter": ["x"]}',
    ]:
        r = live.client.post("/predictions", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 422, content
        assert isinstance(r.json()["detail"], list)
    r = live.client.post("/predictions", content=b"")
    assert r.status_code == 422


def test_failed_prediction(live: LiveServer) -> None:
    body = live.client.post("/predictions", json={"input": {"text": "x", "mode": "fail"}}).json()
    assert body["status"] == "failed"
    assert body["error"] == "boom"  # Cog reports the exception's message
    assert "Traceback" in body["logs"] and "ValueError: boom" in body["logs"]


def test_model_process_crash_fails_that_prediction_and_the_model_reloads(live: LiveServer) -> None:
    pid = live.runtime().model.pid
    body = live.client.post("/predictions", json={"input": {"text": "x", "mode": "crash", "n": 3}}).json()
    assert body["status"] == "failed"
    assert "SIGKILL" in body["error"] and "Traceback" not in body["error"]
    assert body["output"] == ["x0"]  # what it produced before dying
    # The default model is kept warm: a new process is loaded at once, and serves the next prediction.
    live.wait_status("READY")
    assert live.runtime().model.pid != pid
    assert live.client.post("/predictions", json={"input": {"text": "ok"}}).json()["status"] == "succeeded"


def test_respond_async_then_idempotent_put(live: LiveServer) -> None:
    payload = {"input": {"text": "a", "n": 3, "delay": 0.1}}
    r = live.client.put("/predictions/p-1", json=payload, headers={"Prefer": "respond-async"})
    assert r.status_code == 202
    assert r.json()["id"] == "p-1" and r.json()["status"] in ("starting", "processing")
    # Same id again: the same prediction, not a second run.
    r2 = live.client.put("/predictions/p-1", json=payload, headers={"Prefer": "respond-async"})
    assert r2.status_code == 202 and r2.json()["id"] == "p-1"
    final = live.client.put("/predictions/p-1", json=payload).json()
    assert final["status"] == "succeeded" and final["output"] == ["a0", "a1", "a2"]
    assert final["logs"] == "echo ok\n" and final["created_at"] == r.json()["created_at"]  # one run


def test_put_id_mismatch_is_422(live: LiveServer) -> None:
    r = live.client.put("/predictions/p-2", json={"id": "other", "input": {"text": "a"}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "id"]


def test_cancel(live: LiveServer) -> None:
    r = live.client.post(
        "/predictions",
        json={"id": "c-1", "input": {"text": "a", "n": 100, "delay": 0.05}},
        headers={"Prefer": "respond-async"},
    )
    assert r.status_code == 202
    time.sleep(0.2)
    assert live.client.post("/predictions/c-1/cancel").json() == {}
    final = live.client.put("/predictions/c-1", json={"input": {"text": "a"}}).json()
    assert final["status"] == "canceled"
    assert 0 < len(final["output"]) < 100
    assert live.client.post("/predictions/missing/cancel").status_code == 404


def test_sse_stream(live: LiveServer) -> None:
    with live.client.stream(
        "POST", "/predictions", json={"input": {"text": "s", "n": 3}}, headers={"Accept": "text/event-stream"}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.iter_lines())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "completed"
    outputs = [json.loads(e["data"]) for e in events if e["event"] == "output"]
    assert outputs == [{"chunk": f"s{i}", "index": i} for i in range(3)]
    logs = [json.loads(e["data"]) for e in events if e["event"] == "log"]
    assert logs == [{"data": "echo ok\n", "source": "stdout"}]
    assert json.loads(events[-1]["data"])["status"] == "succeeded"


def test_webhooks_filter_and_throttle(live: LiveServer) -> None:
    sink = WebhookSink()
    try:
        r = live.client.post(
            "/predictions",
            json={"input": {"text": "w", "n": 12, "delay": 0.1}, "webhook": sink.url},
            headers={"Prefer": "respond-async"},
        )
        assert r.status_code == 202
        sink.wait_for(lambda evs: any(e[1]["status"] == "succeeded" for e in evs))
        bodies = [b for _, b in sink.events]
        assert bodies[-1]["output"] == [f"w{i}" for i in range(12)]
        # ~1.2 s of output every 100 ms, but progress webhooks at most every 500 ms.
        progress = [t for t, b in sink.events if b["status"] != "succeeded"]
        assert 1 <= len(progress) <= 4
        assert all(b - a >= 0.45 for a, b in itertools.pairwise(progress))
        # Only completed.
        sink.events.clear()
        r = live.client.post(
            "/predictions",
            json={
                "input": {"text": "w", "n": 3, "delay": 0.1},
                "webhook": sink.url,
                "webhook_events_filter": ["completed"],
            },
            headers={"Prefer": "respond-async"},
        )
        sink.wait_for(lambda evs: any(e[1]["status"] == "succeeded" for e in evs))
        time.sleep(0.2)
        assert [b["status"] for _, b in sink.events] == ["succeeded"]
    finally:
        sink.close()


def test_terminal_webhook_is_retried(live: LiveServer) -> None:
    sink = WebhookSink(fail_first=2)
    try:
        live.client.post(
            "/predictions",
            json={"input": {"text": "r"}, "webhook": sink.url, "webhook_events_filter": ["completed"]},
        )
        sink.wait_for(lambda evs: len(evs) == 1)
        assert sink.events[0][1]["status"] == "succeeded"
        assert sink.attempts == 3
    finally:
        sink.close()


def test_queue_bound_429_and_no_5xx(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", concurrency=1, max_queue=2)
    try:
        codes = []
        for i in range(6):
            r = srv.client.post(
                "/predictions",
                json={"input": {"text": str(i), "n": 5, "delay": 0.1}},
                headers={"Prefer": "respond-async"},
            )
            codes.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert "throttled" in r.json()["detail"]
        assert codes[:3] == [202, 202, 202] and set(codes[3:]) == {429}
        assert srv.client.get("/health-check").json()["status"] == "BUSY"
    finally:
        srv.stop()


def test_body_size_limit_413(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", max_body_bytes=2048)
    try:
        r = srv.client.post("/predictions", json={"input": {"text": "x" * 5000}})
        assert r.status_code == 413
        assert "limit" in r.json()["detail"]

        def chunks():  # no Content-Length: the streamed body crosses the limit
            for _ in range(10):
                yield b"x" * 1000

        r = srv.client.post("/predictions", content=chunks())
        assert r.status_code == 413
    finally:
        srv.stop()


def test_prediction_deadline_fails_the_prediction(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", prediction_timeout_s=0.3)
    try:
        body = srv.client.post("/predictions", json={"input": {"text": "t", "n": 50, "delay": 0.05}}).json()
        assert body["status"] == "failed"
        assert "timed out" in body["error"]
    finally:
        srv.stop()


def test_setup_failed_health_and_predictions_refused(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", [echo_spec(env={"ECHO_SETUP_FAIL": "1"})], wait="SETUP_FAILED")
    try:
        health = srv.client.get("/health-check").json()
        assert health["setup"]["status"] == "failed"
        assert "loading weights" in health["setup"]["logs"] and "ValueError: no weights" in health["setup"]["logs"]
        r = srv.client.post("/predictions", json={"input": {"text": "x"}})
        assert r.status_code == 503 and "no weights" in r.json()["detail"]
        assert srv.client.get("/health").status_code == 503  # a warm model that failed: not ready
    finally:
        srv.stop()


def test_a_prediction_during_setup_waits_for_it(tmp_path: Path) -> None:
    """As Replicate's cold boot: while the model sets up, a prediction is accepted (status starting) and runs
    once setup ends, instead of being refused."""
    srv = start_server(tmp_path / "d", [echo_spec(env={"ECHO_SETUP_DELAY": "1.5"})], wait=None)
    try:
        assert srv.client.get("/health-check").json()["status"] == "STARTING"
        assert srv.client.get("/health").status_code == 503
        early = srv.client.post("/predictions", json={"input": {"text": "x"}}, headers={"Prefer": "respond-async"})
        assert early.status_code == 202 and early.json()["status"] == "starting"
        done = srv.client.post("/predictions", json={"input": {"text": "y", "n": 1}})
        assert done.status_code == 200 and done.json()["output"] == ["y0"]
        srv.wait_status("READY")
        assert srv.client.get("/health").json() == {"status": "ok", "models": {"acme/echo": "ready"}}
        final = srv.client.put(f"/predictions/{early.json()['id']}", json={"input": {}}).json()
        assert final["status"] == "succeeded" and final["output"] == ["x0", "x1", "x2"]
    finally:
        srv.stop()


def test_shutdown_endpoint_drains(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", drain_grace_s=0.3)
    client = httpx.Client(base_url=srv.url, timeout=10)
    try:
        long = client.post(
            "/predictions",
            json={"id": "long", "input": {"text": "l", "n": 100, "delay": 0.05}},
            headers={"Prefer": "respond-async"},
        )
        short = client.post(
            "/predictions",
            json={"id": "short", "input": {"text": "s", "n": 2, "delay": 0.05}},
            headers={"Prefer": "respond-async"},
        )
        assert long.status_code == short.status_code == 202
        time.sleep(0.05)
        assert client.post("/shutdown").json() == {}
        srv.thread.join(15)
        assert not srv.thread.is_alive()
    finally:
        client.close()
        srv.client.close()
    store = SQLiteStore(tmp_path / "d" / "predictions.db")
    short_rec, long_rec = store.get("short"), store.get("long")
    assert short_rec is not None and long_rec is not None
    assert short_rec.status.value == "succeeded"  # finished within the grace period
    assert long_rec.status.value == "canceled"  # canceled when the grace period ran out
    store.close()


def test_one_structured_access_log_line_per_request(live: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cocina.server.access"):
        r = live.client.get("/health-check", headers={"X-Request-Id": "trace-42"})
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "cocina.server.access"]
    mine = [line for line in lines if line["request_id"] == "trace-42"]
    assert len(mine) == 1 and r.headers["x-request-id"] == "trace-42"
    assert mine[0]["path"] == "/health-check" and mine[0]["status"] == 200 and mine[0]["duration_ms"] >= 0


def test_predictor_that_ignores_cancel_is_given_up(live: LiveServer) -> None:
    live.runtime().cancel_grace_s = 0.3
    live.client.put(
        "/predictions/stubborn",
        json={"input": {"text": "h", "n": 100, "delay": 0.2, "mode": "hang"}},
        headers={"Prefer": "respond-async"},
    )
    time.sleep(0.3)
    live.client.post("/predictions/stubborn/cancel")
    final = live.client.put("/predictions/stubborn", json={"input": {"text": "h"}}).json()
    assert final["status"] == "canceled" and "did not stop" in final["error"]
    assert live.client.get("/health-check").json()["status"] == "READY"


def test_iterator_that_yields_nothing_outputs_an_empty_list(live: LiveServer) -> None:
    r = live.client.post("/predictions", json={"input": {"text": "a", "n": 0}})
    assert r.json()["status"] == "succeeded" and r.json()["output"] == []
