"""`GET /metrics`: Prometheus text format — HTTP traffic per surface, predictions, the queue, and the engine.

Each app has its own `CollectorRegistry` (never prometheus_client's global one), so several servers in one
process — the tests — do not share or clash over counters.

- Recorded as things happen: `cocina_http_requests_total{surface,method,status}` and
  `cocina_http_request_duration_seconds{surface,status}` (by the request-id middleware when a response ends;
  surface `internal` for `/health-check` and `/metrics`),
  `cocina_predictions_total{surface,status,model_name,version}` (when a prediction, or an OpenAI request, ends).
- Read at scrape time, per model (labels `model_name` and `version`, vLLM's label first): `cocina_queue_depth`,
  `cocina_predictions_running`, `cocina_concurrency`, `cocina_model_loaded`, and for a loaded language model its
  engine's statistics (asked of the model's process) under vLLM's names (`vllm:num_requests_running`,
  `vllm:kv_cache_usage_perc`, `vllm:prompt_tokens_total`, `vllm:time_to_first_token_seconds`,
  `vllm:request_success_total{finished_reason}`, `vllm:e2e_request_latency_seconds`, ...) and as
  `cocina_engine_*`.

Recording never raises into a request: a metrics bug must not turn a served request into a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

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


# Operational endpoints polled by orchestrators and Prometheus: counted apart, so that a `cog` request rate is
# traffic from API clients, not one health check a second and one scrape every 15 s.
INTERNAL_PATHS = frozenset({"/health", "/health-check", "/metrics"})

# vLLM labels every metric with the model it serves; dashboards built on vLLM's names select on it.
MODEL_LABELS = ["model_name", "version"]


def request_surface(path: str) -> str:
    """The `surface` label of a request: `internal` for health checks and scrapes, else the API it belongs to."""
    if path.rstrip("/") in INTERNAL_PATHS:
        return "internal"
    return surface_for_path(path).value


@dataclass(frozen=True)
class ModelGauges:
    """One model's state at scrape time."""

    name: str
    version: str
    loaded: bool
    queued: int
    running: int
    concurrency: int
    engine: dict[str, Any] | None = None  # the engine's statistics (a language model that is loaded)


class ServerMetrics:
    """The server's metrics: call `observe_request` / `observe_prediction`; `render(models)` for a scrape."""

    def __init__(self) -> None:
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
            "Predictions (and OpenAI requests) that ended, by surface, final status and model.",
            ["surface", "status", *MODEL_LABELS],
            registry=self.registry,
        )
        self._scrape = _ScrapeTimeCollector()
        self.registry.register(self._scrape)
        self.guard: Any = None  # the guard's counters (`GuardMetrics`), when the server has a guard
        self.registry.register(_GuardCollector(self))

    def observe_request(self, path: str, method: str, status: int, duration_s: float) -> None:
        """One answered request to `path` (called from the middleware's `finally`)."""
        try:
            surface = request_surface(path)
            self.requests.labels(surface, method, str(status)).inc()
            self.request_duration.labels(surface, str(status)).observe(duration_s)
        except Exception:
            log.exception("recording request metrics failed")

    def observe_prediction(self, surface: str, status: str, model: str | None, version: str | None) -> None:
        """A prediction ended with `status`."""
        try:
            self.predictions.labels(surface, status, model or "", version or "").inc()
        except Exception:
            log.exception("recording prediction metrics failed")

    def render(self, models: list[ModelGauges]) -> bytes:
        """The Prometheus text exposition of every metric, with `models` read just before."""
        self._scrape.models = models
        try:
            return generate_latest(self.registry)
        finally:
            self._scrape.models = []


class _ScrapeTimeCollector(Collector):
    """Each model's gauges and its engine's counters, as read for this scrape."""

    def __init__(self) -> None:
        self.models: list[ModelGauges] = []

    def collect(self) -> Iterator[Metric]:
        gauges = {
            "cocina_queue_depth": ("Predictions waiting for a free slot.", lambda m: m.queued),
            "cocina_predictions_running": ("Predictions running now.", lambda m: m.running),
            "cocina_concurrency": ("Predictions the model runs at once.", lambda m: m.concurrency),
            "cocina_model_loaded": ("1 when the model's process is loaded and ready.", lambda m: int(m.loaded)),
        }
        for name, (doc, value) in gauges.items():
            family = GaugeMetricFamily(name, doc, labels=MODEL_LABELS)
            for m in self.models:
                family.add_metric([m.name, m.version], value(m))
            yield family
        engines = [m for m in self.models if m.engine and _renders(m)]
        if engines:
            yield from engine_metrics(engines)


class _GuardCollector(Collector):
    """`cocina_guard_verdicts_total{stage,scanner,action,outcome}` and
    `cocina_guard_refusals_total{reason}`, read from the guard's counters at scrape time."""

    def __init__(self, owner: ServerMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        guard = self.owner.guard
        if guard is None:
            return
        verdicts = CounterMetricFamily(
            "cocina_guard_verdicts",
            "Scanner verdicts, by stage (input, output), scanner, configured action and outcome (flagged, clean).",
            labels=["stage", "scanner", "action", "outcome"],
        )
        for (stage, scanner, action, outcome), n in sorted(guard.verdicts.items()):
            verdicts.add_metric([stage, scanner, action, outcome], n)
        yield verdicts
        refusals = CounterMetricFamily(
            "cocina_guard_refusals",
            "Requests the guard refused, by reason (requests, tokens, quota, key_*, model_not_allowed, blocked_*).",
            labels=["reason"],
        )
        for reason, n in sorted(guard.refusals.items()):
            refusals.add_metric([reason], n)
        yield refusals


def _renders(model: ModelGauges) -> bool:
    """Whether a model's engine snapshot is whole: a malformed one must not take the scrape down (its engine
    series are left out, the others stay)."""
    try:
        list(engine_metrics([model]))
    except Exception:
        log.exception("rendering the engine metrics of %s failed", model.name)
        return False
    return True


def _histogram(family: HistogramMetricFamily, labels: list[str], snap: dict[str, Any]) -> None:
    # EngineStats buckets are already cumulative (upper bound, count); +Inf is the total count.
    buckets = [(repr(float(bound)), float(count)) for bound, count in snap["buckets"]]
    buckets.append(("+Inf", float(snap["count"])))
    family.add_metric(labels, buckets=buckets, sum_value=float(snap["sum"]))


def engine_metrics(models: list[ModelGauges]) -> Iterator[Metric]:
    """Each model's engine statistics as metrics labelled by model: vLLM's names (what dashboards chart) and
    `cocina_engine_*`."""
    gauges = [
        ("num_requests_running", "Requests in the engine's running batch.", "num_running"),
        ("num_requests_waiting", "Requests waiting in the engine's queue.", "num_waiting"),
    ]
    counters = [
        ("prompt_tokens", "Prompt tokens of the requests received.", "prompt_tokens"),
        ("generation_tokens", "Tokens generated.", "generated_tokens"),
        ("num_preemptions", "Sequences preempted for lack of KV cache.", "num_preemptions"),
        ("prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", "prefix_cache_queries"),
        ("prefix_cache_hits", "Prompt tokens found in the prefix cache.", "prefix_cache_hits"),
    ]
    histograms = [
        ("time_to_first_token_seconds", "Time to the first generated token.", "time_to_first_token_s"),
        ("inter_token_latency_seconds", "Time between generated tokens.", "inter_token_latency_s"),
        (
            "e2e_request_latency_seconds",
            "Time from a request's arrival to its last token (or its abort or failure), per ended request.",
            "e2e_request_latency_s",
        ),
        (
            "request_queue_time_seconds",
            "Time a request waited before its first scheduled step, per ended request.",
            "request_queue_time_s",
        ),
    ]

    def labelled(m: ModelGauges) -> list[str]:
        return [m.name, m.version]

    for prefix in ("vllm:", "cocina_engine_"):
        for name, doc, key in gauges:
            g = GaugeMetricFamily(prefix + name, doc, labels=MODEL_LABELS)
            for m in models:
                g.add_metric(labelled(m), (m.engine or {})[key])
            yield g
        for name, doc, key in counters:
            c = CounterMetricFamily(prefix + name, doc, labels=MODEL_LABELS)
            for m in models:
                c.add_metric(labelled(m), (m.engine or {})[key])
            yield c
        for name, doc, key in histograms:
            h = HistogramMetricFamily(prefix + name, doc, labels=MODEL_LABELS)
            for m in models:
                _histogram(h, labelled(m), (m.engine or {})[key])
            yield h
    # vLLM counts every ended request here, aborted ones included, despite the name; one series per reason.
    success = CounterMetricFamily(
        "vllm:request_success",
        "Engine requests that ended, by finish reason.",
        labels=["finished_reason", *MODEL_LABELS],
    )
    for m in models:
        for reason, count in (m.engine or {})["requests_by_finish_reason"].items():
            success.add_metric([reason, *labelled(m)], count)
    yield success
    simple: list[tuple[type[Any], str, str, Callable[[dict[str, Any]], float]]] = [
        # vLLM's usage is a fraction in 0..1 despite the name; kept so, to match existing dashboards.
        (GaugeMetricFamily, "vllm:kv_cache_usage_perc", "KV cache usage (0..1).", lambda e: e["kv_cache_usage"]),
        (
            GaugeMetricFamily,
            "cocina_engine_kv_cache_usage_ratio",
            "KV cache blocks in use over all blocks.",
            lambda e: e["kv_cache_usage"],
        ),
        (
            GaugeMetricFamily,
            "cocina_engine_kv_blocks_used",
            "KV cache blocks in use.",
            lambda e: e["num_kv_blocks_used"],
        ),
        (
            GaugeMetricFamily,
            "cocina_engine_kv_blocks_total",
            "KV cache blocks in all.",
            lambda e: e["num_kv_blocks_total"],
        ),
        (
            CounterMetricFamily,
            "cocina_engine_computed_prompt_tokens",
            "Prompt tokens run through the model (cache misses and recomputations).",
            lambda e: e["computed_prompt_tokens"],
        ),
        (CounterMetricFamily, "cocina_engine_steps", "Engine steps run.", lambda e: e["num_steps"]),
    ]
    for kind, name, doc, value in simple:
        family = kind(name, doc, labels=MODEL_LABELS)
        for m in models:
            family.add_metric(labelled(m), value(m.engine or {}))
        yield family
    requests = CounterMetricFamily(
        "cocina_engine_requests", "Engine requests that ended, by outcome.", labels=["outcome", *MODEL_LABELS]
    )
    for m in models:
        e = m.engine or {}
        requests.add_metric(["finished", *labelled(m)], e["num_requests_finished"])
        requests.add_metric(["aborted", *labelled(m)], e["num_requests_aborted"])
        requests.add_metric(["failed", *labelled(m)], e["num_requests_failed"])
    yield requests
