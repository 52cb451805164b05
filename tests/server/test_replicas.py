"""Replicas sharing one PostgreSQL store (real `cocina serve` processes, a real throwaway PostgreSQL):

- a prediction accepted by one replica is streamed from the other (re-attached by id), live;
- SIGKILL of a replica mid-load loses nothing: its leased predictions re-run on the other;
- PostgreSQL restarted under load: while it is down new work gets 503 with Retry-After (never a 500), and after it
  is back every accepted prediction finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocina.store.postgres import PostgresStore
from cocina.store.throwaway import ThrowawayPostgres
from tests.server.conftest import ECHO, start_server
from tests.server.sse import parse_sse
from tests.server.test_faults import TERMINAL, _port


class Replica:
    """`cocina serve` on a shared store, in its own process group: the echo project as `acme/echo`, or
    `targets` (none: only the data directory's hub). It runs in `data_dir`'s parent, which is no project."""

    def __init__(self, store: str, data_dir: Path, *args: str, targets: tuple[str, ...] = (f"acme/echo={ECHO}",)):
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "cocina.cli", "serve", *targets, "--port", str(self.port)]
        cmd += ["--store", store, "--data-dir", str(data_dir), *args]
        self.log = data_dir.parent / f"replica-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=data_dir.parent
            )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, f"replica exited:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.05)
        raise AssertionError(f"replica never became ready:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its model's process
        self.proc.wait(10)

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def two_replicas(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    # A short lease so that the test is quick; data dirs apart (each replica's files), the store shared.
    pair = (
        Replica(postgres_url, tmp_path / "a", "--lease", "2"),
        Replica(postgres_url, tmp_path / "b", "--lease", "2"),
    )
    try:
        for r in pair:
            r.wait_ready()
        yield pair
    finally:
        for r in pair:
            r.close()


def _create(replica: Replica, text: str, n: int = 3, delay: float = 0.0) -> str:
    answer = replica.client.post(
        "/v1/predictions",
        json={"version": "acme/echo", "input": {"text": text, "n": n, "delay": delay}},
        headers={"Prefer": "respond-async"},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _final(client: httpx.Client, ids: list[str], timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    final: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(final) < len(ids):
        for pid in ids:
            if pid not in final:
                body = client.get(f"/v1/predictions/{pid}").json()
                if body["status"] in TERMINAL:
                    final[pid] = body
        time.sleep(0.1)
    assert set(final) == set(ids), f"never finished: {set(ids) - set(final)}"
    return final


def test_a_stream_is_followed_from_another_replica(two_replicas: tuple[Replica, Replica]) -> None:
    a, b = two_replicas
    pid = _create(a, "hi", n=6, delay=0.25)
    started = time.monotonic()
    arrivals: list[float] = []
    lines: list[str] = []
    with b.client.stream("GET", f"/v1/predictions/{pid}/stream", headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            lines.append(line)
            if line.startswith("event: output"):
                arrivals.append(time.monotonic() - started)
    events = parse_sse(lines)
    outputs = [e["data"] for e in events if e.get("event") == "output"]
    assert outputs == [f"hi{i}" for i in range(6)]
    assert events[-1]["event"] == "done"
    # Live, not replayed at the end: the first items came well before the last (1.5 s of output).
    assert arrivals[0] < arrivals[-1] - 0.5, arrivals
    assert b.client.get(f"/v1/predictions/{pid}").json()["status"] == "succeeded"
    # Waiting on the other replica: Cog's idempotent PUT of an id A runs, sent to B without respond-async, waits
    # (through the store) and answers the finished prediction.
    body = {"input": {"text": "w", "n": 3, "delay": 0.3}}
    assert a.client.put("/predictions/shared-1", json=body, headers={"Prefer": "respond-async"}).status_code == 202
    started = time.monotonic()
    waited = b.client.put("/predictions/shared-1", json=body)
    assert waited.status_code == 200, waited.text
    assert waited.json()["status"] == "succeeded" and waited.json()["output"] == ["w0", "w1", "w2"]
    assert time.monotonic() - started > 0.3  # it did wait for A's run


def test_sigkill_of_a_replica_mid_load_loses_nothing(two_replicas: tuple[Replica, Replica], postgres_url: str) -> None:
    a, b = two_replicas
    ids = [_create(r, f"p{i}-", n=4, delay=0.25) for i in range(8) for r in (a, b)]
    time.sleep(0.4)  # some of A's are running, some queued
    a.kill9()
    killed_at = time.time()
    final = _final(b.client, ids)
    for body in final.values():
        assert body["status"] == "succeeded", body
        text, n = body["input"]["text"], int(body["input"]["n"])
        assert body["output"] == [f"{text}{i}" for i in range(n)]  # whole, not the killed run's partial output
    store = PostgresStore(postgres_url)
    try:
        records = [store.get(pid) for pid in ids]
    finally:
        store.close()
    rerun = [r for r in records if r is not None and r.attempts > 0]
    assert rerun, "the kill interrupted nothing"
    assert all(r.attempts == 1 for r in rerun)  # re-run once, by B
    assert {r.lease_owner for r in rerun} == {records[1].lease_owner}  # B's predictions were B's all along
    # A dead replica on this machine is known dead at once (its pid is gone), so its work resumes at B's next
    # look (every lease/2 = 1 s), well before the 2 s lease would have run out.
    resumed_after = [datetime.fromisoformat(r.started_at).timestamp() - killed_at for r in rerun if r.started_at]
    assert max(resumed_after) < 2 * 2.0 + 4 * 0.25 * 4, resumed_after


def test_postgres_restarted_under_load(tmp_path: Path) -> None:
    """While PostgreSQL is down, new work gets 503 + Retry-After (never 500); once it is back, every accepted
    prediction finishes — those that were running during the outage included."""
    with ThrowawayPostgres(fast=True) as pg:
        live = start_server(tmp_path / "data", store_url=pg.url, lease_s=2.0)
        accepted: list[str] = []
        statuses: list[int] = []
        refused: list[httpx.Response] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(base_url=live.url, timeout=30) as client:
                i = 0
                while not stop.is_set() and i < 400:
                    i += 1
                    r = client.post(
                        "/v1/predictions",
                        json={"version": "acme/echo", "input": {"text": f"q{i}-", "n": 2, "delay": 0.05}},
                        headers={"Prefer": "respond-async"},
                    )
                    statuses.append(r.status_code)
                    if r.status_code == 201:
                        accepted.append(r.json()["id"])
                    elif r.status_code in (429, 503):
                        refused.append(r)
                        time.sleep(0.05)
                    else:
                        stop.set()
                    time.sleep(0.02)

        try:
            thread = threading.Thread(target=load)
            thread.start()
            time.sleep(1.0)
            before = len(accepted)
            pg.stop_server()
            time.sleep(1.5)
            during = [r for r in refused if r.status_code == 503]
            pg.start_server()
            time.sleep(1.5)
            stop.set()
            thread.join(30)
            assert before > 0 and len(accepted) > before  # accepted before and after the outage
            assert 500 not in statuses and set(statuses) <= {201, 429, 503}, sorted(set(statuses))
            assert during, "nothing was refused while PostgreSQL was down"
            for r in during:
                assert r.headers["retry-after"] == "1"
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["status"] == 503
            final = _final(live.client, accepted)
            assert all(body["status"] == "succeeded" for body in final.values()), [
                b for b in final.values() if b["status"] != "succeeded"
            ]
            # Reading a prediction the server does not hold in memory while the store is down: 503, not a 500
            # (a recent one is still answered from memory).
            pg.stop_server()
            assert live.client.get(f"/v1/predictions/{accepted[-1]}").status_code == 200
            r = live.client.get("/v1/predictions/not-in-memory")
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            pg.start_server()
            assert live.client.get("/v1/predictions/not-in-memory").status_code == 404
        finally:
            live.stop()
