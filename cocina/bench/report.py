"""Human and machine output of `cocina bench`: a rich summary table, a JSON document and a plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cocina.bench.metrics import RequestResult, output_tokens_series


def _f(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def print_summary(m: dict[str, Any], config: dict[str, Any], console: Console) -> None:
    t = Table(
        title=f"cocina bench: {config['api']} {config['url']} ({config.get('model') or 'default model'})"
    )
    t.add_column("metric")
    t.add_column("value", justify="right")
    rate = config["rate"]
    t.add_row(
        "arrivals",
        ("all at once" if rate is None else f"Poisson {rate:g} req/s")
        + (f", at most {config['concurrency']} in flight" if config.get("concurrency") else ""),
    )
    t.add_row("successful requests", _f(m["completed"]))
    t.add_row("failed requests", f"[red]{m['failed']}[/]" if m["failed"] else "0")
    t.add_row("duration (s)", _f(m["duration_s"]))
    t.add_row(
        "total input tokens" + ("" if config.get("exact_prompt_len") else " (approx.)"),
        _f(m["total_input_tokens"]),
    )
    src = ", ".join(f"{k}: {v}" for k, v in m["output_tokens_source"].items()) or "-"
    t.add_row(f"total output tokens ({src})", _f(m["total_output_tokens"]))
    t.add_row("request throughput (req/s)", _f(m["request_throughput_req_s"]))
    t.add_row("output token throughput (tok/s)", _f(m["output_token_throughput_tok_s"]))
    t.add_row("peak output token throughput (tok/s)", _f(m["peak_output_token_throughput_tok_s"]))
    t.add_row("total token throughput (tok/s)", _f(m["total_token_throughput_tok_s"]))
    if m.get("goodput_req_s") is not None:
        slo = ", ".join(f"{k}<={v:g}ms" for k, v in m["slo_ms"].items() if v is not None)
        t.add_row(f"goodput (req/s, {slo})", f"{_f(m['goodput_req_s'])} ({m['good_requests']} requests)")
    t.add_row("max concurrent requests", _f(m["max_concurrent_requests"]))
    for key, label in (
        ("ttft_ms", "TTFT"),
        ("tpot_ms", "TPOT"),
        ("itl_ms", "ITL"),
        ("e2el_ms", "E2E latency"),
    ):
        d = m[key]
        t.add_section()
        # The median is p50: show it once.
        for stat in ("mean", "median", *[k for k in d if k.startswith("p") and k != "p50"]):
            t.add_row(f"{label} {stat} (ms)", _f(d[stat]))
    console.print(t)
    if m["failed"]:
        console.print(
            "[red]failures:[/] " + ", ".join(f"{k} x{v}" for k, v in m["errors_by_status"].items()),
            highlight=False,
        )
        for line in m["first_errors"]:
            console.print(f"  {line}", highlight=False, markup=False)


def _finite(x: Any) -> Any:
    """JSON has no NaN or infinity (a run with no successful request has undefined means): write null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def to_json(m: dict[str, Any], config: dict[str, Any], results: list[RequestResult]) -> dict[str, Any]:
    ok = [r for r in results if r.success]
    return _finite(
        {
            "config": config,
            "metrics": m,
            "output_tokens_per_s_series": [[t, v] for t, v in output_tokens_series(ok)],
            "requests": [
                {
                    "index": r.index,
                    "start_s": r.start,
                    "success": r.success,
                    "error": r.error,
                    "status_code": r.status_code,
                    "prompt_len": r.prompt_len,
                    "expected_output_len": r.expected_output_len,
                    "output_tokens": r.output_tokens,
                    "ttft_ms": r.ttft * 1000 if r.success else None,
                    "tpot_ms": (r.tpot * 1000 if r.tpot is not None else None) if r.success else None,
                    "e2el_ms": r.latency * 1000,
                    "itl_ms": [x * 1000 for x in r.itl],
                }
                for r in results
            ],
        }
    )


def plot(results: list[RequestResult], m: dict[str, Any], path: Path, title: str) -> None:
    """Latency histograms, latency CDFs, and output tokens/s over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.success]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    series_ms = {
        "TTFT": [r.ttft * 1000 for r in ok],
        "TPOT": [t * 1000 for r in ok if (t := r.tpot) is not None],
        "ITL": [x * 1000 for r in ok for x in r.itl],
        "E2E latency": [r.latency * 1000 for r in ok],
    }
    ax = axes[0]
    for name in ("TTFT", "E2E latency"):
        if series_ms[name]:
            ax.hist(series_ms[name], bins=30, alpha=0.6, label=name)
    ax.set_xlabel("ms")
    ax.set_ylabel("requests")
    ax.set_title("latency distribution")
    ax.legend()

    ax = axes[1]
    for name, vals in series_ms.items():
        if vals:
            xs = sorted(vals)
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("ms (log)")
    ax.set_ylabel("fraction <= x")
    ax.set_title("latency CDF")
    ax.grid(True, alpha=0.3)
    ax.legend()

    ax = axes[2]
    bucket = max(0.1, m["duration_s"] / 60) if m["duration_s"] > 0 else 1.0
    pts = output_tokens_series(ok, bucket)
    if pts:
        ax.step([t for t, _ in pts], [v for _, v in pts], where="post", label="output tokens/s")
    ax.axhline(m["output_token_throughput_tok_s"] or 0, color="grey", linestyle=":", label="run average")
    failed_t = [r.start for r in results if not r.success]
    if failed_t:
        ax.plot(failed_t, [0] * len(failed_t), "rx", label="failed requests (sent at)")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("output tokens/s")
    ax.set_title(f"output tokens/s over time ({bucket:.2g} s buckets)")
    ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
