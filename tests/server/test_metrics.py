"""`GET /metrics` scraped with prometheus_client's own parser after real traffic on every surface and model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import replicate
from prometheus_client.parser import text_string_to_metric_families

from cocina.server.metrics import ModelGauges, ServerMetrics
from tests.server.conftest import LiveServer, echo_spec, llm_spec, start_server

LLM = "acme/tiny"


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


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[LiveServer]:
    """The echo predictor and a tiny language model (one sequence at a time: requests wait in its engine)."""
    srv = start_server(
        tmp_path_factory.mktemp("metrics") / "data",
        [echo_spec(warm=True), llm_spec(tiny_model, LLM, warm=True, max_num_seqs=1, max_model_len=512)],
        concurrency=4,
    )
    try:
        deadline = time.monotonic() + 60
        while srv.client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield srv
    finally:
        srv.stop()


def test_metrics_move_with_traffic_on_every_surface(two: LiveServer) -> None:
    echo_v = two.runtime().model.version
    tiny_v = two.runtime(LLM).model.version
    echo = {"model_name": "acme/echo", "version": echo_v}
    tiny = {"model_name": LLM, "version": tiny_v}
    before = scrape(two)
    assert value(before, "cocina_queue_depth", **echo) == 0 and value(before, "cocina_concurrency", **echo) == 4
    assert value(before, "cocina_model_loaded", **echo) == value(before, "cocina_model_loaded", **tiny) == 1
    # The engine's series carry the model they belong to; a predictor has none.
    assert (
        value(before, "vllm:num_requests_running", **tiny) == 0
        and ("vllm:num_requests_running", (("model_name", "acme/tiny"), ("version", tiny_v))) in before
    )
    assert not any(
        name.startswith("vllm:") and dict(labels).get("model_name") == "acme/echo" for name, labels in before
    )

    def count(samples: dict[Any, float], surface: str, status: str, labels: dict[str, str]) -> float:
        return value(samples, "cocina_predictions_total", surface=surface, status=status, **labels)

    assert two.client.post("/predictions", json={"input": {"text": "a", "n": 2}}).status_code == 200
    assert two.client.post("/predictions", json={"input": {"text": "a", "mode": "fail"}}).json()["status"] == "failed"
    assert two.client.post("/predictions", json={"input": {}}).status_code == 422
    rep = replicate.Client(api_token="x", base_url=two.url)
    assert "".join(rep.run("acme/echo", input={"text": "b", "n": 1})) == "b0"
    oa = openai.OpenAI(base_url=f"{two.url}/v1", api_key="x", max_retries=0)
    oa.chat.completions.create(model=LLM, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    with pytest.raises(openai.NotFoundError):
        oa.completions.create(model="nope", prompt="x", max_tokens=1)
    for _ in range(3):
        assert two.client.get("/health-check").status_code == 200

    after = scrape(two)
    # Health checks and scrapes are `internal`, not Cog traffic.
    assert value(after, "cocina_http_requests_total", surface="internal", method="GET", status="200") >= 5
    assert value(after, "cocina_http_requests_total", surface="cog", method="GET", status="200") == 0
    assert value(after, "cocina_http_requests_total", surface="cog", method="POST", status="422") >= 1
    assert value(after, "cocina_http_requests_total", surface="openai", method="POST", status="404") >= 1
    for surface, status, labels in [
        ("cog", "succeeded", echo),
        ("cog", "failed", echo),
        ("replicate", "succeeded", echo),
        ("openai", "succeeded", tiny),
    ]:
        assert count(after, surface, status, labels) - count(before, surface, status, labels) == 1, (surface, status)
    assert value(after, "cocina_predictions_running", **echo) == 0
    assert (
        value(after, "vllm:generation_tokens_total", **tiny)
        >= value(before, "vllm:generation_tokens_total", **tiny) + 1
    )


def test_queue_depth_is_read_at_scrape_time(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", concurrency=1, max_queue=4)
    try:
        slow = {"input": {"text": "s", "n": 1, "delay": 1.0}}
        for _ in range(3):
            assert srv.client.post("/predictions", json=slow, headers={"Prefer": "respond-async"}).status_code == 202
        samples = scrape(srv)
        labels = {"model_name": "acme/echo", "version": srv.runtime().model.version}
        assert value(samples, "cocina_predictions_running", **labels) == 1
        assert value(samples, "cocina_queue_depth", **labels) == 2
    finally:
        srv.stop()


def test_malformed_engine_stats_do_not_break_the_scrape() -> None:
    metrics = ServerMetrics()
    broken = ModelGauges("acme/tiny", "v", True, 0, 0, 8, engine={"num_running": 1})  # keys missing
    text = metrics.render([broken]).decode()
    assert 'cocina_queue_depth{model_name="acme/tiny",version="v"} 0.0' in text
    assert "vllm:" not in text


def test_a_failing_observer_does_not_fail_predictions(live: LiveServer) -> None:
    def broken(_: Any) -> None:
        raise ValueError("observer bug")

    live.serving.book.finish_observers.insert(0, broken)
    r = live.client.post("/predictions", json={"input": {"text": "a", "n": 1}})
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    labels = {"model_name": "acme/echo", "version": live.runtime().model.version}
    assert value(scrape(live), "cocina_predictions_total", surface="cog", status="succeeded", **labels) == 1


def test_a_request_cut_short_is_still_counted(live: LiveServer) -> None:
    """The count is taken in the middleware's `finally`: a client that goes away mid-stream is counted once."""
    body = {"input": {"text": "s", "n": 100, "delay": 0.05}}
    with live.client.stream("POST", "/predictions", json=body, headers={"Accept": "text/event-stream"}) as resp:
        lines = resp.iter_lines()
        next(lines)
    deadline = time.monotonic() + 10
    while value(scrape(live), "cocina_http_requests_total", surface="cog", method="POST", status="200") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert value(scrape(live), "cocina_http_request_duration_seconds_count", surface="cog", status="200") == 1


def test_metrics_render_without_models() -> None:
    metrics = ServerMetrics()
    metrics.observe_prediction("cog", "succeeded", "acme/echo", "v1")
    text = metrics.render([]).decode()
    assert 'cocina_predictions_total{model_name="acme/echo",status="succeeded",surface="cog",version="v1"} 1.0' in text
    assert "cocina_queue_depth{" not in text  # no model to read


def _wait_for(srv: LiveServer, done: Any, timeout_s: float = 15.0) -> dict[Any, float]:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(srv)
        if done(samples):
            return samples
        assert time.monotonic() < deadline, {k: v for k, v in samples.items() if k[0].startswith("vllm:")}
        time.sleep(0.05)


def test_engine_request_metrics_by_finish_reason(two: LiveServer) -> None:
    """vLLM's request-level series, asked of the model's process: `vllm:request_success_total` by
    `finished_reason`, and the end-to-end latency and queue time histograms, one observation per ended request."""
    tiny = {"model_name": LLM, "version": two.runtime(LLM).model.version}
    text = two.client.get("/metrics").text
    assert "# TYPE vllm:request_success_total counter" in text
    assert "# TYPE vllm:e2e_request_latency_seconds histogram" in text
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["vllm:request_success"] == "counter"
    assert types["vllm:e2e_request_latency_seconds"] == types["vllm:request_queue_time_seconds"] == "histogram"
    before = scrape(two)
    for reason in ("stop", "length", "abort", "error"):  # every reason is there before any request
        assert ("vllm:request_success_total", tuple(sorted({"finished_reason": reason, **tiny}.items()))) in before

    def reason_count(s: dict[Any, float], reason: str) -> float:
        return value(s, "vllm:request_success_total", finished_reason=reason, **tiny)

    oa = openai.OpenAI(base_url=f"{two.url}/v1", api_key="x", max_retries=0)

    def complete(i: int) -> str | None:
        out = oa.completions.create(model=LLM, prompt=f"request {i}", max_tokens=8, temperature=0)
        return out.choices[0].finish_reason

    with ThreadPoolExecutor(3) as pool:
        reasons = list(pool.map(complete, range(3)))
    assert set(reasons) <= {"stop", "length"}

    # A client that goes away mid-stream: its request ends in the engine as an abort.
    body = {"model": LLM, "prompt": "hello", "max_tokens": 480, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{two.url}/v1/completions", json=body, timeout=30) as resp:
        lines = resp.iter_lines()
        for _ in range(3):
            next(lines)
    after = _wait_for(
        two,
        lambda s: (
            reason_count(s, "abort") == reason_count(before, "abort") + 1
            and value(s, "vllm:num_requests_running", **tiny) == 0
        ),
    )
    for reason in ("stop", "length"):
        assert reason_count(after, reason) - reason_count(before, reason) == reasons.count(reason)
    assert reason_count(after, "error") == reason_count(before, "error")
    for name in ("vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds"):
        ended = value(after, f"{name}_count", **tiny) - value(before, f"{name}_count", **tiny)
        assert ended == 4  # three finished, one aborted: each is one observation of both histograms
        assert value(after, f"{name}_bucket", le="+Inf", **tiny) == value(after, f"{name}_count", **tiny)
        assert value(after, f"cocina_engine_{name.removeprefix('vllm:')}_count", **tiny) == value(
            after, f"{name}_count", **tiny
        )
    # The requests waited in the engine's queue for each other (one sequence at a time), and waiting is
    # part of each one's end-to-end latency.
    queued = value(after, "vllm:request_queue_time_seconds_sum", **tiny)
    assert 0 < queued < value(after, "vllm:e2e_request_latency_seconds_sum", **tiny)
    stats = two.run(two.runtime(LLM).model.engine_stats())
    assert value(after, "vllm:e2e_request_latency_seconds_sum", **tiny) == pytest.approx(
        stats["e2e_request_latency_s"]["sum"]
    )
