"""Faults: kill -9 of one model's process under load, kill -9 of the server with several models' predictions
accepted, SIGTERM drain, a store that refuses inserts, recovery that reclaims only expired leases; retention."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import replicate

from cocina.store import PredictionRecord, PredictionStatus, SQLiteStore, StoreError
from tests.server.conftest import ECHO, ECHO_PLAIN, LiveServer, echo_spec, llm_spec, start_server

TERMINAL = {"succeeded", "failed", "canceled"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`cocina serve` with two models (echo as `acme/echo`, the plain one as `acme/plain`) in its own process
    group, so that kill -9 takes the models' processes too."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "cocina.cli",
            "serve",
            f"acme/echo={ECHO}",
            f"acme/plain={ECHO_PLAIN}",
            "--warm",
            "all",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            *args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "server exited"
            time.sleep(0.05)
        raise AssertionError("server never became ready")

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def _all_terminal(client: httpx.Client, ids: list[str], timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    final: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline and len(final) < len(ids):
        for pid in ids:
            if pid not in final:
                body = client.get(f"/v1/predictions/{pid}").json()
                if body["status"] in TERMINAL:
                    final[pid] = body
        time.sleep(0.1)
    assert set(final) == set(ids), f"stuck after the restart: {set(ids) - set(final)}"
    return final


def test_kill9_of_the_server_with_several_models_then_restart(data_dir: Path) -> None:
    """Predictions of two models accepted, the server killed: after a restart none is lost or stuck, the
    interrupted ones re-run whole (their server is known dead at once: no wait for the lease to run out)."""
    srv = ServeProcess(data_dir)
    ids: list[str] = []
    try:
        srv.wait_ready()
        done = srv.client.post("/predictions", json={"input": {"text": "d", "n": 1}}).json()
        assert done["status"] == "succeeded"
        ids.append(done["id"])
        for i in range(6):
            r = srv.client.post(
                "/v1/models/acme/echo/predictions",
                json={"input": {"text": f"e{i}", "n": 8, "delay": 0.1}},
            )
            assert r.status_code == 201
            ids.append(r.json()["id"])
            r = srv.client.post("/v1/models/acme/plain/predictions", json={"input": {"text": f"p{i}", "delay": 0.3}})
            assert r.status_code == 201
            ids.append(r.json()["id"])
        time.sleep(0.4)
        srv.kill9()
    finally:
        srv.close()
    store = SQLiteStore(data_dir / "predictions.db")
    before = {pid: store.get(pid) for pid in ids}
    store.close()
    assert all(rec is not None for rec in before.values()), "an accepted prediction was lost"
    unfinished = [pid for pid, rec in before.items() if rec and not rec.status.is_terminal]
    assert {before[p].model for p in unfinished} == {"acme/echo", "acme/plain"}, "the kill came too late"  # type: ignore[union-attr]

    t0 = time.monotonic()
    srv = ServeProcess(data_dir, "--lease", "600")  # a long lease: only knowing the old server dead lets it resume
    try:
        srv.wait_ready()
        final = _all_terminal(srv.client, ids)
        assert time.monotonic() - t0 < 120
        for pid in unfinished:
            body = final[pid]
            assert body["status"] == "succeeded", body
            if body["model"] == "acme/echo":
                assert len(body["output"]) == 8  # re-run from scratch: the whole output, not a torn half
            else:
                assert body["output"] == body["input"]["text"]
        assert final[ids[0]]["output"] == ["d0"]
    finally:
        srv.close()


def test_kill9_of_one_models_process_under_load(tmp_path: Path) -> None:
    """Two models; one's process is killed while both are busy: the other keeps answering, the dead one's
    running predictions fail with the cause, its queued ones run after it reloads."""
    srv = start_server(
        tmp_path / "d", [echo_spec("acme/a", warm=True), echo_spec("acme/b", warm=True)], concurrency=2, max_queue=16
    )
    try:
        deadline = time.monotonic() + 30
        while srv.client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        slow = {"input": {"text": "s", "n": 10, "delay": 0.1}}
        a_ids = [srv.client.post("/v1/models/acme/a/predictions", json=slow).json()["id"] for _ in range(5)]
        b_ids = [srv.client.post("/v1/models/acme/b/predictions", json=slow).json()["id"] for _ in range(3)]
        time.sleep(0.3)
        pid = srv.runtime("acme/a").model.pid
        os.kill(pid, signal.SIGKILL)
        # The other model answers meanwhile.
        quick = srv.client.post(
            "/v1/models/acme/b/predictions", json={"input": {"text": "q", "n": 1}}, headers={"Prefer": "wait"}
        )
        assert quick.json()["status"] == "succeeded"
        final = _all_terminal(srv.client, a_ids + b_ids)
        failed = [final[i] for i in a_ids if final[i]["status"] == "failed"]
        assert len(failed) == 2 and all("SIGKILL" in f["error"] for f in failed)  # the two that were running
        assert all(
            final[i]["status"] == "succeeded" and len(final[i]["output"]) == 10
            for i in a_ids
            if final[i]["status"] != "failed"
        )
        assert all(final[i]["status"] == "succeeded" for i in b_ids)
        assert srv.runtime("acme/a").model.pid not in (None, pid)  # reloaded
    finally:
        srv.stop()


def test_sigterm_drains_then_exits(data_dir: Path) -> None:
    srv = ServeProcess(data_dir, "--drain-grace", "0.5")
    try:
        srv.wait_ready()
        srv.client.put(
            "/predictions/short",
            json={"input": {"text": "s", "n": 2, "delay": 0.1}},
            headers={"Prefer": "respond-async"},
        )
        srv.client.put(
            "/predictions/long",
            json={"input": {"text": "l", "n": 100, "delay": 0.1}},
            headers={"Prefer": "respond-async"},
        )
        time.sleep(0.2)
        os.kill(srv.proc.pid, signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done: -SIGTERM is a clean exit here.
        assert srv.proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        srv.close()
    store = SQLiteStore(data_dir / "predictions.db")
    try:
        short, long = store.get("short"), store.get("long")
        assert short is not None and long is not None
        assert short.status.value == "succeeded"
        assert long.status.value == "canceled"
        assert store.lease_owners() == []  # nothing left unfinished
    finally:
        store.close()


# ---- recovery by leases ------------------------------------------------------------------------------------


def _record(pid: str, model: str, **kw: Any) -> PredictionRecord:
    return PredictionRecord(id=pid, model=model, input={"text": pid}, status=PredictionStatus.PROCESSING, **kw)


def test_recovery_reclaims_only_expired_leases_of_its_models(tmp_path: Path) -> None:
    data = tmp_path / "d"
    store = SQLiteStore(data / "predictions.db")
    run = {"text": "y", "n": 1, "delay": 0.0, "mode": "ok"}
    future = time.time() + 3600
    store.insert(_record("tired", "acme/echo", run_input=run, attempts=2, lease_owner="gone", lease_expires_at=0.0))
    store.insert(_record("again", "acme/echo", run_input=run, lease_owner="gone", lease_expires_at=0.0))
    store.insert(_record("noinput", "acme/echo", run_input=None))
    # A live lease of another server, and another server's model: not ours to take.
    store.insert(_record("theirs", "acme/echo", run_input=run, lease_owner="other-host", lease_expires_at=future))
    store.insert(_record("other-model", "acme/other", run_input=run, lease_owner="gone", lease_expires_at=0.0))
    store.close()
    srv = start_server(data, max_rerun_attempts=2)
    try:
        tired = srv.client.get("/v1/predictions/tired").json()
        assert tired["status"] == "failed" and "not re-run" in tired["error"]
        noinput = srv.client.get("/v1/predictions/noinput").json()
        assert noinput["status"] == "failed" and "without its client" in noinput["error"]
        deadline = time.monotonic() + 10
        while srv.client.get("/v1/predictions/again").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        again = srv.client.get("/v1/predictions/again").json()
        assert again["output"] == ["y0"] and srv.serving.store.get("again").attempts == 1  # type: ignore[union-attr]
        assert srv.client.get("/v1/predictions/theirs").json()["status"] == "processing"
        assert srv.client.get("/v1/predictions/other-model").json()["status"] == "processing"
        # Once its lease runs out, the other server's prediction is ours too.
        srv.serving.store.update(
            PredictionRecord(**{**srv.serving.store.get("theirs").__dict__, "lease_expires_at": 1.0})  # type: ignore[union-attr]
        )
        srv.run(_reclaim(srv))
        deadline = time.monotonic() + 10
        while srv.client.get("/v1/predictions/theirs").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        srv.stop()


async def _reclaim(srv: LiveServer) -> int:
    return srv.serving.leases.reclaim()


# ---- a store that refuses to record ------------------------------------------------------------------------


class RefusingStore(SQLiteStore):
    """A real SQLite store whose inserts fail while `refusing` (a full disk, a database locked too long)."""

    refusing = False

    def insert(self, rec: PredictionRecord) -> bool:
        if self.refusing:
            raise StoreError("database or disk is full")
        return super().insert(rec)


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[tuple[LiveServer, RefusingStore]]:
    data = tmp_path_factory.mktemp("refusing") / "d"
    store = RefusingStore(data / "predictions.db")
    srv = start_server(data, [echo_spec(warm=True), llm_spec(tiny_model, "acme/tiny", warm=True)], store=store)
    try:
        deadline = time.monotonic() + 60
        while srv.client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield srv, store
    finally:
        srv.stop()
        store.close()


def test_a_store_that_refuses_inserts_gives_503_and_starts_nothing(refusing: tuple[LiveServer, RefusingStore]) -> None:
    srv, store = refusing
    engine_before = srv.run(srv.runtime("acme/tiny").model.engine_stats())
    store.refusing = True
    try:
        cog = srv.client.post("/predictions", json={"input": {"text": "x"}})
        assert cog.status_code == 503 and cog.headers["retry-after"] == "1" and "not started" in cog.json()["detail"]
        rep = srv.client.post("/v1/models/acme/echo/predictions", json={"input": {"text": "x"}})
        assert rep.status_code == 503 and rep.json()["title"] == "Service unavailable"
        oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as err:
            oa.completions.create(model="acme/tiny", prompt="hello", max_tokens=5)
        assert err.value.status_code == 503 and err.value.code == "service_unavailable"
        with pytest.raises(replicate.exceptions.ReplicateError) as rerr:
            replicate.Client(api_token="x", base_url=srv.url).predictions.create(
                model="acme/tiny", input={"prompt": "hola"}
            )
        assert rerr.value.status == 503
    finally:
        store.refusing = False
    engine_after = srv.run(srv.runtime("acme/tiny").model.engine_stats())
    # Nothing reached the engine: not one prompt token more.
    assert engine_after["prompt_tokens"] == engine_before["prompt_tokens"]
    assert engine_after["num_requests_finished"] == engine_before["num_requests_finished"]
    assert srv.runtime().num_running == 0 and srv.runtime().num_queued == 0
    # And once the store accepts again, so does the server.
    assert srv.client.post("/predictions", json={"input": {"text": "x", "n": 1}}).json()["output"] == ["x0"]


def test_retention_removes_data(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", retention_s=0.2)
    try:
        body = srv.client.post("/predictions", json={"input": {"text": "old"}}).json()
        deadline = time.monotonic() + 5
        while True:
            got = srv.client.get(f"/v1/predictions/{body['id']}").json()
            if got["data_removed"]:
                break
            assert time.monotonic() < deadline, got
            time.sleep(0.05)
        assert got["input"] is None and got["output"] is None and got["status"] == "succeeded"
    finally:
        srv.stop()
