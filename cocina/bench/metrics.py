"""Per-request records and the run's metrics, with the definitions of vLLM's serving benchmark.

- TTFT: from sending the request to the first streamed chunk that carries content (a chat stream's role-only
  first chunk does not count: no token has been produced yet).
- ITL: the gaps between consecutive content chunks, all requests pooled.
- E2E latency: from sending to the last content chunk.
- TPOT: per request with more than one output token, (E2E - TTFT) / (output tokens - 1).
- Throughputs: totals over the wall time of the whole run (first send to last completion).
- Goodput: requests per second that met every SLO given (TTFT, TPOT, E2E latency), as vLLM defines it.
All times are kept in seconds internally and reported in milliseconds, as vLLM does.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PERCENTILES = (50.0, 90.0, 99.0)


@dataclass
class RequestResult:
    """What one request did. Times are seconds; `start` is relative to the start of the run."""

    index: int
    prompt_len: int
    expected_output_len: int
    start: float = 0.0
    success: bool = False
    error: str | None = None
    status_code: int | None = None
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    # (seconds since the run started, text) for each content chunk: the tokens-over-time series and chunk
    # counting.
    chunks: list[tuple[float, str]] = field(default_factory=list)
    output_tokens: int = 0
    output_tokens_source: str = (
        "chunks"  # "usage" (server said), "tokenizer", or "chunks" (one token per chunk)
    )
    generated_text: str = ""

    @property
    def tpot(self) -> float | None:
        if self.output_tokens > 1:
            return (self.latency - self.ttft) / (self.output_tokens - 1)
        return None


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks: numpy's default, which vLLM uses."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def distribution_ms(values_s: list[float], percentiles: tuple[float, ...]) -> dict[str, float | None]:
    """mean/median/std/min/max and percentiles of a list of seconds, in milliseconds (None when empty)."""
    if not values_s:
        out: dict[str, float | None] = {"mean": None, "median": None, "std": None, "min": None, "max": None}
        out.update({_pkey(p): None for p in percentiles})
        return out
    ms = [v * 1000.0 for v in values_s]
    # Population std (ddof=0), as numpy.std and therefore vLLM.
    out = {
        "mean": statistics.fmean(ms),
        "median": percentile(ms, 50),
        "std": statistics.pstdev(ms) if len(ms) > 1 else 0.0,
        "min": min(ms),
        "max": max(ms),
    }
    out.update({_pkey(p): percentile(ms, p) for p in percentiles})
    return out


def _pkey(p: float) -> str:
    return f"p{p:g}"


@dataclass(frozen=True)
class SLO:
    """Goodput thresholds in milliseconds; None means not constrained."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    @property
    def any(self) -> bool:
        return any(x is not None for x in (self.ttft_ms, self.tpot_ms, self.e2el_ms))

    def met_by(self, r: RequestResult) -> bool:
        if self.ttft_ms is not None and r.ttft * 1000 > self.ttft_ms:
            return False
        # vLLM counts a one-token request's TPOT as 0: it has no decode steps to be slow in.
        tpot = r.tpot or 0.0
        if self.tpot_ms is not None and tpot * 1000 > self.tpot_ms:
            return False
        return not (self.e2el_ms is not None and r.latency * 1000 > self.e2el_ms)


def parse_slos(items: list[str]) -> SLO:
    """`["ttft:500", "tpot:50", "e2el:2000"]` (milliseconds) -> SLO; ValueError with a one-line message
    otherwise.
    """
    values: dict[str, float] = {}
    for item in items:
        for part in item.split():
            name, sep, num = part.partition(":")
            name = name.strip().lower()
            if not sep or name not in ("ttft", "tpot", "e2el"):
                raise ValueError(f"--goodput {part!r}: expected ttft:MS, tpot:MS or e2el:MS")
            try:
                v = float(num)
            except ValueError:
                raise ValueError(f"--goodput {part!r}: {num!r} is not a number of milliseconds") from None
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"--goodput {part!r}: the threshold must be > 0 ms")
            values[name] = v
    return SLO(values.get("ttft"), values.get("tpot"), values.get("e2el"))


def compute_metrics(
    results: list[RequestResult],
    duration_s: float,
    *,
    slo: SLO | None = None,
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES,
    bucket_s: float = 1.0,
) -> dict[str, Any]:
    """The run's summary as a JSON-able dict (times in ms, throughputs per second)."""
    ok = [r for r in results if r.success]
    failed = [r for r in results if not r.success]
    total_in = sum(r.prompt_len for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    ttfts = [r.ttft for r in ok]
    tpots = [t for r in ok if (t := r.tpot) is not None]
    itls = [x for r in ok for x in r.itl]
    e2els = [r.latency for r in ok]
    dur = duration_s if duration_s > 0 else math.nan

    series = output_tokens_series(ok, bucket_s)
    # Requests in flight at once, from the start/end events of every request (successful or not).
    events = sorted([(r.start, 1) for r in results] + [(r.start + r.latency, -1) for r in results])
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)

    m: dict[str, Any] = {
        "completed": len(ok),
        "failed": len(failed),
        "total_requests": len(results),
        "duration_s": duration_s,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput_req_s": len(ok) / dur,
        "output_token_throughput_tok_s": total_out / dur,
        "total_token_throughput_tok_s": (total_in + total_out) / dur,
        "peak_output_token_throughput_tok_s": max((v for _, v in series), default=0.0),
        "max_concurrent_requests": peak,
        "ttft_ms": distribution_ms(ttfts, percentiles),
        "tpot_ms": distribution_ms(tpots, percentiles),
        "itl_ms": distribution_ms(itls, percentiles),
        "e2el_ms": distribution_ms(e2els, percentiles),
        "output_tokens_source": dict(Counter(r.output_tokens_source for r in ok)),
        "errors_by_status": dict(Counter(_error_key(r) for r in failed)),
        "first_errors": [f"request {r.index}: {r.error}" for r in failed[:5]],
        "goodput_req_s": None,
        "slo_ms": None,
    }
    if slo is not None and slo.any:
        good = sum(1 for r in ok if slo.met_by(r))
        m["goodput_req_s"] = good / dur
        m["good_requests"] = good
        m["slo_ms"] = {"ttft": slo.ttft_ms, "tpot": slo.tpot_ms, "e2el": slo.e2el_ms}
    return m


def _error_key(r: RequestResult) -> str:
    if r.status_code is not None:
        return f"HTTP {r.status_code}"
    text = r.error or "error"
    return text.split(":")[0][:40]


def output_tokens_series(ok: list[RequestResult], bucket_s: float = 1.0) -> list[tuple[float, float]]:
    """Output tokens per second over the run, in buckets of `bucket_s` seconds: [(bucket start, tokens/s)].

    When the server's token count (usage) differs from the number of chunks, each chunk carries an equal share
    so the series sums to the reported total.
    """
    if bucket_s <= 0:
        raise ValueError("bucket must be > 0 s")
    buckets: dict[int, float] = {}
    for r in ok:
        if not r.chunks:
            continue
        per_chunk = r.output_tokens / len(r.chunks)
        for t, _ in r.chunks:
            k = int(t // bucket_s)
            buckets[k] = buckets.get(k, 0.0) + per_chunk
    if not buckets:
        return []
    last = max(buckets)
    return [(k * bucket_s, buckets.get(k, 0.0) / bucket_s) for k in range(last + 1)]
