"""Faults against `cocina serve` as a real process: kill -9 mid-load and restart, SIGTERM drain; retention."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cocina.server.store import PredictionStore
from tests.server.conftest import start_server
from tests.server.fixtures.backends import EchoBackend

PROJECT = Path(__file__).parent / "fixtures" / "projects" / "echo"
TERMINAL = {"succeeded", "failed", "canceled"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`cocina serve` in its own process group (so kill -9 takes its worker child too)."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "cocina.cli",
            "serve",
            str(PROJECT),
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--name",
            "acme/echo",
            *args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.client.get("/health-check").json()["status"] == "READY":
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "server exited"
            time.sleep(0.05)
        raise AssertionError("server never became READY")

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


def test_kill9_mid_load_then_restart_accounts_for_every_prediction(data_dir: Path) -> None:
    srv = ServeProcess(data_dir)
    try:
        srv.wait_ready()
        done = srv.client.post("/predictions", json={"input": {"text": "d", "n": 1}}).json()
        assert done["status"] == "succeeded"
        ids = [done["id"]]
        for i in range(10):
            r = srv.client.post(
                "/predictions",
                json={"input": {"text": f"p{i}", "n": 8, "delay": 0.1}},
                headers={"Prefer": "respond-async"},
            )
            assert r.status_code == 202
            ids.append(r.json()["id"])
        time.sleep(0.4)
        srv.kill9()
    finally:
        srv.close()
    store = PredictionStore(data_dir / "predictions.db")
    before = {pid: store.get(pid) for pid in ids}
    store.close()
    assert all(rec is not None for rec in before.values()), "an accepted prediction was lost"
    unfinished = [pid for pid, rec in before.items() if rec and not rec.status.is_terminal]
    assert unfinished, "the kill came too late to test anything"

    srv = ServeProcess(data_dir)
    try:
        srv.wait_ready()
        deadline = time.monotonic() + 30
        final: dict[str, dict] = {}
        while time.monotonic() < deadline and len(final) < len(ids):
            for pid in ids:
                body = srv.client.get(f"/v1/predictions/{pid}").json()
                if body["status"] in TERMINAL:
                    final[pid] = body
            time.sleep(0.1)
        assert set(final) == set(ids), "a prediction was stuck after the restart"
        for pid in unfinished:
            # Re-run from scratch: the whole output, not a torn half.
            n_items = len(final[pid]["output"])
            assert final[pid]["status"] == "succeeded" and n_items == 8, final[pid]
        assert final[ids[0]]["output"] == ["d0"]
    finally:
        srv.close()


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
    store = PredictionStore(data_dir / "predictions.db")
    try:
        short, long = store.get("short"), store.get("long")
        assert short is not None and long is not None
        assert short.status.value == "succeeded"
        assert long.status.value == "canceled"
        assert store.unfinished() == []
    finally:
        store.close()


def test_recovery_fails_what_cannot_be_rerun(tmp_path: Path) -> None:
    """A prediction re-run too often (or without stored input) is failed with a clear error, not re-queued."""
    from cocina.server.backend import PredictionStatus
    from cocina.server.store import PredictionRecord

    data = tmp_path / "d"
    store = PredictionStore(data / "predictions.db")
    store.insert(
        PredictionRecord(
            id="tired",
            status=PredictionStatus.PROCESSING,
            input={"text": "x"},
            run_input={"text": "x", "n": 1, "delay": 0.0, "mode": "ok"},
            attempts=2,
        )
    )
    store.insert(
        PredictionRecord(
            id="again",
            status=PredictionStatus.PROCESSING,
            input={"text": "y"},
            run_input={"text": "y", "n": 1, "delay": 0.0, "mode": "ok"},
        )
    )
    store.insert(PredictionRecord(id="noinput", status=PredictionStatus.STARTING, run_input=None))
    store.close()
    srv = start_server(data, EchoBackend(), max_rerun_attempts=2)
    try:
        tired = srv.client.get("/v1/predictions/tired").json()
        assert tired["status"] == "failed" and "not re-run" in tired["error"]
        assert srv.client.get("/v1/predictions/noinput").json()["status"] == "failed"
        deadline = time.monotonic() + 5
        while srv.client.get("/v1/predictions/again").json()["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert srv.client.get("/v1/predictions/again").json()["output"] == ["y0"]
    finally:
        srv.stop()


def test_retention_removes_data(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", EchoBackend(), retention_s=0.2)
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


def test_real_worker_file_input_and_validation(data_dir: Path) -> None:
    """The Runner adapter: a file uploaded with the replicate client reaches the child as a local path."""
    import io

    import replicate
    from replicate.exceptions import ReplicateError

    srv = ServeProcess(data_dir)
    try:
        srv.wait_ready()
        client = replicate.Client(api_token="t", base_url=srv.url)
        version = client.models.get("acme/echo").latest_version
        assert version is not None
        out = client.run(f"acme/echo:{version.id}", input={"text": "f", "file": io.BytesIO(b"12345")})
        assert list(out) == ["5"]
        with pytest.raises(ReplicateError) as err:
            client.predictions.create(version=version.id, input={"n": 2})
        assert err.value.status == 422
    finally:
        srv.close()
