"""Deploy benchmark (issue #13): the figures of docs/deploy.md, side by side in one run.

1. **Store throughput**: admission + completion of echo predictions (`benchmarks/echo_predictor`: `predict`
   returns its input), PostgreSQL against SQLite, in this process through `Serving` (no HTTP: what the store and
   serving cost): `--predictions` admitted by `--concurrency` concurrent callers, each waiting for its
   prediction to succeed; then the same over HTTP (Cog's `POST /predictions`, which waits) with as many
   concurrent httpx clients. PostgreSQL is a throwaway server with its default durability (fsync on); SQLite is
   WAL with synchronous=NORMAL, as cocina runs it.
2. **Edge bundle**: `cocina build --target edge` of a project serving the demo language model; its size; from the
   unpacked bundle inside `unshare -n` (no network), the time from `./run.sh` to the first chat completion, on
   first run (the install from the wheelhouse included) and on the next start.
3. **Resume after SIGKILL**: (a) two replicas on Ray Serve under two clients' load, one killed: how long until a
   live replica has taken over every prediction the dead one held, and until the first re-run starts; (b) two
   `cocina serve` processes sharing PostgreSQL, the second in its own UTS namespace (another host name), so it
   can learn of the first one's death only from expired leases: the same times, against the lease.

    flock /tmp/cocina-cpu.lock .venv/bin/python benchmarks/deploy.py            # everything
    .venv/bin/python benchmarks/deploy.py --only store --predictions 500         # one part

Prints one JSON object with every figure, the machine (CPU, flags, load) and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.serving import _code_version, _machine, _uptime  # noqa: E402

ECHO_PREDICTOR = ROOT / "benchmarks" / "echo_predictor"
ECHO = ROOT / "tests" / "server" / "fixtures" / "projects" / "echo"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16")
            return " ".join(f for f in line.split(":", 1)[1].split() if f in wanted)
    return ""


# ---- 1. store throughput


async def _serving_run(store_url: str | None, data_dir: Path, n: int, concurrency: int) -> dict[str, Any]:
    from cocina.serving import AdmissionRequest, Serving, ServingConfig
    from cocina.serving.spec import project_spec

    spec = project_spec(ECHO_PREDICTOR, name="bench/echo").replace(warm=True)
    config = ServingConfig(data_dir=data_dir, store_url=store_url, concurrency=32, max_queue=n)
    serving = Serving(config, [spec])
    await serving.start()
    await serving.wait_warm(120)
    try:
        # Warm-up: a few predictions, not timed.
        for i in range(20):
            rec = (await serving.admit(AdmissionRequest(surface="cog", input={"text": f"w{i}"}))).record
            await serving.wait(rec.id, 30)
        latencies: list[float] = []
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def caller() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                rec = (await serving.admit(AdmissionRequest(surface="cog", input={"text": f"p{i}"}))).record
                final = await serving.wait(rec.id, 60)
                assert final is not None and final.status.value == "succeeded", final
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await serving.drain(5)
    latencies.sort()
    return {
        "predictions": n,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "per_second": round(n / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def _http_run(store: str | None, data_dir: Path, n: int, concurrency: int) -> dict[str, Any]:
    import httpx

    port = _port()
    cmd = [sys.executable, "-m", "cocina.cli", "serve", f"bench/echo={ECHO_PREDICTOR}", "--port", str(port)]
    cmd += ["--data-dir", str(data_dir), "--concurrency", "32", "--max-queue", str(n)]
    if store:
        cmd += ["--store", store]
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir.parent / f"http-{port}.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)

        async def main() -> tuple[float, int]:
            limits = httpx.Limits(max_connections=concurrency)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                for i in range(20):
                    await client.post("/predictions", json={"input": {"text": f"w{i}"}})
                left = list(range(n))
                ok = 0

                async def worker() -> None:
                    nonlocal ok
                    while left:
                        i = left.pop()
                        r = await client.post("/predictions", json={"input": {"text": f"p{i}"}})
                        ok += r.status_code == 200 and r.json()["status"] == "succeeded"

                t0 = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return time.perf_counter() - t0, ok

        elapsed, ok = asyncio.run(main())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
    return {
        "predictions": n,
        "concurrency": concurrency,
        "ok": ok,
        "seconds": round(elapsed, 3),
        "per_second": round(ok / elapsed, 1),
    }


def store_throughput(n: int, concurrency: int) -> dict[str, Any]:
    from cocina.store.throwaway import ThrowawayPostgres

    out: dict[str, Any] = {}
    with ThrowawayPostgres() as pg, tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for label, url in (("postgresql", pg.url), ("sqlite", None)):
            db = pg.create_database(f"bench_{len(out)}") if url else None
            out[label] = {
                "serving": asyncio.run(_serving_run(db, base / f"{label}-s", n, concurrency)),
            }
        for label, url in (("postgresql", pg.url), ("sqlite", None)):
            db = pg.create_database(f"bench_http_{label}") if url else None
            out[label]["http"] = _http_run(db, base / f"{label}-h", n, concurrency)
    out["postgresql_settings"] = "PostgreSQL 15 defaults (fsync on); acceptance and final states commit synchronously"
    return out


# ---- 2. edge bundle


def edge_bundle() -> dict[str, Any]:
    from cocina.deploy.build import Target, build
    from cocina.deploy.source import project_source

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        project = base / "demo"
        project.mkdir()
        (project / "cocina.yaml").write_text(
            'predict: "cocina.llm:LLMPredictor"\nenvironment:\n  - COCINA_MAX_NUM_SEQS=8\n'
        )
        t0 = time.perf_counter()
        result = build(Target.EDGE, project_source(project, name="acme/demo"), base / "bundle")
        build_s = time.perf_counter() - t0
        port = _port()
        chat = json.dumps({"model": "acme/demo", "messages": [{"role": "user", "content": "Hola"}], "max_tokens": 16})
        script = (
            "ip link set lo up; getent hosts pypi.org >/dev/null && exit 3; "
            f"start=$(date +%s.%N); (PORT={port} ./run.sh > run.log 2>&1 &); "
            f"until curl -sf -o answer.json -X POST localhost:{port}/v1/chat/completions "
            f"-H 'Content-Type: application/json' -d '{chat}'; do sleep 0.1; done; "
            'end=$(date +%s.%N); echo "$start $end"; '
            f"curl -s -X POST localhost:{port}/shutdown >/dev/null; sleep 2"
        )
        times = []
        for _ in range(2):  # first run installs; the second only starts
            done = subprocess.run(
                ["unshare", "-n", "bash", "-c", script],
                cwd=base / "bundle",
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"edge run failed: {done.stdout} {done.stderr} {(base / 'bundle' / 'run.log').read_text()[-2000:]}"
                )
            start, end = (float(x) for x in done.stdout.split())
            times.append(round(end - start, 1))
            answer = json.loads((base / "bundle" / "answer.json").read_text())
            assert answer["choices"][0]["message"]["content"] is not None
        wheels = sum(p.stat().st_size for p in (base / "bundle" / "wheels").glob("*.whl"))
        return {
            "model": "cocina/demo (GPT-2 shape, 4 layers, 256 wide), served int8 on CPU",
            "build_s": round(build_s, 1),
            "bundle_mib": round(result.size_bytes / 2**20, 1),
            "wheels_mib": round(wheels / 2**20, 1),
            "first_answer_first_run_s": times[0],
            "first_answer_next_start_s": times[1],
            "answer": answer["choices"][0]["message"]["content"],
        }


# ---- 3. resume after SIGKILL


def _post_load(url: str, accepted: list[str], stop: threading.Event, k: int) -> None:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as c:
        i = 0
        while not stop.is_set() and i < 200:
            i += 1
            try:
                r = c.post(
                    "/v1/predictions",
                    json={"version": "acme/echo", "input": {"text": f"c{k}-{i}-", "n": 4, "delay": 0.2}},
                    headers={"Prefer": "respond-async"},
                )
            except httpx.HTTPError:
                continue
            if r.status_code == 201:
                accepted.append(r.json()["id"])
            time.sleep(0.1)


def _takeover(store: Any, accepted: list[str], killed_owner_pid: int | None = None) -> tuple[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for pid in list(accepted):
        rec = store.get(pid)
        if rec is not None and rec.lease_owner and not rec.status.is_terminal:
            owners.setdefault(rec.lease_owner, []).append(pid)
    if killed_owner_pid is not None:
        victim = next(o for o in owners if int(o.split(":")[2]) == killed_owner_pid)
    else:
        victim = max(owners, key=lambda o: len(owners[o]))
    return victim, owners[victim]


def _measure(store: Any, accepted: list[str], victim: str, held: list[str], killed_at: float) -> dict[str, Any]:
    taken: dict[str, float] = {}
    while len(taken) < len(held) and time.time() - killed_at < 120:
        for pid in held:
            rec = store.get(pid)
            if pid not in taken and rec is not None and rec.lease_owner != victim:
                taken[pid] = time.time() - killed_at
        time.sleep(0.02)
    deadline = time.time() + 120
    while time.time() < deadline:
        recs = [store.get(p) for p in accepted]
        if all(r is not None and r.status.is_terminal for r in recs):
            break
        time.sleep(0.2)
    succeeded = sum(r is not None and r.status.value == "succeeded" for r in recs)
    starts = [
        dt.datetime.fromisoformat(r.started_at).timestamp() - killed_at
        for r in recs
        if r is not None and r.attempts > 0 and r.started_at
    ]
    return {
        "accepted": len(accepted),
        "succeeded": succeeded,
        "held_by_killed": len(held),
        "taken_over_s": [round(min(taken.values()), 2), round(max(taken.values()), 2)] if taken else None,
        "first_rerun_started_s": round(min(starts), 2) if starts else None,
        "all_finished_s": round(time.time() - killed_at, 1),
    }


def resume_ray(lease_s: float) -> dict[str, Any]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray import serve

    from cocina.deploy.ray_serve import ReplicaSettings, ScaleSettings, deployment
    from cocina.store.postgres import PostgresStore
    from cocina.store.throwaway import ThrowawayPostgres

    with ThrowawayPostgres() as pg, tempfile.TemporaryDirectory() as tmp:
        port = _port()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            settings = ReplicaSettings(targets=(f"acme/echo={ECHO}",), store=pg.url, data_dir=tmp, lease_s=lease_s)
            serve.run(
                deployment(settings, ScaleSettings(2, 2, 4, 0.5)), name="cocina", route_prefix="/", blocking=False
            )
            store = PostgresStore(pg.url)
            accepted: list[str] = []
            stop = threading.Event()
            clients = [
                threading.Thread(target=_post_load, args=(f"http://127.0.0.1:{port}", accepted, stop, k))
                for k in range(2)
            ]
            for t in clients:
                t.start()
            time.sleep(3.0)
            victim, held = _takeover(store, accepted)
            os.kill(int(victim.split(":")[2]), signal.SIGKILL)
            killed_at = time.time()
            time.sleep(2.0)
            stop.set()
            for t in clients:
                t.join(60)
            result = _measure(store, accepted, victim, held, killed_at)
            store.close()
        finally:
            serve.shutdown()
            ray.shutdown()
    return {"lease_s": lease_s, **result}


def resume_other_host(lease_s: float) -> dict[str, Any]:
    """Two `cocina serve` replicas; B runs under another host name (its own UTS namespace), so A's death reaches
    it only as expired leases (as between two machines)."""
    import httpx

    from cocina.store.postgres import PostgresStore
    from cocina.store.throwaway import ThrowawayPostgres

    with ThrowawayPostgres() as pg, tempfile.TemporaryDirectory() as tmp:
        procs = []
        urls = []
        for i, host in enumerate((None, "replica-b")):
            port = _port()
            serve = [sys.executable, "-m", "cocina.cli", "serve", f"acme/echo={ECHO}", "--port", str(port)]
            serve += ["--store", pg.url, "--data-dir", f"{tmp}/{i}", "--lease", str(lease_s)]
            cmd = serve if host is None else ["unshare", "-u", "bash", "-c", f'hostname {host}; exec "$@"', "-", *serve]
            with Path(tmp, f"{i}.log").open("w") as log:
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            urls.append(f"http://127.0.0.1:{port}")
        try:
            for url in urls:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("a replica did not start")
                    time.sleep(0.1)
            store = PostgresStore(pg.url)
            accepted: list[str] = []
            stop = threading.Event()
            clients = [threading.Thread(target=_post_load, args=(urls[k], accepted, stop, k)) for k in range(2)]
            for t in clients:
                t.start()
            time.sleep(3.0)
            victim, held = _takeover(store, accepted, killed_owner_pid=procs[0].pid)
            os.killpg(procs[0].pid, signal.SIGKILL)
            killed_at = time.time()
            time.sleep(1.0)
            stop.set()
            for t in clients:
                t.join(60)
            result = _measure(store, accepted, victim, held, killed_at)
            store.close()
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(10)
    return {"lease_s": lease_s, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["store", "edge", "resume"], action="append")
    parser.add_argument("--predictions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--lease", type=float, default=4.0)
    args = parser.parse_args()
    parts = set(args.only or ["store", "edge", "resume"])
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _code_version(),
        "machine": {**_machine(), "flags": _flags()},
        "load_before": _uptime(),
    }
    if "store" in parts:
        report["store"] = store_throughput(args.predictions, args.concurrency)
    if "edge" in parts:
        report["edge"] = edge_bundle()
    if "resume" in parts:
        report["resume_ray_same_host"] = resume_ray(args.lease)
        report["resume_other_host"] = resume_other_host(args.lease)
    report["load_after"] = _uptime()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
