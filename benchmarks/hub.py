"""Hub benchmark (issue #10): pushing, environments and deployment routing, measured against a real server.

One `cocina serve` subprocess on 127.0.0.1 with its own data directory (its hub on the same disk as the project):

1. **First push of a large project** (`--size-mb`, default 500: one weights file of random bytes, with an echo
   predictor): hashing, then upload of every byte through `PUT /v1/hub/blobs/sha256/...`, then the version's
   check. Upload MB/s is bytes sent over the upload's own wall time (the `start_upload` callback to the last byte).
2. **Re-push, unchanged**, as a user runs it: `cocina push URL/owner/name --json` as a subprocess (Python's start
   and the CLI's imports included), its hash cache warm from the first push; and again with the hash cache
   removed (every byte re-hashed). Both report the bytes uploaded (the target: < 1 MB) and the wall time (< 3 s).
3. **An environment the server already satisfies**: a project whose requirements.txt lists what the server runs
   (torch, transformers, numpy, pydantic, ...), pushed (`EnvironmentBuilder.ensure` timed alone, and the whole
   push): the target is < 5 s and nothing installed.
4. **A 2-way deployment against the version directly** (echo predictor, c=1): `POST /v1/predictions` with the
   version, and `POST /v1/deployments/{o}/{n}/predictions` on a 50/50 split, alternating one and the other in
   one loop (so drift hits both), each with `Prefer: wait`; the target is <= 0.5 ms added at p50.

    .venv/bin/python benchmarks/hub.py               # writes docs/benchmarks.md's section
    .venv/bin/python benchmarks/hub.py --quick --no-docs

Prints one JSON object with every figure and the issue's targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._docs import replace_section  # noqa: E402
from benchmarks.serving import Server, _code_version, _machine, _uptime, cocina_cmd, free_port, running  # noqa: E402

SECTION = "## Hub (benchmarks/hub.py)"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "cocina-hub-bench"

TARGET_REPUSH_BYTES = 2**20
TARGET_REPUSH_S = 3.0
TARGET_UPLOAD_MB_S = 200.0
TARGET_ENV_S = 5.0
TARGET_DEPLOYMENT_ADDED_MS = 0.5

ECHO = """
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="Returned unchanged", default="hola")) -> str:
        return text
"""
SATISFIED = ["torch", "transformers", "numpy", "pydantic>=2", "tokenizers", "safetensors", "huggingface-hub", "cog"]


def _log(msg: str) -> None:
    print(f"[hub {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _project(root: Path, *, size_mb: int = 0, requirements: list[str] | None = None, tag: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(ECHO) + (f"\n# {tag}\n" if tag else ""))
    config = 'predict: "predict.py:Predictor"\n'
    if requirements:
        (root / "requirements.txt").write_text("\n".join(requirements) + "\n")
        config += "build:\n  python_requirements: requirements.txt\n"
    (root / "cog.yaml").write_text(config)
    if size_mb:
        weights = root / "weights.bin"
        if not weights.exists() or weights.stat().st_size != size_mb * 2**20:
            with weights.open("wb") as f:
                for _ in range(size_mb):
                    f.write(os.urandom(2**20))
    return root


# -- 1 and 2: pushing -----------------------------------------------------------------------------------------


def bench_push(url: str, workdir: Path, size_mb: int) -> dict[str, Any]:
    from cocina.hubctl.client import PushProgress, RemoteHub

    project = _project(workdir / "big", size_mb=size_mb)
    home = workdir / "home"
    cache = home / ".cache" / "cocina" / "push-hashes.json"
    cache.unlink(missing_ok=True)
    marks: dict[str, float] = {}
    sent = [0]

    def start_upload(_files: int, _bytes: int) -> None:
        marks["upload_start"] = time.perf_counter()

    def uploading(n: int) -> None:
        sent[0] += n
        marks["upload_end"] = time.perf_counter()

    client = RemoteHub(url, cache=cache)
    t0 = time.perf_counter()
    try:
        pushed = client.push(project, "bench/big", PushProgress(start_upload=start_upload, uploading=uploading))
    finally:
        client.close()
    total = time.perf_counter() - t0
    upload_s = marks["upload_end"] - marks["upload_start"]
    first = {
        "size_mb": size_mb,
        "uploaded_bytes": pushed.uploaded_bytes,
        "total_s": round(total, 3),
        "upload_s": round(upload_s, 3),
        "upload_mb_s": round(pushed.uploaded_bytes / 2**20 / upload_s, 1),
        "hash_and_check_s": round(total - upload_s, 3),
    }
    _log(f"first push: {first}")

    def cli_push() -> dict[str, Any]:
        env = {**os.environ, "HOME": str(home)}
        t = time.perf_counter()
        out = subprocess.run(
            [*cocina_cmd(), "push", f"{url}/bench/big", "--dir", str(project), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        took = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(f"cocina push failed: {out.stderr[-800:]}")
        got = json.loads(out.stdout)
        if got["id"] != pushed.version["id"] or got["created"]:
            raise RuntimeError(f"an unchanged re-push made a new version: {got['id']}")
        return {"uploaded_bytes": got["uploaded_bytes"], "wall_s": round(took, 3)}

    warm = cli_push()
    _log(f"re-push (hash cache warm): {warm}")
    cache.unlink(missing_ok=True)
    cold = cli_push()
    _log(f"re-push (hash cache removed): {cold}")
    return {"first": first, "repush": warm, "repush_rehash": cold, "version": pushed.version["id"]}


# -- 3: a satisfied environment -------------------------------------------------------------------------------


def bench_environment(url: str, workdir: Path) -> dict[str, Any]:
    from cocina.config import load_project
    from cocina.hub.envs import EnvironmentBuilder, environment_spec
    from cocina.hubctl.client import PushProgress, RemoteHub

    project = _project(workdir / "satisfied", requirements=SATISFIED)
    spec = environment_spec(load_project(project))
    t = time.perf_counter()
    env = EnvironmentBuilder(workdir / "envs").ensure(spec)
    ensure_s = time.perf_counter() - t
    lines: list[str] = []
    client = RemoteHub(url, cache=workdir / "env-hashes.json")
    t = time.perf_counter()
    try:
        pushed = client.push(project, "bench/satisfied", PushProgress(say=lines.append))
    finally:
        client.close()
    push_s = time.perf_counter() - t
    out = {
        "requirements": SATISFIED,
        "ensure_s": round(ensure_s, 3),
        "installed": list(env.installed),
        "server_python": env.python == sys.executable,
        "push_s": round(push_s, 3),
        "push_said": [ln for ln in lines if "requirement" in ln or "environment" in ln],
        "version_environment": pushed.version.get("environment"),
    }
    _log(f"satisfied environment: {out}")
    return out


# -- 4: deployment routing overhead ---------------------------------------------------------------------------


def bench_deployment(url: str, workdir: Path, n: int) -> dict[str, Any]:
    import httpx

    from cocina.hubctl.client import PushProgress, RemoteHub

    client = RemoteHub(url, cache=workdir / "ab-hashes.json")
    try:
        a = client.push(_project(workdir / "a", tag="a"), "bench/ab", PushProgress()).version["id"]
        b = client.push(_project(workdir / "b", tag="b"), "bench/ab", PushProgress()).version["id"]
        client.request(
            "POST",
            "/v1/deployments",
            {
                "name": "ab",
                "model": "bench/ab",
                "versions": [{"version": a, "weight": 50}, {"version": b, "weight": 50}],
            },
        )
    finally:
        client.close()
    body = {"input": {"text": "hola"}}
    direct, routed, failed = [], [], 0
    headers = {"Prefer": "wait", "Authorization": "Bearer bench-user"}
    with httpx.Client(base_url=url, timeout=60, trust_env=False, headers=headers) as http:
        for _ in range(30):  # both versions loaded and warm
            http.post("/v1/predictions", json={**body, "version": a})
            http.post("/v1/predictions", json={**body, "version": b})
            http.post("/v1/deployments/bench/ab/predictions", json=body)
        for i in range(n):
            for kind in ("direct", "routed") if i % 2 == 0 else ("routed", "direct"):
                t = time.perf_counter()
                if kind == "direct":
                    r = http.post("/v1/predictions", json={**body, "version": a})
                else:
                    r = http.post("/v1/deployments/bench/ab/predictions", json=body)
                took = (time.perf_counter() - t) * 1000
                if r.status_code == 201 and r.json().get("output") == "hola":
                    (direct if kind == "direct" else routed).append(took)
                else:
                    failed += 1
    out = {
        "requests_each": n,
        "failed": failed,
        "direct_p50_ms": round(statistics.median(direct), 3),
        "deployment_p50_ms": round(statistics.median(routed), 3),
    }
    out["added_p50_ms"] = round(out["deployment_p50_ms"] - out["direct_p50_ms"], 3)
    _log(f"deployment: {out}")
    return out


# -- report ---------------------------------------------------------------------------------------------------


def targets(report: dict[str, Any]) -> dict[str, Any]:
    push, env, dep = report.get("push", {}), report.get("environment", {}), report.get("deployment", {})
    repush = push.get("repush", {})
    first = push.get("first", {})
    return {
        "repush_uploaded_bytes": {
            "value": repush.get("uploaded_bytes"),
            "target": "< 1 MB",
            "pass": repush.get("uploaded_bytes") is not None and repush["uploaded_bytes"] < TARGET_REPUSH_BYTES,
        },
        "repush_wall_s": {
            "value": repush.get("wall_s"),
            "target": f"< {TARGET_REPUSH_S:g} s",
            "pass": repush.get("wall_s") is not None and repush["wall_s"] < TARGET_REPUSH_S,
        },
        "first_push_upload_mb_s": {
            "value": first.get("upload_mb_s"),
            "target": f">= {TARGET_UPLOAD_MB_S:g} MB/s",
            "pass": first.get("upload_mb_s") is not None and first["upload_mb_s"] >= TARGET_UPLOAD_MB_S,
        },
        "satisfied_environment_s": {
            "value": env.get("ensure_s"),
            "target": f"< {TARGET_ENV_S:g} s, nothing installed",
            "pass": env.get("ensure_s") is not None and env["ensure_s"] < TARGET_ENV_S and not env.get("installed"),
        },
        "deployment_added_p50_ms": {
            "value": dep.get("added_p50_ms"),
            "target": f"<= {TARGET_DEPLOYMENT_ADDED_MS:g} ms",
            "pass": dep.get("added_p50_ms") is not None and dep["added_p50_ms"] <= TARGET_DEPLOYMENT_ADDED_MS,
        },
    }


def _f(x: Any, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    push, env, dep = report["push"], report["environment"], report["deployment"]
    first = push["first"]
    lines = [
        SECTION,
        "",
        f"Run {report['date']} on {m['cpu']} ({m['cores']} cores, AVX512_BF16: {'yes' if m['avx512_bf16'] else 'no'}), "
        f"code {report['code']}; load before: {report['uptime_before'].rpartition('load average:')[2].strip()}. "
        "One `cocina serve` on 127.0.0.1, its data directory on the same disk as the project.",
        "",
        f"Command: `{report['command']}`",
        "",
        "| measure | figure |",
        "| --- | --- |",
        f"| first push of a {first['size_mb']} MB project: total | {_f(first['total_s'])} s |",
        f"| ... of which upload ({first['uploaded_bytes'] / 2**20:.0f} MiB) | {_f(first['upload_s'])} s, "
        f"**{_f(first['upload_mb_s'], 1)} MB/s** |",
        f"| ... hashing and the version's check | {_f(first['hash_and_check_s'])} s |",
        f"| re-push unchanged, `cocina push` (hash cache warm) | {push['repush']['uploaded_bytes']} bytes, "
        f"**{_f(push['repush']['wall_s'])} s** |",
        f"| re-push unchanged, hash cache removed (every byte re-hashed) | "
        f"{push['repush_rehash']['uploaded_bytes']} bytes, {_f(push['repush_rehash']['wall_s'])} s |",
        f"| environment for {len(env['requirements'])} requirements the server satisfies: `ensure` | "
        f"**{_f(env['ensure_s'], 3)} s**, installed: {env['installed'] or 'nothing'} |",
        f"| ... the whole push of that project | {_f(env['push_s'])} s |",
        f"| echo by version, c=1, p50 ({dep['requests_each']} requests) | {_f(dep['direct_p50_ms'], 3)} ms |",
        f"| echo through a 50/50 deployment, c=1, p50 | {_f(dep['deployment_p50_ms'], 3)} ms |",
        f"| added by the deployment at p50 | **{_f(dep['added_p50_ms'], 3)} ms** |",
        "",
        "| target (issue #10) | measured | met |",
        "| --- | --- | --- |",
    ]
    for key, v in report["targets"].items():
        lines.append(f"| {key} {v['target']} | {_f(v['value'], 3)} | {'yes' if v['pass'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    p.add_argument("--size-mb", type=int, default=500)
    p.add_argument("--requests", type=int, default=1000, help="c=1 requests each way for the deployment measure")
    p.add_argument("--quick", action="store_true", help="a 20 MB project and 50 requests (the smoke test)")
    p.add_argument("--no-docs", action="store_true")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.size_mb, args.requests = 20, 50
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "code": _code_version(),
        "command": "python benchmarks/hub.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "uptime_before": _uptime(),
    }
    port = free_port()
    server = Server(
        "cocina",
        [*cocina_cmd(), "serve", "--data-dir", str(data), "--port", str(port)],
        cwd=workdir,
        log=workdir / "server.log",
        port=port,
        health="/health",
    )
    with running(server, 120) as srv:
        report["push"] = bench_push(srv.url, workdir, args.size_mb)
        report["environment"] = bench_environment(srv.url, workdir)
        report["deployment"] = bench_deployment(srv.url, workdir, args.requests)
    report["uptime_after"] = _uptime()
    report["targets"] = targets(report)
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    if not args.no_docs:
        replace_section(SECTION, render(report))
        _log("docs/benchmarks.md updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
