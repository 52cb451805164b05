"""Driving a benchmark: Poisson or all-at-once arrivals, a concurrency cap, one shared HTTP client."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cocina.bench.backends import BackendConfig, send_request
from cocina.bench.metrics import RequestResult
from cocina.bench.workload import BenchRequest

if TYPE_CHECKING:
    import httpx


class BenchError(Exception):
    """A problem that stops the run before it starts (server unreachable, no model); one line."""


def arrival_offsets(n: int, rate: float, seed: int = 0) -> list[float]:
    """When each request is sent, in seconds from the start.

    `rate` = inf sends everything at once (the concurrency cap then does the pacing). Otherwise arrivals are a
    Poisson process: exponential gaps of mean 1/rate, the first request at 0 (as vLLM does), from a seeded
    generator so two runs with the same seed offer the same load.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if math.isinf(rate):
        return [0.0] * n
    if not rate > 0:
        raise ValueError(f"--rate must be > 0 requests/s (got {rate})")
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        if i:
            t += rng.expovariate(rate)
        out.append(t)
    return out


def _client(concurrency: int, timeout_s: float) -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(
        # One connection per request in flight: a smaller pool would queue requests inside the client and the
        # waiting would be counted as server latency.
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 30.0)),
        # Benchmarks measure the server, not a proxy picked up from the environment.
        trust_env=False,
    )


async def preflight(cfg: BackendConfig) -> BackendConfig:
    """Fail fast (one line) if the server cannot be reached; for OpenAI without --model, ask /v1/models."""
    import httpx

    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), trust_env=False) as client:
        try:
            if cfg.api in ("openai", "openai-chat") and not cfg.model:
                resp = await client.get(
                    cfg.base_url + "/v1/models",
                    headers={"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {},
                )
                if resp.status_code >= 400:
                    raise BenchError(
                        f"no --model given and GET {cfg.base_url}/v1/models answered HTTP {resp.status_code}"
                    )
                try:
                    models = [m["id"] for m in resp.json().get("data", [])]
                except (ValueError, KeyError, TypeError, AttributeError):
                    models = []
                if not models:
                    raise BenchError(f"no --model given and {cfg.base_url}/v1/models lists no model")
                from dataclasses import replace

                return replace(cfg, model=models[0])
            await client.get(cfg.base_url + "/")
        except httpx.ConnectError as exc:
            raise BenchError(f"cannot reach {cfg.base_url}: {exc or 'connection failed'}") from None
        except httpx.TimeoutException:
            raise BenchError(f"cannot reach {cfg.base_url}: no answer within 10 s") from None
        except httpx.HTTPError as exc:
            raise BenchError(f"cannot reach {cfg.base_url}: {type(exc).__name__}: {exc}") from None
    return cfg


async def run_benchmark(
    cfg: BackendConfig,
    requests: list[BenchRequest],
    *,
    concurrency: int | None = None,
    rate: float = math.inf,
    seed: int = 0,
    on_result: Callable[[RequestResult], None] | None = None,
) -> tuple[list[RequestResult], float]:
    """Send every request and return the results (in request order) and the run's wall time in seconds."""
    n = len(requests)
    cap = concurrency if concurrency and concurrency > 0 else max(n, 1)
    offsets = arrival_offsets(n, rate, seed)
    sem = asyncio.Semaphore(cap)
    results = [RequestResult(i, r.prompt_len, r.output_len) for i, r in enumerate(requests)]
    client = _client(cap, cfg.timeout_s)

    async def one(i: int) -> None:
        async with sem:
            await send_request(client, cfg, requests[i], results[i], t0)
        if on_result is not None:
            on_result(results[i])

    async with client:
        t0 = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        for i, off in enumerate(offsets):
            delay = t0 + off - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
    return results, duration
