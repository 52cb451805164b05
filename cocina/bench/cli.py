"""`cocina bench`: load a serving endpoint and measure it with vLLM's definitions (see docs/bench.md).

Module-level imports stay light (no httpx, rich or matplotlib) so that `cocina --help` is instant.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    app.command(name="bench")(bench)


def _fail(message: str, code: int) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _parse_extra(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--extra {item!r}: expected KEY=VALUE (VALUE is JSON, or a plain string)")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def bench(
    url: str = typer.Option(
        ..., "--url", help="Server base URL, e.g. http://127.0.0.1:8000 (a /v1 suffix is ok)."
    ),
    api: str = typer.Option("openai", "--api", help="openai | openai-chat | replicate | cog."),
    model: str | None = typer.Option(
        None,
        "--model",
        help="OpenAI model id (default: the first of /v1/models); Replicate owner/name or version.",
    ),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Override the request path of the API."),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        help="Bearer token (default: $COCINA_API_KEY, $OPENAI_API_KEY or $REPLICATE_API_TOKEN).",
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", "-c", help="Most requests in flight at once."
    ),
    requests: int | None = typer.Option(None, "--requests", "-n", help="Requests to send (default 100)."),
    rate: float = typer.Option(
        math.inf, "--rate", help="Poisson arrivals at this many requests/s (default: all at once)."
    ),
    input_len: int = typer.Option(128, "--input-len", help="Prompt tokens of synthetic requests."),
    output_len: int | None = typer.Option(
        None, "--output-len", help="Output tokens requested (default 128)."
    ),
    dataset: Path | None = typer.Option(
        None, "--dataset", help='JSONL lines {"prompt": ..., "output_len": ...}.'
    ),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="Local tokenizer path: exact prompt lengths and token counts without usage."
    ),
    ignore_eos: bool = typer.Option(
        False, "--ignore-eos", help="Ask the server to generate exactly --output-len."
    ),
    goodput: list[str] | None = typer.Option(
        None, "--goodput", help="SLOs in ms, e.g. --goodput ttft:500 --goodput tpot:50 (also e2el:MS)."
    ),
    percentiles: str = typer.Option(
        "50,90,99", "--percentiles", help="Comma-separated percentiles to report."
    ),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds before one request counts as failed."),
    seed: int = typer.Option(0, "--seed", help="Seed of the prompts and of the arrival times."),
    temperature: float = typer.Option(0.0, "--temperature", help="Sampling temperature sent (OpenAI APIs)."),
    prompt_field: str = typer.Option(
        "prompt", "--prompt-field", help="Input name of the prompt (Replicate, Cog)."
    ),
    max_tokens_field: str = typer.Option(
        "max_tokens", "--max-tokens-field", help="Input name of the output length (Replicate, Cog)."
    ),
    extra: list[str] | None = typer.Option(
        None, "--extra", help="KEY=JSON added to the request body (OpenAI) or to input (Replicate, Cog)."
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write every metric, the config and each request."
    ),
    plot_out: Path | None = typer.Option(None, "--plot", help="Write latency and throughput plots (PNG)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress bar on stderr."),
) -> None:
    """Benchmark a serving endpoint: TTFT, TPOT, ITL, E2E latency, throughput and goodput."""
    import asyncio

    from rich.console import Console

    from cocina.bench.backends import APIS, BackendConfig, normalize_base_url
    from cocina.bench.metrics import compute_metrics, parse_slos
    from cocina.bench.report import plot, print_summary, to_json
    from cocina.bench.runner import BenchError, preflight
    from cocina.bench.workload import WorkloadError, dataset_requests, load_tokenizer, synthetic_requests

    # Validate everything before touching the network: bad input exits 2 with one line.
    try:
        if api not in APIS:
            raise ValueError(f"--api must be one of {', '.join(APIS)} (got {api!r})")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1 (got {concurrency})")
        if not rate > 0:
            raise ValueError(f"--rate must be > 0 requests/s (got {rate:g})")
        if not timeout > 0:
            raise ValueError(f"--timeout must be > 0 s (got {timeout:g})")
        pcts = tuple(float(p) for p in percentiles.split(",") if p.strip())
        if any(not 0 <= p <= 100 for p in pcts):
            raise ValueError("--percentiles must be between 0 and 100")
        slo = parse_slos(goodput or [])
        extra_fields = _parse_extra(extra or [])
        tok = load_tokenizer(tokenizer) if tokenizer else None
        count_tokens = (lambda text: len(tok[0](text))) if tok else None
        if dataset is not None:
            reqs = dataset_requests(
                dataset, requests, default_output_len=output_len, count_tokens=count_tokens
            )
        else:
            reqs = synthetic_requests(
                100 if requests is None else requests,
                input_len,
                128 if output_len is None else output_len,
                seed=seed,
                tokenizer=tok,
            )
    except (ValueError, WorkloadError) as exc:
        raise _fail(str(exc), 2) from None

    key = (
        api_key
        or os.environ.get("COCINA_API_KEY")
        or (os.environ.get("REPLICATE_API_TOKEN") if api == "replicate" else os.environ.get("OPENAI_API_KEY"))
    )
    cfg = BackendConfig(
        api=api,
        base_url=normalize_base_url(url),
        model=model,
        endpoint=endpoint,
        api_key=key,
        ignore_eos=ignore_eos,
        temperature=temperature,
        prompt_field=prompt_field,
        max_tokens_field=max_tokens_field,
        extra=extra_fields,
        timeout_s=timeout,
        count_tokens=count_tokens,
    )
    err = Console(stderr=True)
    try:
        cfg = asyncio.run(preflight(cfg))
    except BenchError as exc:
        raise _fail(str(exc), 1) from None

    results, duration = asyncio.run(_run_with_progress(cfg, reqs, concurrency, rate, seed, progress, err))
    m = compute_metrics(results, duration, slo=slo, percentiles=pcts)
    config = {
        "url": cfg.base_url,
        "api": api,
        "model": cfg.model,
        "endpoint": endpoint,
        "requests": len(reqs),
        "concurrency": concurrency,
        "rate": None if math.isinf(rate) else rate,
        "input_len": None if dataset else input_len,
        "output_len": output_len if dataset else (128 if output_len is None else output_len),
        "dataset": str(dataset) if dataset else None,
        "tokenizer": tokenizer,
        "exact_prompt_len": tokenizer is not None,
        "ignore_eos": ignore_eos,
        "temperature": temperature,
        "seed": seed,
        "timeout_s": timeout,
        "percentiles": list(pcts),
    }
    out = Console(stderr=json_out is not None and str(json_out) == "-")
    print_summary(m, config, out)
    if json_out is not None:
        text = json.dumps(to_json(m, config, results), indent=2, allow_nan=False, default=_json_default)
        if str(json_out) == "-":
            print(text)
        else:
            json_out.write_text(text + "\n", encoding="utf-8")
            out.print(f"wrote {json_out}")
    if plot_out is not None:
        plot(results, m, plot_out, f"{api} {cfg.base_url} {cfg.model or ''}".strip())
        out.print(f"wrote {plot_out}")
    if m["completed"] == 0:
        raise _fail(f"all {m['failed']} requests failed", 1)


def _json_default(o: object) -> object:
    return str(o)


async def _run_with_progress(
    cfg: Any, reqs: list[Any], concurrency: int | None, rate: float, seed: int, show: bool, console: Any
) -> tuple[list[Any], float]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cocina.bench.runner import run_benchmark

    counts = {"ok": 0, "failed": 0}
    with Progress(
        TextColumn("[bold]bench[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
        transient=False,
    ) as prog:
        task = prog.add_task("bench", total=len(reqs), status="")

        def on_result(r: Any) -> None:
            counts["ok" if r.success else "failed"] += 1
            status = f"ok {counts['ok']}" + (
                f" [red]failed {counts['failed']}[/]" if counts["failed"] else ""
            )
            prog.update(task, advance=1, status=status)

        return await run_benchmark(
            cfg, reqs, concurrency=concurrency, rate=rate, seed=seed, on_result=on_result
        )
