"""`GET /metrics` scraped with prometheus_client's own parser after real traffic on every surface."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import replicate
from prometheus_client.parser import text_string_to_metric_families

from cocina.server.metrics import ServerMetrics
from tests.server.conftest import LiveServer, start_server
from tests.server.fixtures.backends import CharGenerator, EchoBackend


def scrape(srv: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics`, keyed by (name, sorted labels)."""
    r = srv.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_traffic_on_every_surface(live: LiveServer) -> None:
    before = scrape(live)
    assert value(before, "cocina_queue_depth") == 0 and value(before, "cocina_concurrency") == 2
    assert not any(name.startswith("vllm:") for name, _ in before)  # no engine behind this server

    assert live.client.post("/predictions", json={"input": {"text": "a", "n": 2}}).status_code == 200
    assert live.client.post("/predictions", json={"input": {"text": "a", "mode": "fail"}}).json()["status"] == "failed"
    assert live.client.post("/predictions", json={"input": {}}).status_code == 422
    rep = replicate.Client(api_token="x", base_url=live.url)
    assert "".join(rep.run(f"acme/echo:{'a' * 64}", input={"text": "b", "n": 1})) == "b0"
    oa = openai.OpenAI(base_url=f"{live.url}/v1", api_key="x", max_retries=0)
    oa.chat.completions.create(model="tiny-char", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    with pytest.raises(openai.NotFoundError):
        oa.completions.create(model="nope", prompt="x", max_tokens=1)

    for _ in range(3):
        assert live.client.get("/health-check").status_code == 200

    after = scrape(live)
    # Health checks and scrapes are `internal`, not Cog traffic (the fixture polled health too, and scraped once).
    assert value(after, "cocina_http_requests_total", surface="internal", method="GET", status="200") >= 5
    assert value(after, "cocina_http_requests_total", surface="cog", method="GET", status="200") == 0
    assert value(after, "cocina_http_request_duration_seconds_count", surface="internal", status="200") >= 5
    assert value(after, "cocina_http_requests_total", surface="cog", method="POST", status="200") >= 2
    assert value(after, "cocina_http_requests_total", surface="cog", method="POST", status="422") == 1
    assert value(after, "cocina_http_requests_total", surface="replicate", method="POST", status="201") >= 1
    assert value(after, "cocina_http_requests_total", surface="openai", method="POST", status="200") == 1
    assert value(after, "cocina_http_requests_total", surface="openai", method="POST", status="404") == 1
    assert value(after, "cocina_http_request_duration_seconds_count", surface="openai", status="200") == 1
    assert value(after, "cocina_predictions_total", surface="cog", status="succeeded") == 1
    assert value(after, "cocina_predictions_total", surface="cog", status="failed") == 1
    assert value(after, "cocina_predictions_total", surface="replicate", status="succeeded") == 1
    assert value(after, "cocina_predictions_total", surface="openai", status="succeeded") == 1
    assert value(after, "cocina_predictions_running") == 0


def test_queue_depth_is_read_at_scrape_time(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", EchoBackend(), concurrency=1, max_queue=4)
    try:
        slow = {"input": {"text": "s", "n": 1, "delay": 1.0}}
        for _ in range(3):
            assert srv.client.post("/predictions", json=slow, headers={"Prefer": "respond-async"}).status_code == 202
        samples = scrape(srv)
        assert value(samples, "cocina_predictions_running") == 1
        assert value(samples, "cocina_queue_depth") == 2
    finally:
        srv.stop()


class _BrokenEngineGenerator(CharGenerator):
    """A generator whose engine statistics cannot be read (an engine in a bad state)."""

    def engine_stats(self) -> Any:
        raise RuntimeError("engine stats unavailable")


def test_failing_engine_stats_do_not_break_the_scrape(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", EchoBackend(), _BrokenEngineGenerator())
    try:
        samples = scrape(srv)
        assert value(samples, "cocina_queue_depth") == 0
        assert not any(name.startswith("vllm:") for name, _ in samples)
    finally:
        srv.stop()


def test_a_failing_observer_does_not_fail_predictions(live: LiveServer) -> None:
    def broken(_: Any) -> None:
        raise ValueError("observer bug")

    live.runtime.finish_observers.insert(0, broken)
    r = live.client.post("/predictions", json={"input": {"text": "a", "n": 1}})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    assert value(scrape(live), "cocina_predictions_total", surface="cog", status="succeeded") == 1


def test_a_request_cut_short_is_still_counted(tmp_path: Path) -> None:
    """The count is taken in the middleware's `finally`: a client that goes away mid-stream is counted once."""
    srv = start_server(tmp_path / "d", EchoBackend(), CharGenerator(token_delay_s=0.02, max_model_len=10000))
    try:
        body = {"model": "tiny-char", "prompt": "x", "max_tokens": 4000, "stream": True}
        with httpx.stream("POST", f"{srv.url}/v1/completions", json=body) as resp:
            next(resp.iter_lines())
        deadline = time.monotonic() + 5
        while value(scrape(srv), "cocina_predictions_total", surface="openai", status="canceled") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        samples = scrape(srv)
        assert value(samples, "cocina_http_requests_total", surface="openai", method="POST", status="200") == 1
        assert value(samples, "cocina_http_request_duration_seconds_count", surface="openai", status="200") == 1
    finally:
        srv.stop()


def test_metrics_render_without_a_runtime() -> None:
    metrics = ServerMetrics()
    metrics.observe_prediction("cog", "succeeded")
    text = metrics.render().decode()
    assert 'cocina_predictions_total{status="succeeded",surface="cog"} 1.0' in text
    assert "cocina_queue_depth" not in text  # nothing to read before the runtime exists


def _wait_for(srv: LiveServer, done: Any, timeout_s: float = 15.0) -> dict[Any, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(srv)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, {k: v for k, v in samples.items() if k[0].startswith("vllm:")}
        time.sleep(0.05)


def test_engine_request_metrics_by_finish_reason(tmp_path: Path) -> None:
    """vLLM's request-level series on cocina's engine (a tiny model): `vllm:request_success_total` by
    `finished_reason`, and the end-to-end latency and queue time histograms, one observation per ended request."""
    pytest.importorskip("torch")
    from cocina.engine.config import EngineConfig
    from cocina.engine.llm_engine import AsyncLLMEngine, LLMEngine
    from cocina.models.tiny import make_tiny_model
    from cocina.server.adapters import EngineGenerator, InProcessLLMBackend

    model_dir = make_tiny_model(tmp_path / "gpt2", arch="gpt2")
    # One sequence at a time: concurrent requests really wait in the engine's queue.
    config = EngineConfig(device="cpu", max_model_len=512, max_num_seqs=1)
    aengine = AsyncLLMEngine(LLMEngine.from_pretrained(model_dir, config))
    srv = start_server(tmp_path / "d", InProcessLLMBackend(aengine, concurrency=4), EngineGenerator(aengine, "tiny"))
    try:
        text = srv.client.get("/metrics").text
        assert "# TYPE vllm:request_success_total counter" in text
        assert "# TYPE vllm:e2e_request_latency_seconds histogram" in text
        assert "# TYPE vllm:request_queue_time_seconds histogram" in text
        types = {f.name: f.type for f in text_string_to_metric_families(text)}
        assert types["vllm:request_success"] == "counter"
        assert types["vllm:e2e_request_latency_seconds"] == types["vllm:request_queue_time_seconds"] == "histogram"
        before = scrape(srv)
        for reason in ("stop", "length", "abort", "error"):  # every reason is there before any request
            assert ("vllm:request_success_total", (("finished_reason", reason),)) in before
            assert value(before, "vllm:request_success_total", finished_reason=reason) == 0
        assert value(before, "vllm:e2e_request_latency_seconds_count") == 0
        assert value(before, "vllm:request_queue_time_seconds_bucket", le="0.3") == 0

        oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)

        def complete(i: int) -> str | None:
            out = oa.completions.create(model="tiny", prompt=f"request {i}", max_tokens=8, temperature=0)
            return out.choices[0].finish_reason

        with ThreadPoolExecutor(3) as pool:
            reasons = list(pool.map(complete, range(3)))
        assert set(reasons) <= {"stop", "length"} and "length" in reasons

        # A client that goes away mid-stream: its request ends in the engine as an abort.
        body = {"model": "tiny", "prompt": "a", "max_tokens": 480, "stream": True, "temperature": 0}
        with httpx.stream("POST", f"{srv.url}/v1/completions", json=body, timeout=30) as resp:
            lines = resp.iter_lines()
            for _ in range(3):
                next(lines)
        after = _wait_for(
            srv,
            lambda s: (
                value(s, "vllm:request_success_total", finished_reason="abort") == 1
                and value(s, "vllm:num_requests_running") == 0
            ),
        )
        for reason in ("stop", "length"):
            assert value(after, "vllm:request_success_total", finished_reason=reason) == reasons.count(reason)
        assert value(after, "vllm:request_success_total", finished_reason="error") == 0
        assert value(after, "cocina_engine_requests_total", outcome="aborted") == 1
        assert value(after, "cocina_engine_requests_total", outcome="finished") == 3
        ended = 4  # three finished, one aborted: each is one observation of both histograms
        for name in ("vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds"):
            assert value(after, f"{name}_count") == ended
            assert value(after, f"{name}_bucket", le="+Inf") == ended
            assert value(after, f"{name}_bucket", le="7680.0") <= ended
            assert value(after, f"{name}_sum") > 0
            assert value(after, f"cocina_engine_{name.removeprefix('vllm:')}_count") == ended
        # The requests waited in the engine's queue for each other (one sequence at a time), and waiting is
        # part of each one's end-to-end latency.
        e2e_sum = value(after, "vllm:e2e_request_latency_seconds_sum")
        assert 0 < value(after, "vllm:request_queue_time_seconds_sum") < e2e_sum
        stats = aengine.stats()
        assert value(after, "vllm:e2e_request_latency_seconds_sum") == pytest.approx(stats.e2e_request_latency_s.sum)
    finally:
        srv.stop()
        aengine.shutdown()


def test_full_document_needs_the_v1_token_and_metrics_does_not(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", EchoBackend(), CharGenerator(), api_token="s3cret")
    try:
        denied = srv.client.get("/v1/openapi.json")
        assert denied.status_code == 401 and denied.json()["title"] == "Unauthenticated"
        doc = srv.client.get("/v1/openapi.json", headers={"Authorization": "Bearer s3cret"}).json()
        assert "/v1/chat/completions" in doc["paths"] and doc["components"]["securitySchemes"]["bearerAuth"]
        assert srv.client.get("/metrics").status_code == 200  # scraped like Cog's open surface
    finally:
        srv.stop()
