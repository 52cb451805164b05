"""Leases without HTTP: who is known dead, reclaiming, renewing, and a server that lost its lease stopping."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from cocina.serving import AdmissionRequest, Serving
from cocina.serving.recovery import is_dead_local_owner, new_owner_id
from cocina.store import PredictionRecord, PredictionStatus
from tests.serving.conftest import config, echo


def test_owner_ids_and_who_is_dead() -> None:
    me = new_owner_id()
    boot, host, pid, token = me.split(":")
    assert int(pid) == os.getpid() and len(token) == 8 and new_owner_id() != me
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = f"{boot}:{host}:{finished.stdout.strip()}:abcd1234"
    assert is_dead_local_owner(gone, me)  # same machine, same boot, process gone
    assert is_dead_local_owner(f"{boot}:{host}:{pid}:00000000", me)  # our pid in an earlier life
    assert not is_dead_local_owner(me, me)
    assert not is_dead_local_owner(f"{boot}:{host}:1:abcd1234", me)  # a live process (init)
    assert not is_dead_local_owner(f"otherboot:{host}:{finished.stdout.strip()}:x", me)  # another machine
    assert not is_dead_local_owner("not-an-owner", me)


async def test_leases_are_renewed_while_the_server_lives(tmp_path: Path) -> None:
    s = Serving(config(tmp_path, lease_s=0.4), [echo(warm=True)])
    await s.start()
    try:
        rec = (await s.admit(AdmissionRequest(surface="cog", input={"text": "s", "n": 20, "delay": 0.05}))).record
        first = s.store.get(rec.id).lease_expires_at  # type: ignore[union-attr]
        await asyncio.sleep(0.5)
        assert s.store.get(rec.id).lease_expires_at > first  # type: ignore[union-attr, operator]
        final = await s.wait(rec.id, 30)
        assert final is not None and final.status is PredictionStatus.SUCCEEDED and len(final.output) == 20
    finally:
        await s.drain(1.0)


async def test_a_server_that_lost_its_lease_stops_and_writes_nothing(tmp_path: Path) -> None:
    """Another server took the prediction over (this one looked dead): this one abandons it unwritten."""
    s = Serving(config(tmp_path, lease_s=60), [echo(warm=True)])
    await s.start()
    try:
        rec = (await s.admit(AdmissionRequest(surface="cog", input={"text": "s", "n": 100, "delay": 0.05}))).record
        for _ in range(500):
            if s.store.get(rec.id).status is PredictionStatus.PROCESSING:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.02)
        theirs = s.store.get(rec.id)
        assert theirs is not None
        stolen = PredictionRecord(**{**theirs.__dict__, "lease_owner": "another-server", "logs": "theirs"})
        s.store.update(stolen)
        await asyncio.sleep(1.2)  # past the next output flush
        after = s.store.get(rec.id)
        assert after is not None and after.lease_owner == "another-server" and after.logs == "theirs"
        assert after.status is PredictionStatus.PROCESSING  # not finished by us
        assert rec.id not in s.book.active and s.models.default.num_running == 0
    finally:
        await s.drain(1.0)


async def test_reclaim_resumes_expired_predictions_of_our_models(tmp_path: Path) -> None:
    s = Serving(config(tmp_path), [echo(warm=True)])
    await s.start()
    try:
        run = {"text": "r", "n": 2, "delay": 0.0, "mode": "ok"}
        s.store.insert(
            PredictionRecord(
                id="orphan", model="acme/echo", run_input=run, lease_owner="x", lease_expires_at=time.time() - 1
            )
        )
        assert s.leases.reclaim() == 1
        final = await s.wait("orphan", 30)
        assert final is not None and final.status is PredictionStatus.SUCCEEDED and final.output == ["r0", "r1"]
        assert final.attempts == 1 and final.lease_owner == s.owner
        assert s.leases.reclaim() == 0
    finally:
        await s.drain(1.0)
