"""cocina replicas on Ray Serve (a real local Ray cluster, a real throwaway PostgreSQL): two replicas under load,
one killed with SIGKILL: every accepted prediction succeeds, re-run once elsewhere, within two lease periods; Ray
brings the replica back. A replica whose model fails to load never becomes ready and receives no traffic."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

ray = pytest.importorskip("ray", reason="Ray Serve is an optional extra: pip install 'cocina[ray]'")
from ray import serve  # noqa: E402

from cocina.deploy.ray_serve import ReplicaSettings, ScaleSettings, deployment  # noqa: E402
from cocina.store.postgres import PostgresStore  # noqa: E402
from tests.deploy.conftest import ECHO  # noqa: E402

pytestmark = pytest.mark.slow
LEASE_S = 2.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[int]:
    """A local Ray cluster of this machine's 2 CPUs (loopback only), with Serve's HTTP proxy on a free port."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


def _settings(postgres_url: str, tmp_path: Path, **changes: Any) -> ReplicaSettings:
    return ReplicaSettings(
        targets=(f"acme/echo={ECHO}",),
        store=postgres_url,
        data_dir=str(tmp_path / "shared"),
        lease_s=LEASE_S,
        **changes,
    )


def test_sigkill_of_a_replica_under_load_loses_nothing(cluster: int, postgres_url: str, tmp_path: Path) -> None:
    app = deployment(_settings(postgres_url, tmp_path), ScaleSettings(2, 2, target_per_replica=4, num_cpus=0.5))
    serve.run(app, name="cocina", route_prefix="/", blocking=False)
    store = PostgresStore(postgres_url)
    try:
        url = f"http://127.0.0.1:{cluster}"
        accepted: list[str] = []
        refused_in_flight: list[int] = []
        killed = threading.Event()
        stop = threading.Event()

        def client(k: int) -> None:  # two async clients, each posting until told to stop
            with httpx.Client(base_url=url, timeout=30) as c:
                i = 0
                while not stop.is_set() and i < 40:
                    i += 1
                    r = c.post(
                        "/v1/predictions",
                        json={"version": "acme/echo", "input": {"text": f"c{k}-{i}-", "n": 4, "delay": 0.2}},
                        headers={"Prefer": "respond-async"},
                    )
                    if r.status_code == 201:
                        accepted.append(r.json()["id"])
                    elif r.status_code >= 500 and r.status_code != 503 and killed.is_set():
                        # Ray fails the request that was in flight on the killed replica: never answered 201, so
                        # never accepted (the client retries it); counted, and bounded below.
                        refused_in_flight.append(r.status_code)
                    else:
                        assert r.status_code in (429, 503) and "retry-after" in r.headers, (r.status_code, r.text)
                    time.sleep(0.1)

        clients = [threading.Thread(target=client, args=(k,)) for k in range(2)]
        for t in clients:
            t.start()
        time.sleep(1.5)
        owners: dict[str, int] = {}
        for pid in list(accepted):
            rec = store.get(pid)
            if rec is not None and rec.lease_owner and not rec.status.is_terminal:
                owners[rec.lease_owner] = owners.get(rec.lease_owner, 0) + 1
        assert len(owners) == 2, f"both replicas should hold work: {owners}"
        victim = max(owners, key=lambda o: owners[o])
        held = [pid for pid in list(accepted) if (r := store.get(pid)) and r.lease_owner == victim]
        held = [pid for pid in held if not store.get(pid).status.is_terminal]  # type: ignore[union-attr]
        killed.set()
        os.kill(int(victim.split(":")[2]), signal.SIGKILL)
        killed_at = time.time()
        # Resumed = taken over by a live replica (its lease reclaimed and the prediction queued again there).
        reclaimed_at: dict[str, float] = {}
        while len(reclaimed_at) < len(held) and time.time() - killed_at < 30:
            for pid in held:
                rec = store.get(pid)
                if pid not in reclaimed_at and rec is not None and rec.lease_owner != victim:
                    reclaimed_at[pid] = time.time() - killed_at
            time.sleep(0.05)
        assert len(reclaimed_at) == len(held), "the killed replica's predictions were never taken over"
        stop.set()
        for t in clients:
            t.join(60)
        deadline = time.monotonic() + 60
        while True:
            records = [store.get(pid) for pid in accepted]
            if all(r is not None and r.status.is_terminal for r in records) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert all(r is not None for r in records)
        stuck = [r.id for r in records if r is not None and not r.status.is_terminal]
        assert not stuck, f"never finished: {stuck}"
        assert all(r.status.value == "succeeded" for r in records if r is not None)
        for r in records:
            assert r is not None and r.output == [f"{r.input['text']}{i}" for i in range(4)]  # type: ignore[index]
        rerun = [r for r in records if r is not None and r.attempts > 0]
        # At least once: re-run after the kill; on a starved machine a survivor that could not renew its lease in
        # time may lose a prediction to another replica once more (fenced: one run's output is kept).
        assert rerun and all(r.attempts <= 2 for r in rerun), [r.attempts for r in rerun]
        # Target: the killed replica's leased work resumes within two lease periods.
        assert max(reclaimed_at.values()) < 2 * LEASE_S, reclaimed_at
        first_start = min(datetime.fromisoformat(r.started_at).timestamp() for r in rerun if r.started_at) - killed_at
        assert len(refused_in_flight) <= 2, refused_in_flight  # at most the one in flight per client
        print(
            f"ray: {len(accepted)} accepted, {len(held)} on the killed replica, taken over after "
            f"{min(reclaimed_at.values()):.2f}..{max(reclaimed_at.values()):.2f} s, first re-run started after "
            f"{first_start:.2f} s; re-runs {sorted(r.attempts for r in rerun)}; in flight failed {refused_in_flight}"
        )
        deadline = time.monotonic() + 60
        while serve.status().applications["cocina"].deployments["cocina"].replica_states.get("RUNNING") != 2:
            assert time.monotonic() < deadline, "Ray did not bring the killed replica back"
            time.sleep(0.5)
    finally:
        store.close()
        serve.delete("cocina")


def test_a_replica_whose_model_fails_to_load_never_gets_traffic(
    cluster: int, postgres_url: str, tmp_path: Path
) -> None:
    settings = _settings(postgres_url, tmp_path, env={"ECHO_SETUP_FAIL": "1"}, load_timeout_s=30.0)
    app = deployment(settings, ScaleSettings(1, 1, num_cpus=0.5, max_constructor_retry_count=1))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(app, name="broken", route_prefix="/broken", blocking=False)
        except BaseException as exc:  # Ray says the deployment failed
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            apps = serve.status().applications
            if "broken" in apps:
                status = apps["broken"].deployments.get("cocina")
                if status is not None and status.status.value in ("DEPLOY_FAILED", "UNHEALTHY"):
                    break
            time.sleep(0.5)
        assert status is not None and status.status.value in ("DEPLOY_FAILED", "UNHEALTHY"), status
        assert not status.replica_states.get("RUNNING")
        # The replica's start-up (cocina's lifespan, which waits for the model) failed; the model's own error is in
        # the replica's log.
        assert "lifespan startup failed" in status.message or failure, status.message
        answer = httpx.post(f"http://127.0.0.1:{cluster}/broken/predictions", json={"input": {"text": "x"}}, timeout=30)
        assert answer.status_code == 503  # Ray's: nothing to route to; cocina never admitted it
        store = PostgresStore(postgres_url)
        try:
            assert store.page(None, 10) == []  # no prediction was recorded: no traffic reached a replica
        finally:
            store.close()
    finally:
        serve.delete("broken")
