"""The runtime: server lifecycle, a bounded queue, workers feeding the backend, and event fan-out.

Every prediction goes through `submit` (validate, bound check, durable insert, enqueue). `concurrency` workers take
predictions off the queue and run them on the backend; each event is applied to the record, appended to the
prediction's event list (read by SSE subscribers and `wait`), announced to its webhook channel, and written to the
store (state changes at once, output/log progress at most every `flush_interval_s`).

Lifecycle (`ServerState`): STARTING -> READY | SETUP_FAILED; `drain()` -> DRAINING -> STOPPED. Recovery runs first:
predictions a previous life left `starting`/`processing` are re-queued, or failed with a clear error when they
cannot be re-run (no stored input, or re-run too often) — nothing stays stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cocina.server.backend import (
    Done,
    Log,
    Output,
    PredictionStatus,
    PredictorBackend,
    SetupInfo,
    SetupStatus,
)
from cocina.server.errors import QueueFull, Unavailable
from cocina.server.files import FileStore, new_id
from cocina.server.settings import ServerSettings
from cocina.server.store import PredictionRecord, PredictionStore, utc_now
from cocina.server.webhooks import WebhookChannel, WebhookSender

log = logging.getLogger("cocina.server.runtime")


class ServerState(enum.Enum):
    STARTING = "STARTING"
    READY = "READY"
    SETUP_FAILED = "SETUP_FAILED"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


class CancelReason(enum.Enum):
    USER = "user"  # POST .../cancel
    DEADLINE = "deadline"  # Cancel-After: the prediction ends `canceled`
    TIMEOUT = "timeout"  # the server's per-prediction deadline: the prediction ends `failed`
    SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class StreamEvent:
    """One event of a prediction, in order: start, log, output, completed."""

    kind: str
    data: Any = None


@dataclass
class ActivePrediction:
    """A prediction that is queued or running (or just finished), with its event list for subscribers."""

    record: PredictionRecord
    events: list[StreamEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    webhook: WebhookChannel | None = None
    cancel_reason: CancelReason | None = None
    consume_task: asyncio.Task[Done] | None = None
    last_flush: float = 0.0
    num_outputs: int = 0


Renderer = Callable[[PredictionRecord], dict[str, Any]]

_RECENT_MAX = 256  # finished predictions whose full event lists stay in memory for late SSE subscribers


class Runtime:
    """Runs predictions for the API surfaces. Create, `await start()`, and `await drain(grace)` at the end."""

    flush_interval_s = 0.5
    cancel_grace_s = 10.0  # after asking the backend to cancel, how long before the prediction is given up

    def __init__(
        self,
        settings: ServerSettings,
        store: PredictionStore,
        backend: PredictorBackend,
        files: FileStore,
        webhooks: WebhookSender,
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.files = files
        self.webhooks = webhooks
        self.state = ServerState.STARTING
        self.setup: SetupInfo | None = None
        self.setup_started_at = utc_now()
        self.iterator_output = False
        self.renderers: dict[str, Renderer] = {}
        # Called with each prediction that ends (metrics); an observer that raises is logged, never fatal.
        self.finish_observers: list[Callable[[PredictionRecord], None]] = []
        self._active: dict[str, ActivePrediction] = {}
        self._recent: OrderedDict[str, ActivePrediction] = OrderedDict()
        self._queue: deque[str] = deque()
        self._running: set[str] = set()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._predict_times: deque[float] = deque(maxlen=32)
        self._ready = asyncio.Event()
        self.concurrency = self.settings.concurrency or 1  # settled when setup succeeds

    # ---- lifecycle
    # -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover the store, then run the backend's setup in the background (health says STARTING
        meanwhile)."""
        self._recover()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._setup()))
        if self.settings.retention_s is not None:
            self._tasks.append(loop.create_task(self._retention_loop(self.settings.retention_s)))

    async def wait_ready(self, timeout_s: float | None = None) -> ServerState:
        """Wait until setup has ended (READY or SETUP_FAILED)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self.state

    async def _setup(self) -> None:
        try:
            info = await self.backend.start()
        except Exception as exc:
            # A backend that raises instead of reporting a failed setup still must not leave health at
            # STARTING.
            log.exception("backend setup raised")
            info = SetupInfo(
                SetupStatus.FAILED,
                logs="",
                started_at=self.setup_started_at,
                completed_at=utc_now(),
                error=f"setup raised {type(exc).__name__}",
            )
        self.setup = info
        if self.state is not ServerState.STARTING:
            self._ready.set()
            return  # drained while setting up
        if info.status is SetupStatus.SUCCEEDED:
            output = self.backend.openapi_schema.get("components", {}).get("schemas", {}).get("Output", {})
            self.iterator_output = output.get("x-cog-array-type") == "iterator"
            self.concurrency = self.settings.concurrency or max(1, self.backend.max_concurrency)
            self.state = ServerState.READY
            loop = asyncio.get_running_loop()
            for _ in range(self.concurrency):
                self._tasks.append(loop.create_task(self._worker()))
        else:
            self.state = ServerState.SETUP_FAILED
            for pid in list(self._queue):
                self._queue.remove(pid)
                active = self._active.get(pid)
                if active is not None:
                    self._finish(
                        active, PredictionStatus.FAILED, f"Setup failed: {info.error or 'see setup logs'}"
                    )
        self._ready.set()

    def _recover(self) -> None:
        for rec in self.store.unfinished():
            if rec.run_input is None or rec.attempts >= self.settings.max_rerun_attempts:
                rec.status = PredictionStatus.FAILED
                rec.error = (
                    "The server stopped while this prediction was running and it was not re-run "
                    f"(re-runs: {rec.attempts} of at most {self.settings.max_rerun_attempts})."
                )
                rec.completed_at = utc_now()
                self.store.update(rec)
                continue
            # Re-run from scratch: partial output and logs of the lost run would mislead.
            rec.status = PredictionStatus.STARTING
            rec.output = None
            rec.logs = ""
            rec.error = None
            rec.started_at = None
            rec.attempts += 1
            self.store.update(rec)
            active = ActivePrediction(rec)
            self._active[rec.id] = active
            self._attach_webhook(active)
            self._queue.append(rec.id)
        if self._queue:
            log.info("re-queued %d predictions from a previous run", len(self._queue))

    async def drain(self, grace_s: float) -> None:
        """Stop accepting; cancel queued predictions; let running ones finish within `grace_s`, cancel the
        rest."""
        if self.state in (ServerState.DRAINING, ServerState.STOPPED):
            return
        self.state = ServerState.DRAINING
        self._ready.set()
        for pid in list(self._queue):
            self._queue.remove(pid)
            active = self._active.get(pid)
            if active is not None:
                active.cancel_reason = CancelReason.SHUTDOWN
                self._finish(
                    active, PredictionStatus.CANCELED, "The server shut down before this prediction ran."
                )
        running = [a for pid in self._running if (a := self._active.get(pid)) is not None]
        if running:
            await asyncio.wait([asyncio.ensure_future(a.done.wait()) for a in running], timeout=grace_s)
        late = [a for a in running if not a.done.is_set()]
        for active in late:
            active.cancel_reason = CancelReason.SHUTDOWN
        await asyncio.gather(
            *(self._cancel_running(a, force_after_s=min(self.cancel_grace_s, 5.0)) for a in late)
        )
        if late:
            # Let the workers record how each canceled prediction ended before they are stopped.
            await asyncio.wait([asyncio.ensure_future(a.done.wait()) for a in late], timeout=1.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Belt and braces: nothing this process accepted may stay non-terminal in the store.
        for active in list(self._active.values()):
            if not active.record.status.is_terminal:
                self._finish(active, PredictionStatus.FAILED, "The server shut down.")
        with contextlib.suppress(Exception):
            await self.backend.shutdown(grace_s=1.0)
        await self.webhooks.aclose()
        self.state = ServerState.STOPPED

    # ---- health
    # ----------------------------------------------------------------------------------------------

    @property
    def queue_full(self) -> bool:
        return len(self._queue) + len(self._running) >= self.concurrency + self.settings.max_queue

    def health(self) -> dict[str, Any]:
        """Cog's `/health-check` body."""
        status = {
            ServerState.STARTING: "STARTING",
            ServerState.READY: "BUSY" if self.queue_full else "READY",
            ServerState.SETUP_FAILED: "SETUP_FAILED",
            ServerState.DRAINING: "BUSY",
            ServerState.STOPPED: "DEFUNCT",
        }[self.state]
        setup: dict[str, Any] = {
            "started_at": self.setup_started_at,
            "completed_at": None,
            "status": None,
            "logs": "",
        }
        if self.setup is not None:
            setup = {
                "started_at": self.setup.started_at or self.setup_started_at,
                "completed_at": self.setup.completed_at,
                "status": self.setup.status.value,
                "logs": self.setup.logs,
            }
        return {"status": status, "setup": setup}

    @property
    def num_queued(self) -> int:
        return len(self._queue)

    @property
    def num_running(self) -> int:
        return len(self._running)

    # ---- submitting
    # ------------------------------------------------------------------------------------------

    def check_accepting(self) -> None:
        """Raise `Unavailable` unless predictions can be accepted now."""
        if self.state is ServerState.STARTING:
            # Not queued: the input cannot be validated (422) before setup has produced the schema, and a model
            # load can outlast any client's wait. Retry-After lets clients poll, as they do /health-check.
            raise Unavailable("The model is still setting up.", headers={"Retry-After": "1"})
        if self.state is ServerState.SETUP_FAILED:
            error = self.setup.error if self.setup is not None else None
            cause = f": {error.splitlines()[0]}" if error else ""
            raise Unavailable(f"The model's setup failed{cause}. See /health-check for its logs.")
        if self.state is not ServerState.READY:
            raise Unavailable("The server is shutting down.")

    def submit(
        self,
        raw_input: dict[str, Any],
        *,
        surface: str,
        prediction_id: str | None = None,
        webhook: str | None = None,
        webhook_events_filter: list[str] | None = None,
        deadline: float | None = None,
    ) -> tuple[PredictionRecord, bool]:
        """Accept a prediction; returns (record, created). An existing id returns that prediction (idempotent
        PUT).

        Raises `Unavailable`, `InvalidInput` (from the backend's validator) or `QueueFull`.
        """
        if prediction_id is not None:
            existing = self.get(prediction_id)
            if existing is not None:
                return existing, False
        self.check_accepting()
        run_input = self.backend.validate(raw_input)
        if self.queue_full:
            raise QueueFull(self._retry_after_s())
        rec = PredictionRecord(
            id=prediction_id or new_id(),
            surface=surface,
            input=raw_input,
            run_input=run_input,
            webhook=webhook,
            webhook_events_filter=list(webhook_events_filter or []),
            deadline=deadline,
        )
        if not self.store.insert(rec):
            # Another request with this id won the race since the check above.
            existing = self.get(rec.id)
            assert existing is not None
            return existing, False
        active = ActivePrediction(rec)
        self._active[rec.id] = active
        self._attach_webhook(active)
        self._queue.append(rec.id)
        self._wakeup.set()
        return rec, True

    def _attach_webhook(self, active: ActivePrediction) -> None:
        rec = active.record
        if rec.webhook:
            renderer = self.renderers.get(rec.surface)
            if renderer is not None:
                active.webhook = self.webhooks.channel(
                    rec.webhook, rec.webhook_events_filter, lambda: renderer(rec)
                )

    def _retry_after_s(self) -> int:
        mean = sum(self._predict_times) / len(self._predict_times) if self._predict_times else 1.0
        waiting = len(self._queue) + 1
        return max(1, math.ceil(mean * waiting / self.concurrency))

    # ---- reading
    # ---------------------------------------------------------------------------------------------

    def get(self, prediction_id: str) -> PredictionRecord | None:
        """The prediction as it stands (in memory if active, else from the store)."""
        active = self._active.get(prediction_id) or self._recent.get(prediction_id)
        if active is not None:
            return active.record
        return self.store.get(prediction_id)

    async def wait(self, prediction_id: str, timeout_s: float | None) -> PredictionRecord | None:
        """Wait (up to `timeout_s`) for the prediction to finish; returns it as it stands then."""
        active = self._active.get(prediction_id)
        if active is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(active.done.wait(), timeout_s)
        return self.get(prediction_id)

    async def events(self, prediction_id: str) -> AsyncIterator[StreamEvent]:
        """Every event of the prediction from its start, live, ending with `completed`."""
        active = self._active.get(prediction_id) or self._recent.get(prediction_id)
        if active is None:
            rec = self.store.get(prediction_id)
            if rec is None:
                return
            for ev in self._replay(rec):
                yield ev
            return
        i = 0
        while True:
            changed = active.changed
            while i < len(active.events):
                ev = active.events[i]
                i += 1
                yield ev
                if ev.kind == "completed":
                    return
            await changed.wait()

    def _replay(self, rec: PredictionRecord) -> list[StreamEvent]:
        events = [StreamEvent("start")]
        if rec.logs:
            events.append(StreamEvent("log", {"data": rec.logs, "source": "stdout"}))
        if rec.output is not None:
            chunks = rec.output if self.iterator_output and isinstance(rec.output, list) else [rec.output]
            events += [StreamEvent("output", {"chunk": c, "index": i}) for i, c in enumerate(chunks)]
        if rec.status.is_terminal:
            events.append(StreamEvent("completed"))
        return events

    # ---- cancel
    # ----------------------------------------------------------------------------------------------

    async def cancel(self, prediction_id: str) -> PredictionRecord | None:
        """Cancel a queued or running prediction; returns it as it stands (None if unknown)."""
        active = self._active.get(prediction_id)
        if active is None:
            return self.get(prediction_id)
        if prediction_id in self._queue:
            self._queue.remove(prediction_id)
            active.cancel_reason = CancelReason.USER
            self._finish(active, PredictionStatus.CANCELED, None)
        elif prediction_id in self._running and active.cancel_reason is None:
            active.cancel_reason = CancelReason.USER
            asyncio.get_running_loop().create_task(
                self._cancel_running(active, force_after_s=self.cancel_grace_s)
            )
        return active.record

    async def _cancel_running(self, active: ActivePrediction, *, force_after_s: float) -> None:
        try:
            await self.backend.cancel(active.record.id)
        except Exception:
            log.exception("backend cancel failed for %s", active.record.id)
        consume = active.consume_task
        if consume is None:
            return
        await asyncio.wait({consume}, timeout=force_after_s)
        if not consume.done():
            # The backend did not stop: give the prediction up rather than leave it running for ever.
            consume.cancel()

    # ---- running
    # ---------------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            pid = self._queue.popleft()
            active = self._active.get(pid)
            if active is None or active.record.status.is_terminal:
                continue
            self._running.add(pid)
            try:
                await self._run(active)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("prediction %s: runtime error", pid)
                if not active.record.status.is_terminal:
                    self._finish(
                        active, PredictionStatus.FAILED, "Internal error while running the prediction."
                    )
            finally:
                self._running.discard(pid)

    def _deadline_s(self, rec: PredictionRecord) -> tuple[float | None, CancelReason]:
        timeout = self.settings.prediction_timeout_s
        if rec.deadline is not None:
            left = max(0.0, rec.deadline - time.time())
            if timeout is None or left < timeout:
                return left, CancelReason.DEADLINE
        return timeout, CancelReason.TIMEOUT

    async def _run(self, active: ActivePrediction) -> None:
        rec = active.record
        rec.status = PredictionStatus.PROCESSING
        rec.started_at = utc_now()
        started = time.monotonic()
        self.store.update(rec)
        self._emit(active, "start")
        inputs = self.files.localize_inputs(rec.run_input or {})
        consume = asyncio.get_running_loop().create_task(self._consume(active, inputs))
        active.consume_task = consume
        deadline_s, reason = self._deadline_s(rec)
        try:
            try:
                done = await asyncio.wait_for(asyncio.shield(consume), deadline_s)
            except TimeoutError:
                if active.cancel_reason is None:
                    active.cancel_reason = reason
                await self._cancel_running(active, force_after_s=self.cancel_grace_s)
                done = await consume
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                consume.cancel()
                raise  # the worker itself is being stopped
            done = Done(PredictionStatus.CANCELED, "The predictor did not stop when canceled.")
        status, error = done.status, done.error
        if active.cancel_reason is CancelReason.TIMEOUT:
            status = PredictionStatus.FAILED
            error = f"Prediction timed out after {self.settings.prediction_timeout_s} seconds."
        elif active.cancel_reason is CancelReason.SHUTDOWN and status is PredictionStatus.CANCELED:
            error = error or "The server shut down while this prediction was running."
        if self.iterator_output and rec.output is None and status is PredictionStatus.SUCCEEDED:
            # An iterator that yielded nothing (a model that stops at once) produced an empty list, as in Cog;
            # `null` would make clients that iterate the output fail.
            rec.output = []
        predict_time = done.predict_time if done.predict_time else time.monotonic() - started
        self._predict_times.append(predict_time)
        self._finish(active, status, error, predict_time)

    async def _consume(self, active: ActivePrediction, inputs: dict[str, Any]) -> Done:
        rec = active.record
        stream = self.backend.predict(inputs, rec.id)
        try:
            async for ev in stream:
                if isinstance(ev, Log):
                    rec.logs += ev.data
                    self._emit(active, "log", {"data": ev.data, "source": ev.source})
                elif isinstance(ev, Output):
                    value = self.files.publish_outputs(ev.value, self.settings.output_inline_max_bytes)
                    if self.iterator_output:
                        rec.output = [*(rec.output or []), value]
                        self._emit(active, "output", {"chunk": value, "index": active.num_outputs})
                        active.num_outputs += 1
                    else:
                        rec.output = value
                        self._emit(active, "output", {"chunk": value, "index": 0})
                elif isinstance(ev, Done):
                    return ev
                now = time.monotonic()
                if now - active.last_flush >= self.flush_interval_s:
                    active.last_flush = now
                    self.store.update(rec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("prediction %s: backend raised", rec.id)
            return Done(PredictionStatus.FAILED, f"The predictor backend failed ({type(exc).__name__}).")
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        return Done(PredictionStatus.FAILED, "The predictor ended without a result.")

    def _emit(self, active: ActivePrediction, kind: str, data: Any = None) -> None:
        active.events.append(StreamEvent(kind, data))
        changed, active.changed = active.changed, asyncio.Event()
        changed.set()
        if active.webhook is not None:
            active.webhook.notify({"log": "logs"}.get(kind, kind))

    def _finish(
        self,
        active: ActivePrediction,
        status: PredictionStatus,
        error: str | None,
        predict_time: float | None = None,
    ) -> None:
        rec = active.record
        rec.status = status
        rec.error = error
        rec.completed_at = utc_now()
        metrics = dict(rec.metrics)
        if predict_time is not None:
            metrics["predict_time"] = round(predict_time, 6)
        created = datetime.fromisoformat(rec.created_at)
        metrics["total_time"] = round((datetime.now(UTC) - created).total_seconds(), 6)
        rec.metrics = metrics
        self.store.update(rec)
        self._emit(active, "completed")
        active.done.set()
        self.notify_finished(rec)
        self._active.pop(rec.id, None)
        self._recent[rec.id] = active
        while len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)

    def notify_finished(self, rec: PredictionRecord) -> None:
        """Tell the observers that `rec` ended (the OpenAI surface calls this for its requests too)."""
        for observer in self.finish_observers:
            try:
                observer(rec)
            except Exception:
                log.exception("prediction observer failed")

    # ---- retention
    # -------------------------------------------------------------------------------------------

    def apply_retention(self) -> int:
        """Remove inputs and outputs of predictions completed more than `retention_s` ago; how many."""
        if self.settings.retention_s is None:
            return 0
        cutoff = (datetime.now(UTC) - timedelta(seconds=self.settings.retention_s)).isoformat()
        n = self.store.remove_data_before(cutoff)
        if n:
            for pid in [
                p for p, a in self._recent.items() if a.record.completed_at and a.record.completed_at < cutoff
            ]:
                self._recent.pop(pid, None)
        return n

    async def _retention_loop(self, retention_s: float) -> None:
        period = min(max(retention_s / 4, 0.05), 60.0)
        while True:
            try:
                self.apply_retention()
            except Exception:
                log.exception("retention pass failed")
            await asyncio.sleep(period)
