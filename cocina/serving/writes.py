"""`StoreWriter`: the hot path's store writes (each prediction's acceptance, "running" write and final state).

On a store that takes calls from several threads (PostgreSQL), the writes are queued from the event loop and
written in batches, each batch one transaction (`Store.write_many`: one round trip, one commit) on a thread of its
own, with at most `threads` batches in flight. While a batch is being written the next one gathers, so under load
the commits of many predictions are shared and the event loop never waits on the database; alone, a write goes out
at once in a batch of one. Writes of one prediction stay in order: a write waits while an earlier write of the
same prediction is in a batch in flight (within a batch, writes run in the order they were made).

Without threads (SQLite, whose calls are short and local), each write is a plain call on the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from cocina.store import PredictionRecord, Store, StoreError, Write

MAX_BATCH = 64  # writes in one transaction at most


class StoreWriter:
    """`await insert(rec)` / `await update(rec, owner=...)`: what `Store.insert` / `Store.update` return, or their
    `StoreError`. `close()` once nothing more is written."""

    def __init__(self, store: Store, threads: int) -> None:
        self.store = store
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="cocina-store") if threads > 0 else None
        self._pending: list[tuple[Write, asyncio.Future[bool]]] = []
        self._in_flight: set[str] = set()  # ids of the predictions in batches being written
        self._running = 0  # batches in flight
        self._batches: set[asyncio.Task[None]] = set()  # their tasks (kept referenced while they run)
        self.written_batches = 0  # how many batches, and writes in them, went out (for tests and the benchmark)
        self.written_writes = 0

    async def insert(self, rec: PredictionRecord) -> bool:
        return await self._submit(Write(rec, insert=True))

    async def update(self, rec: PredictionRecord, *, owner: str | None = None) -> bool:
        return await self._submit(Write(rec, owner=owner))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def _submit(self, write: Write) -> bool:
        if self._pool is None:
            if write.insert:
                return self.store.insert(write.record)
            return self.store.update(write.record, owner=write.owner)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._pending and self._running < self.threads:
            batch: list[tuple[Write, asyncio.Future[bool]]] = []
            rest: list[tuple[Write, asyncio.Future[bool]]] = []
            for item in self._pending:
                if item[0].record.id in self._in_flight or len(batch) >= MAX_BATCH:
                    rest.append(item)
                else:
                    batch.append(item)
            if not batch:
                return  # every pending write waits for an earlier write of its prediction
            self._pending = rest
            ids = {w.record.id for w, _ in batch}
            self._in_flight |= ids
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._write(batch, ids))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _write(self, batch: list[tuple[Write, asyncio.Future[bool]]], ids: set[str]) -> None:
        writes = [w for w, _ in batch]
        outcomes: list[bool | StoreError]
        try:
            outcomes = await asyncio.get_running_loop().run_in_executor(self._pool, self.store.write_many, writes)
        except StoreError as exc:
            outcomes = [exc] * len(batch)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # a bug below: every waiter hears of it as a failed write, none waits for ever
            outcomes = [StoreError(f"the store write failed: {type(exc).__name__}: {exc}")] * len(batch)
        finally:
            self._in_flight -= ids
            self._running -= 1
            self.written_batches += 1
            self.written_writes += len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # its caller went away; the write was made all the same
            if isinstance(outcome, StoreError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        self._start_batches()
