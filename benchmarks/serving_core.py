"""Serving-core benchmark (issue #9): what many models in their own processes cost, side by side in one run.

Three measures, each against its baselines in the same run (servers started one after the other as subprocesses
on 127.0.0.1, each stopped before the next):

1. **Echo predictor over the Cog API** (`benchmarks/echo_predictor`: `predict` returns its input).
   Systems: ``cocina`` (this checkout), ``cocina-before`` (the commit before the serving core, `--baseline-rev`,
   unpacked with `git archive` and run from the same virtualenv), and ``coglet`` (Cog's Rust prediction server,
   `coglet` and `cog` from PyPI, installed into the work directory).
   - c=1: sequential `POST /predictions` round trips (httpx, keep-alive); the added latency is their p50 minus the
     p50 of calling `Predictor().predict` in this process. Refused (non-2xx) answers are counted, not timed.
   - c=32: `wrk -c 32` for `--wrk-seconds`; ok/s counts 2xx answers only, and refused ones are reported.
2. **A language model through its own process** (GPT-2-small shape, random weights, `benchmarks/serving.py`'s
   model): streaming chat, 32-token prompts, 64 output tokens, EOS ignored, at c=1 and c=32, `cocina` (the
   engine in the model's process) against ``cocina-before`` (the engine in the server's process).
3. **Cold start**: a server whose default model is the echo predictor, and a language model that is not loaded;
   the time from sending a streaming chat request for it to its first token (the load included), for the demo
   model and the GPT-2-small shape, then the same request warm.

    .venv/bin/python benchmarks/serving_core.py             # everything; writes docs/benchmarks.md's section
    .venv/bin/python benchmarks/serving_core.py --quick --no-docs

`wrk` comes from Debian (`bash scripts/install-bench-tools.sh`); without it the c=32 echo figures are skipped and
the run says so. Prints one JSON object with every figure and the targets of issue #9.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._docs import replace_section  # noqa: E402
from benchmarks.serving import (  # noqa: E402  (the same server harness and model as the serving benchmark)
    Server,
    _code_version,
    _machine,
    _uptime,
    build_model,
    cocina_cmd,
    free_port,
    running,
)

SECTION = "## Serving core (benchmarks/serving_core.py)"
ECHO_PROJECT = ROOT / "benchmarks" / "echo_predictor"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "cocina-serving-core-bench"
BASELINE_REV = "183bf83"  # the last commit before the serving core (issue #9)
COGLET_VERSION = "0.23.1"

TARGET_ECHO_ADDED_MS = 2.0
TARGET_ECHO_OK_S = 400.0
TARGET_PROCESS_HOP = 0.95

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body   = '{"input": {"text": "hola"}}'
wrk.headers["Content-Type"] = "application/json"
"""


def _log(msg: str) -> None:
    print(f"[serving-core {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the systems ----------------------------------------------------------------------------------------------


def baseline_tree(workdir: Path, rev: str) -> Path:
    """The cocina package of `rev` (git archive), unpacked once into the work directory."""
    out = workdir / f"cocina-{rev}"
    if (out / "cocina" / "__init__.py").exists():
        return out
    data = subprocess.run(
        ["git", "archive", "--format=tar", rev, "cocina"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def install_coglet(workdir: Path) -> Path:
    """`coglet` and `cog` (its Python SDK) from PyPI in a `--target` folder of the work directory."""
    target = workdir / f"coglet-{COGLET_VERSION}"
    if (target / "coglet").exists():
        return target
    _log(f"installing coglet {COGLET_VERSION} into {target}")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(target),
            f"coglet=={COGLET_VERSION}",
            f"cog=={COGLET_VERSION}",
        ],
        check=True,
        capture_output=True,
    )
    return target


def echo_server(system: str, workdir: Path, baseline: Path | None, coglet: Path | None) -> Server:
    port = free_port()
    log = workdir / f"echo-{system}.log"
    data = Path(tempfile.mkdtemp(prefix=f"echo-{system}-", dir=workdir))
    if system == "coglet":
        assert coglet is not None
        code = f"import coglet; coglet.server.serve('predict.py:Predictor', host='127.0.0.1', port={port})"
        return Server(
            system,
            [sys.executable, "-c", code],
            env={"PYTHONPATH": str(coglet)},
            cwd=ECHO_PROJECT,
            log=log,
            port=port,
            health="/health-check",
        )
    env = {"PYTHONPATH": str(baseline)} if system == "cocina-before" else {}
    cmd = [sys.executable, "-m", "cocina.cli", "serve", str(ECHO_PROJECT), "--port", str(port), "--data-dir", str(data)]
    return Server(system, cmd, env=env, cwd=workdir, log=log, port=port, health="/health-check")


# -- 1. echo --------------------------------------------------------------------------------------------------


def direct_predict_p50_ms(n: int) -> float:
    """p50 of `Predictor().predict(text=...)` called in this process: what the server adds is measured over it."""
    spec = importlib.util.spec_from_file_location("_echo_predict", ECHO_PROJECT / "predict.py")
    assert spec is not None and spec.loader is not None
    from cocina.sdk.shim import install_cog_shim

    install_cog_shim()
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    predictor = module.Predictor()
    predictor.setup()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        predictor.predict(text="hola")
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def sequential(url: str, n: int) -> dict[str, Any]:
    import httpx

    lat, refused = [], 0
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        for _ in range(20):
            client.post("/predictions", json={"input": {"text": "hola"}})
        for _ in range(n):
            t = time.perf_counter()
            r = client.post("/predictions", json={"input": {"text": "hola"}})
            took = time.perf_counter() - t
            if 200 <= r.status_code < 300 and r.json().get("output") == "hola":
                lat.append(took)
            else:
                refused += 1
    return {"p50_ms": round(statistics.median(lat) * 1000, 3) if lat else None, "ok": len(lat), "refused": refused}


def wrk(url: str, seconds: float, connections: int, workdir: Path) -> dict[str, Any]:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), f"{url}/predictions"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not m:
        raise RuntimeError(f"wrk printed no totals: {out[-500:]}")
    total = int(m.group(1))
    duration = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    non2xx = int(mm.group(1)) if (mm := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = re.search(r"Socket errors: (.*)", out)
    ok = total - non2xx
    return {
        "requests": total,
        "ok": ok,
        "refused": non2xx,
        "refused_share": round(non2xx / total, 4) if total else None,
        "ok_per_s": round(ok / duration, 1),
        "socket_errors": errors.group(1).strip() if errors else None,
    }


def bench_echo(args: argparse.Namespace, workdir: Path, baseline: Path | None, coglet: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"direct_p50_ms": round(direct_predict_p50_ms(2000), 4), "systems": {}}
    have_wrk = shutil.which("wrk") is not None
    if not have_wrk:
        out["wrk"] = "not installed (bash scripts/install-bench-tools.sh): c=32 skipped"
        _log(out["wrk"])
    systems = ["cocina", *(["cocina-before"] if baseline else []), *(["coglet"] if coglet else [])]
    for system in systems:
        row: dict[str, Any] = {"uptime_before": _uptime()}
        try:
            with running(echo_server(system, workdir, baseline, coglet), 120) as srv:
                c1 = sequential(srv.url, args.echo_requests)
                row["c1"] = c1
                if c1["p50_ms"] is not None:
                    row["c1"]["added_p50_ms"] = round(c1["p50_ms"] - out["direct_p50_ms"], 3)
                if have_wrk:
                    row["c32"] = wrk(srv.url, args.wrk_seconds, 32, workdir)
        except Exception as exc:
            row["status"] = f"failed: {type(exc).__name__}: {str(exc)[:400]}"
        row["uptime_after"] = _uptime()
        out["systems"][system] = row
        _log(f"echo {system}: {json.dumps({k: v for k, v in row.items() if k.startswith('c')})}")
    return out


# -- 2. a language model through its own process ----------------------------------------------------------------


def llm_server(system: str, model: Path, dtype: str, workdir: Path, baseline: Path | None) -> Server:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix=f"llm-{system}-", dir=workdir))
    env = {"PYTHONPATH": str(baseline)} if system == "cocina-before" else {}
    cmd = [
        *([sys.executable, "-m", "cocina.cli"] if env else cocina_cmd()),
        "serve",
        "--model",
        str(model),
        "--name",
        "bench/gpt2",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--dtype",
        dtype,
        "--kv-cache",
        "1G",
        "--max-num-seqs",
        "64",
    ]
    return Server(
        system, cmd, env=env, cwd=workdir, log=workdir / f"llm-{system}.log", port=port, health="/health-check"
    )


def chat_level(
    url: str, tokenizer: Any, n: int, concurrency: int, args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    from cocina.bench.backends import BackendConfig
    from cocina.bench.metrics import compute_metrics
    from cocina.bench.runner import run_benchmark
    from cocina.bench.workload import synthetic_requests

    cfg = BackendConfig(api="openai-chat", base_url=url, model="bench/gpt2", ignore_eos=True, timeout_s=600)
    reqs = synthetic_requests(n, args.input_len, args.output_len, seed=seed, tokenizer=tokenizer)
    results, duration = asyncio.run(run_benchmark(cfg, reqs, concurrency=concurrency))
    m = compute_metrics(results, duration)
    return {
        "requests": n,
        "failed": m["failed"],
        "output_tok_s": round(m["output_token_throughput_tok_s"], 2),
        "ttft_p50_ms": round(m["ttft_ms"]["p50"], 1) if m["ttft_ms"].get("p50") is not None else None,
    }


def bench_llm(args: argparse.Namespace, workdir: Path, model: Path, baseline: Path | None) -> dict[str, Any]:
    from cocina.bench.workload import load_tokenizer

    tokenizer = load_tokenizer(str(model))
    out: dict[str, Any] = {"model": str(model), "dtype": args.dtype, "systems": {}}
    for system in ["cocina", *(["cocina-before"] if baseline else [])]:
        row: dict[str, Any] = {"uptime_before": _uptime()}
        try:
            with running(llm_server(system, model, args.dtype, workdir, baseline), 600) as srv:
                chat_level(srv.url, tokenizer, 4, 4, args, seed=99)  # warm-up
                for c in (1, 32):
                    n = args.llm_requests_c1 if c == 1 else args.llm_requests_c32
                    row[f"c{c}"] = chat_level(srv.url, tokenizer, n, c, args, seed=c)
                    _log(f"llm {system} c={c}: {row[f'c{c}']}")
        except Exception as exc:
            row["status"] = f"failed: {type(exc).__name__}: {str(exc)[:400]}"
            _log(f"llm {system}: {row['status']}")
        row["uptime_after"] = _uptime()
        out["systems"][system] = row
    now, before = out["systems"].get("cocina", {}), out["systems"].get("cocina-before", {})
    out["ratio"] = {
        f"c{c}": round(now[f"c{c}"]["output_tok_s"] / before[f"c{c}"]["output_tok_s"], 3)
        for c in (1, 32)
        if f"c{c}" in now and f"c{c}" in before and before[f"c{c}"]["output_tok_s"]
    }
    return out


# -- 3. cold start --------------------------------------------------------------------------------------------


def first_token_s(url: str, model: str) -> float:
    """Seconds from sending a streaming chat request to its first content chunk."""
    import httpx

    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hola"}],
        "max_tokens": 8,
        "stream": True,
        "ignore_eos": True,
    }
    t = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600, trust_env=False) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                return time.perf_counter() - t
    raise RuntimeError("no token arrived")


def bench_cold_start(args: argparse.Namespace, workdir: Path, models: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, (label, model) in enumerate(models.items()):
        port = free_port()
        data = Path(tempfile.mkdtemp(prefix="cold-", dir=workdir))
        cmd = [
            *cocina_cmd(),
            "serve",
            str(ECHO_PROJECT),
            "--model",
            f"bench/cold={model}",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--dtype",
            args.dtype,
        ]
        row: dict[str, Any] = {"model": model}
        try:
            with running(
                Server(
                    f"cold-{label}",
                    cmd,
                    cwd=workdir,
                    log=workdir / f"cold-{i}.log",
                    port=port,
                    health="/health-check",
                ),
                120,
            ) as srv:
                import httpx

                state = httpx.get(f"{srv.url}/health", trust_env=False).json()["models"]["bench/cold"]
                assert state == "unloaded", state
                row["cold_first_token_s"] = round(first_token_s(srv.url, "bench/cold"), 3)
                row["warm_first_token_s"] = round(first_token_s(srv.url, "bench/cold"), 4)
        except Exception as exc:
            row["status"] = f"failed: {type(exc).__name__}: {str(exc)[:400]}"
        out[label] = row
        _log(f"cold start {label}: {row}")
    return out


# -- report ---------------------------------------------------------------------------------------------------


def targets(report: dict[str, Any]) -> dict[str, Any]:
    echo = report.get("echo", {}).get("systems", {}).get("cocina", {})
    added = echo.get("c1", {}).get("added_p50_ms")
    c32 = echo.get("c32", {})
    ratio = report.get("llm", {}).get("ratio", {})
    return {
        "echo_added_p50_ms_c1": {
            "value": added,
            "target": f"<= {TARGET_ECHO_ADDED_MS}",
            "pass": added is not None and added <= TARGET_ECHO_ADDED_MS,
        },
        "echo_ok_per_s_c32": {
            "value": c32.get("ok_per_s"),
            "refused": c32.get("refused"),
            "target": f">= {TARGET_ECHO_OK_S:g}, none refused",
            "pass": bool(c32) and c32["ok_per_s"] >= TARGET_ECHO_OK_S and c32["refused"] == 0,
        },
        **{
            f"llm_process_hop_{c}": {
                "value": ratio.get(c),
                "target": f">= {TARGET_PROCESS_HOP}",
                "pass": ratio.get(c) is not None and ratio[c] >= TARGET_PROCESS_HOP,
            }
            for c in ("c1", "c32")
        },
    }


def _f(x: Any, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def render(report: dict[str, Any]) -> str:
    m, t = report["machine"], report["targets"]
    lines = [
        SECTION,
        "",
        f"Run {report['date']} on {m['cpu']} ({m['cores']} cores, AVX512_BF16: {'yes' if m['avx512_bf16'] else 'no'}), "
        f"code {report['code']}, baseline `cocina-before` = {report['baseline_rev']}; load before: "
        f"{report['uptime_before'].rpartition('load average:')[2].strip()}.",
        "",
        f"Command: `{report['command']}`",
        "",
        "Echo predictor over Cog's `POST /predictions` (c=1: sequential round trips, p50; the added latency is over "
        f"calling `predict()` in-process, {report['echo']['direct_p50_ms']} ms; c=32: `wrk -c 32`, 2xx per second):",
        "",
        "| system | c=1 p50 (ms) | c=1 added (ms) | c=1 refused | c=32 ok/s | c=32 refused |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["echo"]["systems"].items():
        c1, c32 = row.get("c1", {}), row.get("c32", {})
        refused = f"{c32.get('refused')} ({c32.get('refused_share', 0) * 100:.0f}%)" if c32 else "—"
        lines.append(
            f"| {name}{' (' + row['status'] + ')' if 'status' in row else ''} | {_f(c1.get('p50_ms'), 2)} | "
            f"{_f(c1.get('added_p50_ms'), 2)} | {_f(c1.get('refused'))} | {_f(c32.get('ok_per_s'))} | {refused} |"
        )
    llm = report.get("llm")
    if llm:
        lines += [
            "",
            f"A language model served through its own process (GPT-2-small shape, {llm['dtype']}, streaming chat, "
            f"{report['input_len']}-token prompts, {report['output_len']} output tokens), output tokens/s:",
            "",
            "| system | c=1 | c=32 |",
            "| --- | --- | --- |",
        ]
        for name, row in llm["systems"].items():
            lines.append(
                f"| {name}{' (' + row['status'] + ')' if 'status' in row else ''} | "
                f"{_f(row.get('c1', {}).get('output_tok_s'))} | {_f(row.get('c32', {}).get('output_tok_s'))} |"
            )
        lines.append(
            f"| ratio (own process / in-process) | {_f(llm['ratio'].get('c1'), 3)} | {_f(llm['ratio'].get('c32'), 3)} |"
        )
    cold = report.get("cold_start")
    if cold:
        lines += [
            "",
            "Cold start: first request for a model that is not loaded, to its first token (load included):",
            "",
            "| model | cold (s) | warm (s) |",
            "| --- | --- | --- |",
        ]
        for label, row in cold.items():
            lines.append(
                f"| {label}{' (' + row['status'] + ')' if 'status' in row else ''} | "
                f"{_f(row.get('cold_first_token_s'), 2)} | {_f(row.get('warm_first_token_s'), 3)} |"
            )
    lines += ["", "| target (issue #9) | measured | met |", "| --- | --- | --- |"]
    for key, v in t.items():
        lines.append(
            f"| {key} {v['target']} | {_f(v['value'], 3 if 'hop' in key else 2)} | {'yes' if v['pass'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def write_docs(section: str) -> None:
    replace_section(SECTION, section)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--baseline-rev", default=BASELINE_REV)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--echo-requests", type=int, default=1000)
    p.add_argument("--wrk-seconds", type=float, default=10.0)
    p.add_argument("--llm-requests-c1", type=int, default=12)
    p.add_argument("--llm-requests-c32", type=int, default=96)
    p.add_argument("--input-len", type=int, default=32)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--skip-llm", action="store_true")
    p.add_argument("--skip-cold", action="store_true")
    p.add_argument("--skip-baselines", action="store_true", help="no cocina-before, no coglet")
    p.add_argument("--quick", action="store_true", help="a tiny model and short loads (the smoke test)")
    p.add_argument("--no-docs", action="store_true")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.echo_requests, args.wrk_seconds = 100, 2.0
        args.llm_requests_c1, args.llm_requests_c32, args.output_len = 2, 8, 8
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "code": _code_version(),
        "baseline_rev": args.baseline_rev,
        "command": "python benchmarks/serving_core.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "uptime_before": _uptime(),
        "input_len": args.input_len,
        "output_len": args.output_len,
    }
    baseline = coglet = None
    if not args.skip_baselines:
        try:
            baseline = baseline_tree(workdir, args.baseline_rev)
        except (subprocess.CalledProcessError, OSError) as exc:
            report["baseline_error"] = f"{type(exc).__name__}: {exc}"
        try:
            coglet = install_coglet(workdir)
        except (subprocess.CalledProcessError, OSError) as exc:
            report["coglet_error"] = f"{type(exc).__name__}: {exc}"
    report["echo"] = bench_echo(args, workdir, baseline, coglet)
    if not args.skip_llm:
        model = build_model(Path(tempfile.gettempdir()) / "cocina-serving-bench", args.quick)
        report["llm"] = bench_llm(args, workdir, model, baseline)
        if not args.skip_cold:
            report["cold_start"] = bench_cold_start(
                args, workdir, {"demo (cocina/demo, 4 M parameters)": "cocina/demo", "GPT-2-small shape": str(model)}
            )
    report["uptime_after"] = _uptime()
    report["targets"] = targets(report)
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    if not args.no_docs:
        write_docs(render(report))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
