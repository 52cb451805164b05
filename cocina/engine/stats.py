"""Engine statistics: counters, gauges and latency histograms for the metrics endpoint and the benchmarks.

The engine thread updates a :class:`StatsCollector`; anyone may call :meth:`LLMEngine.stats` to get an
immutable :class:`EngineStats` snapshot. Histograms use fixed, Prometheus-style cumulative buckets so that the
metrics layer can export them as they are.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

__all__ = ["LATENCY_BUCKETS_S", "EngineStats", "Histogram", "HistogramSnapshot", "StatsCollector"]

#: Upper bounds (seconds) of the latency buckets, from a fast GPU decode to a slow CPU prefill.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0,
)  # fmt: skip


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
