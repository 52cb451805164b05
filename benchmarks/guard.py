"""Guard benchmark (issue #12): what the guard costs, each figure with its baseline in the same run.

1. **Scanners on a 1 KB prompt**: every model-free input scanner together (normalisation, prompt injection,
   secrets, PII, banned substrings, a regex, the token limit), p50/p90/p99 of `Pipeline.scan` over `--scan-iters`
   runs, and each scanner's own p50.
2. **The whole guard on c=32 streaming throughput**: the same model (GPT-2-small shape, random weights, the
   serving benchmarks' model; `--quick`: a tiny one) served by `cocina serve --no-guard` and by `cocina serve
   --guard` with API keys (the key has RPM, TPM and monthly limits), input scanners that block/redact, an output
   scanner on the token stream, AI disclosure and the audit log, streaming chat at c=32 (32-token prompts, 64
   output tokens, EOS ignored). Both servers run side by side and bursts of `--requests` alternate between them
   `--rounds` times; the cost is the median of the paired bursts' costs. Beside it, the guard's own work per
   request and per token, measured in process.
3. **Audit appends per second** with a signed checkpoint every second, for `--audit-seconds`, on SQLite.
4. **Proofs over a 1,000,000-entry log**: inclusion and consistency proofs (computed from the stored nodes) and
   their verification, p50/p99 over 1,000 random entries. The log is written in bulk first (entries, leaf hashes
   and node hashes as the log computes them, in one transaction) so that the setup takes seconds, not minutes.

    .venv/bin/python benchmarks/guard.py                 # everything; writes docs/guard.md's and docs/benchmarks.md's
    .venv/bin/python benchmarks/guard.py --quick --no-docs

Prints one JSON object with every figure and the issue's targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.serving import Server, _code_version, _machine, _uptime, build_model, cocina_cmd, free_port, running  # noqa: E402

PROMPT_1KB = (
    "Hola, necesito ayuda con un informe trimestral para el equipo de ventas de la oficina de Valencia. "
    "Please summarise the attached notes in five bullet points, keep the figures exact and do not invent any "
    "numbers. Notes: revenue grew 12% quarter on quarter, driven by the new cleaning products line (the one that "
    "whitens clothes without bleach); the Madrid warehouse had two weeks of delays because of a supplier strike; "
    "customer satisfaction went from 4.1 to 4.4 out of 5; the returns rate stayed under 2%. Marta asked whether we "
    "can move the launch of the eco line to May, and Luis wants to know the marketing budget for the summer "
    "campaign. If anything is unclear you can write to the team address ventas.valencia@example.com or call the "
    "office. Also translate the summary into English at the end, with a short title, and add a table of the "
    "figures with one row per metric. Gracias por tu ayuda, y recuerda que el informe se presenta el lunes a las "
    "nueve en la sala grande, así que necesito el resumen antes del viernes por la tarde como muy tarde."
)[:1024]

GUARD_FILE = """\
scanners:
  input:
    - {type: prompt_injection, action: block}
    - {type: secrets, action: redact}
    - {type: pii, action: redact}
    - {type: banned_substrings, action: block, words: [proyecto sol, codename atlas]}
    - {type: regex, action: redact, patterns: ['INV-\\\\d{6}']}
    - {type: token_limit, action: block, max_tokens: 4096}
  output:
    - {type: secrets, action: redact}
audit:
  checkpoint_interval_s: 1
"""

SECTION = "## Guard (benchmarks/guard.py)"


def _log(msg: str) -> None:
    print(f"[guard-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# -- 1. scanners ------------------------------------------------------------------------------------------------


def bench_scanners(iters: int) -> dict[str, Any]:
    import yaml

    from cocina.guard.config import parse_guard_config
    from cocina.guard.scanners.normalize import warm
    from cocina.guard.scanners.pipeline import Pipeline

    warm()
    policy = parse_guard_config(yaml.safe_load(GUARD_FILE)).default
    pipeline: Pipeline = policy.input_pipeline()
    assert len(PROMPT_1KB.encode()) >= 1000
    for _ in range(50):
        pipeline.scan(PROMPT_1KB)
    totals: list[float] = []
    per: dict[str, list[float]] = {}
    for _ in range(iters):
        t0 = time.perf_counter()
        result = pipeline.scan(PROMPT_1KB)
        totals.append((time.perf_counter() - t0) * 1000)
        for v in result.verdicts:
            per.setdefault(v.scanner, []).append(v.time_ms)
    return {
        "prompt_bytes": len(PROMPT_1KB.encode()),
        "iters": iters,
        "p50_ms": round(_pct(totals, 0.5), 3),
        "p90_ms": round(_pct(totals, 0.9), 3),
        "p99_ms": round(_pct(totals, 0.99), 3),
        "per_scanner_p50_ms": {k: round(_pct(v, 0.5), 3) for k, v in per.items()},
        "verdicts": {v.scanner: v.flagged for v in result.verdicts},
    }


# -- 2. the guard on c=32 streaming -----------------------------------------------------------------------------


def bench_work(requests: int) -> dict[str, Any]:
    """The guard's own work, in process (no model, no HTTP): per request, everything admission and the end of a
    prediction ask of it (key check, limits, scanners, the row's privacy view, the audit append) on a real
    SQLite store; per streamed token, the output scanner. Deterministic, unlike two servers' throughputs."""
    import asyncio
    import random as rnd
    import string

    import yaml

    from cocina.guard import Guard, parse_guard_config
    from cocina.guard.scanners.pipeline import StreamScanner
    from cocina.serving.admission import AdmissionRequest
    from cocina.store import PredictionRecord, PredictionStatus, SQLiteStore

    cfg = parse_guard_config(yaml.safe_load(GUARD_FILE))

    class Model:  # what the guard reads of a served model
        name, version, schema = "bench/gpt2", "v" * 64, None

    async def run() -> float:
        d = Path(tempfile.mkdtemp())
        store = SQLiteStore(d / "predictions.db")
        guard = Guard(cfg, d)
        await guard.start(store)
        _, key = guard.keys.create("b", rpm=10**6, tpm=10**9, monthly_tokens=10**12)
        t0 = time.perf_counter()
        for i in range(requests):
            principal = guard.authenticate(key)
            req = AdmissionRequest(surface="openai", input={"messages": [{"role": "user", "content": "hola " * 32}]},
                                   principal=principal)  # type: ignore[arg-type]
            ticket = guard.check(req, Model())  # type: ignore[arg-type]
            guard.scan(ticket, req.input, Model())  # type: ignore[arg-type]
            guard.reserve(ticket, 96)
            rec = PredictionRecord(id=f"p{i}", model=Model.name, version=Model.version, surface="openai",
                                   principal=ticket.principal.id if ticket.principal else None,  # type: ignore[union-attr]
                                   input=req.input, guard=dict(ticket.record))
            store.insert(guard.persist(rec))
            rec.status, rec.output = PredictionStatus.SUCCEEDED, {"text": "y" * 256}
            guard.finished(rec, ticket, 90)
            store.update(guard.persist(rec))
        elapsed = (time.perf_counter() - t0) / requests
        await guard.stop()
        store.close()
        return elapsed

    per_request_s = asyncio.run(run())
    rng = rnd.Random(0)
    tokens = ["".join(rng.choice(string.ascii_letters + "   .,") for _ in range(rng.randint(2, 6))) for _ in range(64)]
    pipeline = cfg.default.output_pipeline()
    assert pipeline is not None
    t0 = time.perf_counter()
    for _ in range(200):
        s = StreamScanner(pipeline, 64)
        for tok in tokens:
            s.push(tok)
        s.flush()
    per_token_s = (time.perf_counter() - t0) / 200 / len(tokens)
    return {"requests": requests, "per_request_ms": round(per_request_s * 1000, 3),
            "per_token_us": round(per_token_s * 1e6, 2)}



def _server(system: str, model: Path, dtype: str, workdir: Path) -> tuple[Server, str | None]:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix=f"guard-{system}-", dir=workdir))
    cmd = [*cocina_cmd(), "serve", "--model", str(model), "--name", "bench/gpt2", "--port", str(port),
           "--data-dir", str(data), "--dtype", dtype, "--kv-cache", "1G", "--max-num-seqs", "64", "--max-queue", "256"]
    key = None
    if system == "guard":
        guard = data / "guard.yaml"
        guard.write_text(GUARD_FILE)
        cmd += ["--guard", str(guard)]
        from typer.testing import CliRunner

        from cocina.cli import build_app

        made = CliRunner().invoke(build_app(), ["keys", "create", "--name", "bench", "--rpm", "100000", "--tpm",
                                                "100000000", "--monthly-tokens", "1000000000", "--data-dir", str(data)])
        key = made.stdout.strip().splitlines()[0]
    else:
        cmd += ["--no-guard"]
    return Server(system, cmd, cwd=workdir, log=workdir / f"guard-{system}.log", port=port, health="/health-check"), key


def _level(
    url: str, key: str | None, tokenizer: Any, n: int, c: int, args: argparse.Namespace, seed: int
) -> tuple[float, int]:
    import asyncio

    from cocina.bench.backends import BackendConfig
    from cocina.bench.metrics import compute_metrics
    from cocina.bench.runner import run_benchmark
    from cocina.bench.workload import synthetic_requests

    cfg = BackendConfig(api="openai-chat", base_url=url, model="bench/gpt2", api_key=key, ignore_eos=True,
                        timeout_s=600)
    reqs = synthetic_requests(n, args.input_len, args.output_len, seed=seed, tokenizer=tokenizer)
    results, duration = asyncio.run(run_benchmark(cfg, reqs, concurrency=c))
    m = compute_metrics(results, duration)
    if m["failed"]:
        raise RuntimeError(f"{m['failed']} of {n} requests failed")
    return float(m["output_token_throughput_tok_s"]), int(m["total_output_tokens"])


def _group_cpu_s(pgid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by a process group's leader (the server: HTTP, admission, the
    guard) and by the rest of the group (the engine's process)."""
    tick = os.sysconf("SC_CLK_TCK")
    leader = rest = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid = int(stat.parent.name)
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue  # ended meanwhile
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ..., utime (12th), stime (13th)
            ticks = int(fields[11]) + int(fields[12])
            if pid == pgid:
                leader += ticks
            else:
                rest += ticks
    return leader / tick, rest / tick


def bench_stream(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Both servers run side by side (only one under load at a time); bursts of `--requests` at c=32 alternate
    between them, so each guarded burst has an unguarded neighbour seconds apart under the same background load.
    The cost is 1 - the median of the paired ratios; the interquartile range of the paired costs says how far
    the machine's noise lets that be trusted."""
    import contextlib

    import httpx

    from cocina.bench.workload import load_tokenizer

    model = build_model(workdir, args.quick)
    tokenizer = load_tokenizer(str(model))
    rows: dict[str, list[float]] = {"no-guard": [], "guard": []}
    cpu: dict[str, list[float]] = {"no-guard": [], "guard": []}  # the server's CPU ms per output token, per burst
    server_cpu: dict[str, list[float]] = {"no-guard": [], "guard": []}  # ... of its main process alone
    with contextlib.ExitStack() as stack:
        servers = {}
        for system in ("no-guard", "guard"):
            server, key = _server(system, model, args.dtype, workdir)
            servers[system] = (stack.enter_context(running(server, 600)), key)
            _level(servers[system][0].url, key, tokenizer, 8, 8, args, seed=99)  # warm-up
        for r in range(args.rounds):
            for system in ("no-guard", "guard") if r % 2 == 0 else ("guard", "no-guard"):
                srv, key = servers[system]
                server0, engine0 = _group_cpu_s(srv.proc.pid)
                tok_s, tokens = _level(srv.url, key, tokenizer, args.requests, 32, args, seed=r)
                server1, engine1 = _group_cpu_s(srv.proc.pid)
                server_ms, engine_ms = 1000 * (server1 - server0) / tokens, 1000 * (engine1 - engine0) / tokens
                rows[system].append(round(tok_s, 1))
                cpu[system].append(round(server_ms + engine_ms, 4))
                server_cpu[system].append(round(server_ms, 4))
                _log(
                    f"round {r} {system}: {tok_s:.1f} output tok/s, CPU ms a token: server {server_ms:.3f}, "
                    f"engine {engine_ms:.3f}"
                )
        srv, key = servers["guard"]
        note = httpx.get(f"{srv.url}/v1/audit/checkpoint", headers={"Authorization": f"Bearer {key}"})
        audit_size = int(note.text.split("\n")[1])
    costs = [100 * (1 - g / b) for g, b in zip(rows["guard"], rows["no-guard"], strict=True)]
    # What the guard costs in CPU: the guarded server's CPU time per output token over the unguarded one's, per
    # pair of bursts. At c=32 the two cores are saturated, so throughput is inverse to it; and unlike the
    # throughput of a burst, a process's CPU time is not what other work on the machine takes from it.
    cpu_costs = [100 * (g / b - 1) for g, b in zip(cpu["guard"], cpu["no-guard"], strict=True)]
    # The guard runs in the server's main process; the engine's process does the same work with or without it
    # (same prompts, same tokens). So the guard's cost is the main process's extra CPU per token over the whole
    # unguarded group's: a difference of two small numbers, which the engine's larger, noisier share leaves out.
    server_costs = [
        100 * (g - b) / total
        for g, b, total in zip(server_cpu["guard"], server_cpu["no-guard"], cpu["no-guard"], strict=True)
    ]
    return {
        "model": "tiny" if args.quick else "GPT-2-small shape (random weights)",
        "dtype": args.dtype,
        "requests_per_burst": args.requests,
        "rounds": rows,
        "median_tok_s": {"no-guard": statistics.median(rows["no-guard"]), "guard": statistics.median(rows["guard"])},
        **_paired(costs, "", 1),
        "audit_entries_after_last_round": audit_size,
        "cpu_ms_per_token": cpu,
        "median_cpu_ms_per_token": {k: round(statistics.median(v), 4) for k, v in cpu.items()},
        **_paired(cpu_costs, "cpu_", 1),
        "server_cpu_ms_per_token": server_cpu,
        **_paired(server_costs, "server_cpu_", 2),
    }


def _paired(costs: list[float], name: str, digits: int) -> dict[str, Any]:
    """The paired bursts' costs (%), sorted; their median; and their interquartile range (None with one pair:
    unknown), under the keys `paired_{name}costs_pct`, `{name}cost_pct` and `{name}spread_pct`."""
    costs = sorted(costs)
    quartiles = statistics.quantiles(costs, n=4) if len(costs) >= 2 else None
    return {
        f"paired_{name}costs_pct": [round(c, digits) for c in costs],
        f"{name}cost_pct": round(statistics.median(costs), 2),
        f"{name}spread_pct": None if quartiles is None else round(quartiles[2] - quartiles[0], digits),
    }


# -- 3. audit appends -------------------------------------------------------------------------------------------


def bench_appends(seconds: float, workdir: Path) -> dict[str, Any]:
    from cocina.guard.audit.log import AuditLog
    from cocina.guard.audit.note import Signer
    from cocina.store import SQLiteStore

    store = SQLiteStore(Path(tempfile.mkdtemp(dir=workdir)) / "predictions.db")
    log = AuditLog(store, Signer.generate("bench"), "bench/audit")
    entry = {"t": "2026-11-29T00:00:00+00:00", "prediction": "x" * 26, "key": "key_" + "a" * 16, "model": "acme/m",
             "version": "f" * 64, "surface": "openai", "status": "succeeded", "input_hmac": "0" * 64,
             "output_hmac": "1" * 64, "verdicts": [{"scanner": "prompt_injection", "action": "block",
                                                   "flagged": False, "kinds": []}]}
    n, checkpoints = 0, 0
    t0 = next_cp = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        log.append(f"p{n}", entry)
        n += 1
        if time.perf_counter() >= next_cp + 1.0:
            log.checkpoint()
            checkpoints += 1
            next_cp += 1.0
    elapsed = time.perf_counter() - t0
    log.checkpoint()
    store.close()
    return {"seconds": round(elapsed, 2), "appends": n, "appends_per_s": round(n / elapsed), "checkpoints": checkpoints}


# -- 4. proofs over a million entries ---------------------------------------------------------------------------


def bench_proofs(size: int, samples: int, workdir: Path) -> dict[str, Any]:
    from cocina.guard.audit.log import AuditLog, canonical
    from cocina.guard.audit.merkle import CompactRange, leaf_hash, verify_consistency, verify_inclusion
    from cocina.guard.audit.note import Signer
    from cocina.store import SQLiteStore

    path = Path(tempfile.mkdtemp(dir=workdir)) / "predictions.db"
    SQLiteStore(path).close()  # migrated, empty
    t0 = time.perf_counter()
    cr = CompactRange()
    con = sqlite3.connect(path)
    entries, nodes = [], []
    for i in range(size):
        data = canonical({"i": i, "prediction": f"p{i}", "model": "acme/m", "status": "succeeded"})
        h = leaf_hash(data)
        entries.append((i, f"p{i}", data, h))
        nodes += cr.append(h)
    con.executemany("INSERT INTO audit_entries (idx, prediction_id, entry, leaf_hash) VALUES (?, ?, ?, ?)", entries)
    con.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    con.commit()
    con.close()
    setup_s = time.perf_counter() - t0
    store = SQLiteStore(path)
    log = AuditLog(store, Signer.generate("bench"), "bench/audit")
    cp = log.checkpoint()
    assert cp.size == size and cp.root == cr.root()
    rng = random.Random(0)
    incl, incl_verify, cons = [], [], []
    for _ in range(samples):
        idx = rng.randrange(size)
        t = time.perf_counter()
        proof = log.reader.inclusion_proof(idx, size)
        incl.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        verify_inclusion(idx, size, entries[idx][3], proof, cp.root)
        incl_verify.append((time.perf_counter() - t) * 1000)
        old = rng.randrange(1, size)
        t = time.perf_counter()
        cproof = log.reader.consistency_proof(old, size)
        cons.append((time.perf_counter() - t) * 1000)
        if len(cons) <= 20:
            verify_consistency(old, size, log.reader.root(old), cp.root, cproof)
    t = time.perf_counter()
    full = log.inclusion(size // 2)  # the API's answer: entry, proof and signed checkpoint
    api_ms = (time.perf_counter() - t) * 1000
    store.close()
    return {
        "entries": size,
        "setup_s": round(setup_s, 1),
        "inclusion_proof_ms": {"p50": round(_pct(incl, 0.5), 3), "p99": round(_pct(incl, 0.99), 3)},
        "inclusion_verify_ms": {"p50": round(_pct(incl_verify, 0.5), 3)},
        "consistency_proof_ms": {"p50": round(_pct(cons, 0.5), 3), "p99": round(_pct(cons, 0.99), 3)},
        "api_inclusion_answer_ms": round(api_ms, 3),
        "proof_length": len(full["proof"]),
    }


# -- report -----------------------------------------------------------------------------------------------------


def targets(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "scanners" in report:
        out["scanners_p50_le_2ms"] = report["scanners"]["p50_ms"] <= 2.0
    if "stream" in report:
        st = report["stream"]
        out["guard_cost_le_5pct"] = st["cost_pct"] <= 5.0
        # On a shared 2-core machine bursts differ by more than 5% from one to the next: the comparison says
        # something about a 5% target only when the paired costs' interquartile range is under 5 points.
        out["guard_cost_resolved"] = st["spread_pct"] is not None and st["spread_pct"] < 5.0
        # The same question in CPU time per output token, which the machine's other work does not blur.
        out["guard_cpu_cost_le_5pct"] = st["cpu_cost_pct"] <= 5.0
        out["guard_cpu_cost_resolved"] = st["cpu_spread_pct"] is not None and st["cpu_spread_pct"] < 5.0
        out["guard_server_cpu_cost_le_5pct"] = st["server_cpu_cost_pct"] <= 5.0
        out["guard_server_cpu_cost_resolved"] = (
            st["server_cpu_spread_pct"] is not None and st["server_cpu_spread_pct"] < 5.0
        )
        if "work" in report:
            w = report["work"]
            req_per_s = st["median_tok_s"]["no-guard"] / report["output_len"]
            cpu_ms_per_s = req_per_s * (w["per_request_ms"] + report["output_len"] * w["per_token_us"] / 1000)
            st["guard_cpu_pct_of_one_core"] = round(cpu_ms_per_s / 10, 2)
    if "appends" in report:
        out["appends_ge_2000_per_s"] = report["appends"]["appends_per_s"] >= 2000
    if "proofs" in report:
        out["proof_lt_10ms"] = report["proofs"]["inclusion_proof_ms"]["p99"] < 10.0
    return out


def _verdict(met: bool, resolved: bool, spread: float | None) -> str:
    """A paired comparison's verdict: met or missed only when its spread lets it say."""
    if resolved:
        return "met" if met else "missed"
    if spread is None:
        return "not resolved: one round"
    return f"not resolved by this run: the paired costs' interquartile range is {spread} points"


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        SECTION,
        "",
        f"`{report['command']}` on {report['date']} ({m['cpu']}, {m['cores']} cores; flags: "
        f"{', '.join(k for k, v in m.items() if isinstance(v, bool) and v) or 'no AVX-512'}; load before: "
        f"{report['uptime_before']}; code {report['code']}).",
        "",
        "| measure | figure | target |",
        "| --- | --- | --- |",
    ]
    t = report["targets"]
    if "scanners" in report:
        s = report["scanners"]
        per = ", ".join(f"{k} {v}" for k, v in s["per_scanner_p50_ms"].items())
        lines.append(
            f"| all model-free input scanners, {s['prompt_bytes']}-byte prompt, {s['iters']} runs | p50 "
            f"{s['p50_ms']} ms, p90 {s['p90_ms']}, p99 {s['p99_ms']} (p50 per scanner, ms: {per}) | p50 <= 2 ms: "
            f"{'met' if t['scanners_p50_le_2ms'] else 'missed'} |"
        )
    if "work" in report:
        w = report["work"]
        lines.append(
            f"| the guard's own work in process, {w['requests']} requests: key, limits, input scanners, the row, "
            f"the audit append; and the output scanner per streamed token | {w['per_request_ms']} ms a request, "
            f"{w['per_token_us']} us a token | |"
        )
    if "stream" in report:
        st = report["stream"]
        verdict = _verdict(t["guard_cost_le_5pct"], t["guard_cost_resolved"], st["spread_pct"])
        cpu = st.get("guard_cpu_pct_of_one_core")
        extra = f"; the guard's own work at that rate: {cpu}% of one core" if cpu is not None else ""
        lines.append(
            f"| streaming chat at c=32, {st['model']}, alternating bursts of {st['requests_per_burst']} requests on "
            f"two servers running side by side, output tok/s (no guard {st['rounds']['no-guard']}, guard "
            f"{st['rounds']['guard']}) | cost, median of the paired bursts: {st['cost_pct']}% (paired costs "
            f"{st['paired_costs_pct']}){extra} | <= 5%: {verdict} |"
        )
        cpu_verdict = _verdict(t["guard_cpu_cost_le_5pct"], t["guard_cpu_cost_resolved"], st["cpu_spread_pct"])
        med = st["median_cpu_ms_per_token"]
        lines.append(
            f"| the same bursts in CPU time: each server's process group (server and engine), CPU ms per output "
            f"token (median: no guard {med['no-guard']}, guard {med['guard']}) | cost, median of the paired "
            f"bursts: {st['cpu_cost_pct']}% (interquartile range {st['cpu_spread_pct']} points; paired costs "
            f"{st['paired_cpu_costs_pct']}) | <= 5%: {cpu_verdict} |"
        )
        server_verdict = _verdict(
            t["guard_server_cpu_cost_le_5pct"], t["guard_server_cpu_cost_resolved"], st["server_cpu_spread_pct"]
        )
        sv = {k: round(statistics.median(v), 4) for k, v in st["server_cpu_ms_per_token"].items()}
        lines.append(
            f"| the same bursts, the server's main process alone (where the guard runs; the engine's process does "
            f"the same work either way): its extra CPU per token over the unguarded group's whole CPU per token "
            f"(main process, median ms a token: no guard {sv['no-guard']}, guard {sv['guard']}) | cost, median of "
            f"the paired bursts: {st['server_cpu_cost_pct']}% (interquartile range {st['server_cpu_spread_pct']} "
            f"points; paired costs {st['paired_server_cpu_costs_pct']}) | <= 5%: {server_verdict} |"
        )
    if "appends" in report:
        a = report["appends"]
        lines.append(
            f"| audit appends, SQLite, a signed checkpoint each second, {a['seconds']} s | {a['appends_per_s']}/s "
            f"({a['appends']} appends, {a['checkpoints']} checkpoints) | >= 2,000/s: "
            f"{'met' if t['appends_ge_2000_per_s'] else 'missed'} |"
        )
    if "proofs" in report:
        p = report["proofs"]
        lines.append(
            f"| proofs over a {p['entries']:,}-entry log | inclusion p50 {p['inclusion_proof_ms']['p50']} ms, p99 "
            f"{p['inclusion_proof_ms']['p99']} (verify {p['inclusion_verify_ms']['p50']}); consistency p50 "
            f"{p['consistency_proof_ms']['p50']}, p99 {p['consistency_proof_ms']['p99']}; the API's whole answer "
            f"{p['api_inclusion_answer_ms']} ms ({p['proof_length']} hashes) | < 10 ms: "
            f"{'met' if t['proof_lt_10ms'] else 'missed'} |"
        )
    return "\n".join(lines) + "\n"


def write_docs(section: str) -> None:
    for doc in (ROOT / "docs" / "guard.md", ROOT / "docs" / "benchmarks.md"):
        text = doc.read_text() if doc.exists() else ""
        if SECTION in text:
            head, _, rest = text.partition(SECTION)
            tail = rest.split("\n## ", 1)
            text = head + section + (("\n## " + tail[1]) if len(tail) > 1 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + section
        doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tiny model and small counts (the smoke test)")
    ap.add_argument("--only", choices=["scanners", "stream", "appends", "proofs"], action="append")
    ap.add_argument("--scan-iters", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--input-len", type=int, default=32)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--audit-seconds", type=float, default=10.0)
    ap.add_argument("--proof-entries", type=int, default=1_000_000)
    ap.add_argument("--proof-samples", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "guard-bench")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        args.scan_iters, args.rounds, args.requests, args.output_len = 200, 1, 16, 8
        args.audit_seconds, args.proof_entries, args.proof_samples, args.dtype = 1.0, 5000, 50, "float32"
    args.workdir.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ["scanners", "stream", "appends", "proofs"])
    report: dict[str, Any] = {
        "command": "benchmarks/guard.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "machine": _machine(),
        "uptime_before": _uptime(),
        "code": _code_version(),
    }
    if "scanners" in only:
        report["scanners"] = bench_scanners(args.scan_iters)
        _log(f"scanners: {report['scanners']}")
    if "appends" in only:
        report["appends"] = bench_appends(args.audit_seconds, args.workdir)
        _log(f"appends: {report['appends']}")
    if "proofs" in only:
        report["proofs"] = bench_proofs(args.proof_entries, args.proof_samples, args.workdir)
        _log(f"proofs: {report['proofs']}")
    if "stream" in only:
        report["work"] = bench_work(50 if args.quick else 500)
        _log(f"work: {report['work']}")
        report["output_len"] = args.output_len
    if "stream" in only:
        report["stream"] = bench_stream(args, args.workdir)
    report["uptime_after"] = _uptime()
    report["targets"] = targets(report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text)
    if not args.no_docs:
        write_docs(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
