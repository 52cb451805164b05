"""`GET /metrics`: Prometheus text format — HTTP traffic per surface, predictions, the queue, and the engine.

Each app has its own `CollectorRegistry` (never prometheus_client's global one), so several servers in one
process — the tests — do not share or clash over counters.

- Recorded as things happen: `cocina_http_requests_total{surface,method,status}` and
  `cocina_http_request_duration_seconds{surface,status}` (by the request-id middleware when a response ends;
  surface `internal` for `/health-check` and `/metrics`),
  `cocina_predictions_total{surface,status}` (when a prediction, or an OpenAI request, ends).
- Read at scrape time: `cocina_queue_depth`, `cocina_predictions_running`, the server state, and — when the
  backend is cocina's engine — its `EngineStats` under vLLM's names (`vllm:num_requests_running`,
  `vllm:kv_cache_usage_perc`, `vllm:prompt_tokens_total`, `vllm:time_to_first_token_seconds`,
  `vllm:request_success_total{finished_reason}`, `vllm:e2e_request_latency_seconds`, ...) and as
  `cocina_engine_*`.

Recording never raises into a request: a metrics bug must not turn a served request into a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cocina.server.errors import surface_for_path

log = logging.getLogger("cocina.server.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Request latency buckets (seconds): health checks take a millisecond, a waited-for prediction a minute.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class RuntimeView(Protocol):
    """What the metrics read from the runtime at scrape time."""

    @property
    def num_queued(self) -> int: ...

    @property
    def num_running(self) -> int: ...

    @property
    def concurrency(self) -> int: ...


EngineStatsSource = Callable[[], Any]  # a `cocina.engine.stats.EngineStats` snapshot, or None (no engine yet)

# Operational endpoints polled by orchestrators and Prometheus: counted apart, so that a `cog` request rate is
# traffic from API clients, not one health check a second and one scrape every 15 s.
INTERNAL_PATHS = frozenset({"/health-check", "/metrics"})


def request_surface(path: str) -> str:
    """The `surface` label of a request: `internal` for health checks and scrapes, else the API it belongs to."""
    if path.rstrip("/") in INTERNAL_PATHS:
        return "internal"
    return surface_for_path(path).value


class ServerMetrics:
    """The server's metrics: call `observe_request` / `observe_prediction`; `render()` for a scrape."""

    def __init__(self, engine_stats: EngineStatsSource | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "cocina_http_requests",
            "HTTP requests answered, by API surface, method and status code.",
            ["surface", "method", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "cocina_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (streams included).",
            ["surface", "status"],
            buckets=_HTTP_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "cocina_predictions",
            "Predictions (and OpenAI requests) that ended, by surface and final status.",
            ["surface", "status"],
            registry=self.registry,
        )
        self.runtime: RuntimeView | None = None
        self.registry.register(_ScrapeTimeCollector(self, engine_stats))

    def observe_request(self, path: str, method: str, status: int, duration_s: float) -> None:
        """One answered request to `path` (called from the middleware's `finally`)."""
        try:
            surface = request_surface(path)
            self.requests.labels(surface, method, str(status)).inc()
            self.request_duration.labels(surface, str(status)).observe(duration_s)
        except Exception:
            log.exception("recording request metrics failed")

    def observe_prediction(self, surface: str, status: str) -> None:
        """A prediction ended with `status`."""
        try:
            self.predictions.labels(surface, status).inc()
        except Exception:
            log.exception("recording prediction metrics failed")

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _ScrapeTimeCollector(Collector):
    """Gauges of the runtime and the engine's counters, read when Prometheus scrapes."""

    def __init__(self, metrics: ServerMetrics, engine_stats: EngineStatsSource | None) -> None:
        self._metrics = metrics
        self._engine_stats = engine_stats

    def collect(self) -> Iterator[Metric]:
        runtime = self._metrics.runtime
        if runtime is not None:
            yield GaugeMetricFamily(
                "cocina_queue_depth", "Predictions waiting for a free slot.", value=runtime.num_queued
            )
            yield GaugeMetricFamily(
                "cocina_predictions_running", "Predictions running now.", value=runtime.num_running
            )
            yield GaugeMetricFamily(
                "cocina_concurrency", "Predictions the server runs at once.", value=runtime.concurrency
            )
        if self._engine_stats is not None:
            try:
                stats = self._engine_stats()
            except Exception:
                # A failing engine must not take the whole scrape down; its metrics are simply absent.
                log.exception("reading engine stats failed")
                return
            if stats is not None:  # None: the engine is still loading (or failed to)
                yield from engine_metrics(stats)


def _histogram(name: str, doc: str, snap: Any) -> HistogramMetricFamily:
    # EngineStats buckets are already cumulative (upper bound, count); +Inf is the total count.
    buckets = [(repr(float(bound)), float(count)) for bound, count in snap.buckets]
    buckets.append(("+Inf", float(snap.count)))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=float(snap.sum))


def engine_metrics(stats: Any) -> Iterator[Metric]:
    """An `EngineStats` snapshot as metrics: vLLM's names (what dashboards chart) and `cocina_engine_*`."""
    gauges = [
        ("num_requests_running", "Requests in the engine's running batch.", stats.num_running),
        ("num_requests_waiting", "Requests waiting in the engine's queue.", stats.num_waiting),
    ]
    counters = [
        ("prompt_tokens", "Prompt tokens of the requests received.", stats.prompt_tokens),
        ("generation_tokens", "Tokens generated.", stats.generated_tokens),
        ("num_preemptions", "Sequences preempted for lack of KV cache.", stats.num_preemptions),
        ("prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", stats.prefix_cache_queries),
        ("prefix_cache_hits", "Prompt tokens found in the prefix cache.", stats.prefix_cache_hits),
    ]
    for prefix in ("vllm:", "cocina_engine_"):
        for name, doc, value in gauges:
            yield GaugeMetricFamily(prefix + name, doc, value=value)
        for name, doc, value in counters:
            yield CounterMetricFamily(prefix + name, doc, value=value)
        yield _histogram(
            prefix + "time_to_first_token_seconds", "Time to the first generated token.", stats.time_to_first_token_s
        )
        yield _histogram(
            prefix + "inter_token_latency_seconds", "Time between generated tokens.", stats.inter_token_latency_s
        )
        yield _histogram(
            prefix + "e2e_request_latency_seconds",
            "Time from a request's arrival to its last token (or its abort or failure), per ended request.",
            stats.e2e_request_latency_s,
        )
        yield _histogram(
            prefix + "request_queue_time_seconds",
            "Time a request waited before its first scheduled step, per ended request.",
            stats.request_queue_time_s,
        )
    # vLLM counts every ended request here, aborted ones included, despite the name; one series per reason.
    success = CounterMetricFamily(
        "vllm:request_success", "Engine requests that ended, by finish reason.", labels=["finished_reason"]
    )
    for reason, count in stats.requests_by_finish_reason.items():
        success.add_metric([reason], count)
    yield success
    # vLLM's usage is a fraction in 0..1 despite the name; kept so, to match existing dashboards.
    yield GaugeMetricFamily("vllm:kv_cache_usage_perc", "KV cache usage (0..1).", value=stats.kv_cache_usage)
    yield GaugeMetricFamily(
        "cocina_engine_kv_cache_usage_ratio", "KV cache blocks in use over all blocks.", value=stats.kv_cache_usage
    )
    yield GaugeMetricFamily("cocina_engine_kv_blocks_used", "KV cache blocks in use.", value=stats.num_kv_blocks_used)
    yield GaugeMetricFamily("cocina_engine_kv_blocks_total", "KV cache blocks in all.", value=stats.num_kv_blocks_total)
    yield CounterMetricFamily(
        "cocina_engine_computed_prompt_tokens",
        "Prompt tokens run through the model (cache misses and recomputations).",
        value=stats.computed_prompt_tokens,
    )
    yield CounterMetricFamily("cocina_engine_steps", "Engine steps run.", value=stats.num_steps)
    requests = CounterMetricFamily(
        "cocina_engine_requests", "Engine requests that ended, by outcome.", labels=["outcome"]
    )
    requests.add_metric(["finished"], stats.num_requests_finished)
    requests.add_metric(["aborted"], stats.num_requests_aborted)
    requests.add_metric(["failed"], stats.num_requests_failed)
    yield requests
