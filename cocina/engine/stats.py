"""Engine statistics: counters, gauges and latency histograms for the metrics endpoint and the benchmarks.

The engine thread updates a :class:`StatsCollector`; anyone may call :meth:`LLMEngine.stats` to get an
immutable :class:`EngineStats` snapshot. Histograms use fixed, Prometheus-style cumulative buckets so that the
metrics layer can export them as they are.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from cocina.engine.sequence import FinishReason

__all__ = [
    "FINISH_REASONS",
    "LATENCY_BUCKETS_S",
    "REQUEST_LATENCY_BUCKETS_S",
    "EngineStats",
    "Histogram",
    "HistogramSnapshot",
    "StatsCollector",
]

#: Upper bounds (seconds) of the latency buckets, from a fast GPU decode to a slow CPU prefill.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0,
)  # fmt: skip

#: Upper bounds (seconds) of the whole-request histograms (end-to-end latency, queue time): vLLM's buckets for
#: ``vllm:e2e_request_latency_seconds`` and ``vllm:request_queue_time_seconds``, so dashboards line up.
REQUEST_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
)  # fmt: skip

#: Every finish reason a request can end with (the ``finished_reason`` label values), in a stable order.
FINISH_REASONS: tuple[str, ...] = tuple(reason.value for reason in FinishReason)


@dataclass(frozen=True)
class HistogramSnapshot:
    """``buckets`` holds ``(upper_bound, cumulative_count)``; the implicit +Inf bucket equals ``count``."""

    count: int
    sum: float
    max: float
    buckets: tuple[tuple[float, int], ...]

    @property
    def mean(self) -> float:
        """Average observation (0 when empty)."""
        return self.sum / self.count if self.count else 0.0


class Histogram:
    """A thread-safe fixed-bucket histogram."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.bounds = bounds
        self._counts = [0] * len(bounds)
        self._count = 0
        self._sum = 0.0
        self._max = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Record one observation."""
        with self._lock:
            self._count += 1
            self._sum += value
            self._max = max(self._max, value)
            for i, bound in enumerate(self.bounds):
                if value <= bound:
                    self._counts[i] += 1
                    break

    def snapshot(self) -> HistogramSnapshot:
        """An immutable copy with cumulative bucket counts."""
        with self._lock:
            cumulative = []
            total = 0
            for bound, c in zip(self.bounds, self._counts, strict=True):
                total += c
                cumulative.append((bound, total))
            return HistogramSnapshot(self._count, self._sum, self._max, tuple(cumulative))


@dataclass(frozen=True)
class EngineStats:
    """One snapshot of the engine's state and counters (counters are totals since the engine started)."""

    num_running: int
    num_waiting: int
    num_kv_blocks_used: int
    num_kv_blocks_total: int
    prefix_cache_queries: int  # prompt tokens looked up in the prefix cache
    prefix_cache_hits: int  # of those, tokens whose KV was already cached
    prompt_tokens: int  # prompt tokens of the requests received
    computed_prompt_tokens: int  # prompt tokens actually run through the model (misses and recomputes)
    generated_tokens: int
    num_preemptions: int
    num_requests_finished: int
    num_requests_aborted: int
    num_requests_failed: int
    num_steps: int
    time_to_first_token_s: HistogramSnapshot
    inter_token_latency_s: HistogramSnapshot
    # Requests that ended, by finish reason (every reason of FINISH_REASONS present, 0 included); each of them
    # is also one observation of the two histograms below.
    requests_by_finish_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISH_REASONS, 0))
    e2e_request_latency_s: HistogramSnapshot = field(  # arrival to the last token (or the abort / failure)
        default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS_S).snapshot()
    )
    request_queue_time_s: HistogramSnapshot = field(  # arrival to the first scheduled step
        default_factory=lambda: Histogram(REQUEST_LATENCY_BUCKETS_S).snapshot()
    )

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of KV blocks in use (0..1)."""
        return self.num_kv_blocks_used / self.num_kv_blocks_total if self.num_kv_blocks_total else 0.0

    @property
    def prefix_cache_hit_rate(self) -> float:
        """Cached tokens over looked-up tokens (0 when nothing was looked up)."""
        return self.prefix_cache_hits / self.prefix_cache_queries if self.prefix_cache_queries else 0.0


class StatsCollector:
    """The engine-side mutable counters; only the engine thread writes them."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.computed_prompt_tokens = 0
        self.generated_tokens = 0
        self.num_requests_finished = 0
        self.num_requests_aborted = 0
        self.num_requests_failed = 0
        self.num_steps = 0
        self.ttft = Histogram()
        self.itl = Histogram()
        self.requests_by_finish_reason: dict[str, int] = dict.fromkeys(FINISH_REASONS, 0)
        self.e2e_latency = Histogram(REQUEST_LATENCY_BUCKETS_S)
        self.queue_time = Histogram(REQUEST_LATENCY_BUCKETS_S)

    def observe_request_end(self, reason: str, e2e_s: float, queue_s: float) -> None:
        """A request ended with ``reason`` (a ``FinishReason`` value): count it, and record its end-to-end
        latency (arrival to its last token, abort or failure) and its queue time (arrival to its first scheduled
        step; the whole e2e time for a request aborted before it ever ran). Negative times count as 0."""
        self.requests_by_finish_reason[reason] = self.requests_by_finish_reason.get(reason, 0) + 1
        self.e2e_latency.observe(max(0.0, e2e_s))
        self.queue_time.observe(max(0.0, queue_s))
