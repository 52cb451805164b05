"""`StoreWriter`: the hot path's writes batched off the event loop, on real stores (SQLite here, as the writer
sees only the `Store` protocol; PostgreSQL through `Serving` at the end and in tests/store)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from cocina.serving import AdmissionRequest, Serving
from cocina.serving.writes import StoreWriter
from cocina.store import PredictionRecord, PredictionStatus, SQLiteStore, StoreError, Write

from .conftest import config, echo


def _rec(pid: str) -> PredictionRecord:
    return PredictionRecord(
        id=pid, model="acme/echo", version="v1", lease_owner="me", lease_expires_at=time.time() + 30
    )


class SlowInserts(SQLiteStore):
    """A batch with an acceptance in it takes 0.3 s: long enough for a later write to overtake it if let."""

    def write_many(self, writes: Sequence[Write]) -> list[bool | StoreError]:
        if any(w.insert for w in writes):
            time.sleep(0.3)
        return super().write_many(writes)


class Outage(SQLiteStore):
    down = True

    def write_many(self, writes: Sequence[Write]) -> list[bool | StoreError]:
        if self.down:
            raise StoreError("PostgreSQL at db:5432 is unavailable: connection refused")
        return super().write_many(writes)


async def test_concurrent_writes_share_batches(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    writer = StoreWriter(store, threads=1)
    recs = [_rec(f"p{i}") for i in range(50)]
    assert await asyncio.gather(*(writer.insert(r) for r in recs)) == [True] * 50
    # The first write goes out alone at once; the 49 made meanwhile wait for it and go out together.
    assert (writer.written_writes, writer.written_batches) == (50, 2)
    for r in recs:
        r.status = PredictionStatus.SUCCEEDED
    assert await asyncio.gather(*(writer.update(r, owner="me") for r in recs)) == [True] * 50
    assert writer.written_batches <= 4
    assert all(r.status is PredictionStatus.SUCCEEDED for r in store.page(None, 100))
    assert len({r.seq for r in recs}) == 50 and all(r.seq > 0 for r in recs)
    writer.close()
    store.close()


async def test_a_predictions_writes_never_overtake_each_other(tmp_path: Path) -> None:
    """With threads free, the update of a prediction whose acceptance is still being written waits for it
    (otherwise it would run first, find no row, and the prediction would be lost as taken over)."""
    store = SlowInserts(tmp_path / "p.db")
    writer = StoreWriter(store, threads=4)
    rec = _rec("a")
    running = PredictionRecord(**{**rec.__dict__, "status": PredictionStatus.PROCESSING})
    inserted, updated, other = await asyncio.gather(
        writer.insert(rec), writer.update(running, owner="me"), writer.insert(_rec("b"))
    )
    assert (inserted, updated, other) == (True, True, True)
    got = store.get("a")
    assert got is not None and got.status is PredictionStatus.PROCESSING
    writer.close()
    store.close()


async def test_a_failed_batch_fails_each_of_its_writes_and_the_next_succeeds(tmp_path: Path) -> None:
    store = Outage(tmp_path / "p.db")
    writer = StoreWriter(store, threads=2)
    outcomes = await asyncio.gather(*(writer.insert(_rec(f"d{i}")) for i in range(5)), return_exceptions=True)
    assert all(isinstance(o, StoreError) and "unavailable" in str(o) for o in outcomes)
    store.down = False
    assert await writer.insert(_rec("after")) is True
    assert store.get("d0") is None and store.get("after") is not None
    writer.close()
    store.close()


async def test_a_caller_that_goes_away_does_not_stop_the_write(tmp_path: Path) -> None:
    store = SlowInserts(tmp_path / "p.db")
    writer = StoreWriter(store, threads=1)
    task = asyncio.get_running_loop().create_task(writer.insert(_rec("gone")))
    await asyncio.sleep(0.05)
    task.cancel()
    assert await writer.insert(_rec("next")) is True  # queued behind it, written after it
    assert store.get("gone") is not None
    writer.close()
    store.close()


async def test_without_threads_each_write_is_a_call_on_the_event_loop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    writer = StoreWriter(store, threads=0)
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = store.insert

    def insert(rec: PredictionRecord) -> bool:
        seen.append(threading.get_ident())
        return original(rec)

    store.insert = insert  # type: ignore[method-assign]
    assert await writer.insert(_rec("x")) is True
    assert seen == [loop_thread] and writer.written_batches == 0
    writer.close()
    store.close()


@pytest.mark.timeout(120)
async def test_serving_on_postgres_batches_its_predictions_writes(tmp_path: Path, postgres_url: str) -> None:
    """Echo predictions through `Serving` on PostgreSQL, 16 at a time: every one succeeds, its row is final, and
    its three writes travelled in fewer batches than writes."""
    serving = Serving(config(tmp_path, store_url=postgres_url, concurrency=16, max_queue=64), [echo(warm=True)])
    await serving.start()
    try:
        await serving.wait_warm(60)

        async def one(i: int) -> str:
            admitted = await serving.admit(AdmissionRequest(surface="cog", input={"text": f"t{i}"}))
            final = await serving.wait(admitted.record.id, 30)
            assert final is not None and final.status is PredictionStatus.SUCCEEDED
            return admitted.record.id

        ids = await asyncio.gather(*(one(i) for i in range(64)))
        writer = serving._ctx.writer
        assert writer is not None and writer.written_writes >= 3 * 64
        assert writer.written_batches < writer.written_writes
        for pid in ids:
            row = serving.store.get(pid)
            assert row is not None and row.status is PredictionStatus.SUCCEEDED
    finally:
        await serving.drain(5)
