"""A model's runtime: its bounded queue, the dispatcher that feeds its process, and each prediction's events.

Admission inserts a prediction's row, then `enqueue`s it here. The dispatcher starts queued predictions while
fewer than `concurrency` run and the model is READY; it asks for the model to be loaded when there is work and
it is not; when its setup failed, the queued predictions fail with that error. Each running prediction's events
are applied to its record, appended to its event list (read by streams and `wait`), announced to its webhook,
and written to the store (state changes at once, output and logs at most every `flush_interval_s`), always
fenced by this server's lease on the row.

A training (a record of kind `training`, run by the model's `train` runtime) that succeeds becomes a new
version of its destination model before it is called succeeded (`RuntimeContext.publish_training`); its output
is then `{"version", "weights"}`, as on Replicate.

`PredictionBook` holds the predictions of every model that are active (queued or running) or recently
finished, so that any API can find, follow or cancel a prediction by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cocina.serving.config import ServingConfig
from cocina.serving.errors import ModelUnavailable, QueueFull
from cocina.serving.events import (
    ChoiceFinished,
    Completed,
    LogChunk,
    MetricChunk,
    OutputChunk,
    PredictionEvent,
    Started,
    TokenChunk,
    TokenLogprob,
)
from cocina.serving.files import FileStore, OutputUploadError
from cocina.serving.gate import Gate, OutputFilter, Ticket
from cocina.serving.jobs import GenerationJob, Job, PredictJob
from cocina.serving.model import ModelState, ServedModel
from cocina.serving.spec import ModelSpec
from cocina.serving.webhooks import WebhookChannel, WebhookSender
from cocina.serving.writes import StoreWriter
from cocina.store import PredictionRecord, PredictionStatus, Store, StoreError, utc_now
from cocina.worker.events import Done, GenerationEnd, Log, Metric, Output, Tokens

log = logging.getLogger("cocina.serving.runtime")

_RECENT_MAX = 256  # finished predictions whose full event lists stay in memory for late stream subscribers


class CancelReason(enum.Enum):
    USER = "user"  # a cancel request: the prediction ends `canceled`
    DEADLINE = "deadline"  # Cancel-After: `canceled`
    TIMEOUT = "timeout"  # the server's per-prediction deadline: `failed`
    CLIENT_GONE = "client_gone"  # the client of an OpenAI request went away: `canceled`
    SHUTDOWN = "shutdown"
    LEASE_LOST = "lease_lost"  # another server took the prediction over: stop, write nothing more


Renderer = Callable[[PredictionRecord], dict[str, Any]]
# A succeeded training's output (the worker's, file markers kept) -> its published output ({"version", "weights"});
# raises `TrainingFailed` when no version could be made of it.
TrainingPublisher = Callable[[PredictionRecord, ModelSpec, Any], Awaitable[Any]]


class TrainingFailed(Exception):
    """A training ran, but no version could be made of what it returned; the message says why."""


@dataclass
class ActivePrediction:
    """A prediction that is queued or running (or just finished), with its event list for subscribers."""

    record: PredictionRecord
    job: Job | None
    runtime: ModelRuntime
    events: list[PredictionEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    webhook: WebhookChannel | None = None
    cancel_reason: CancelReason | None = None
    task: asyncio.Task[None] | None = None  # the whole run
    consume: asyncio.Task[Any] | None = None  # the part that talks to the model's process
    last_flush: float = 0.0  # when partial output was last written (the "running" write counts)
    flush: asyncio.Task[None] | None = None  # the next write of partial output, waiting for its time or running
    unflushed: bool = False  # output made since the last write of partial output began
    num_outputs: int = 0
    raw_output: Any = None  # a training's output as the worker gave it (its weights still a local file)
    ticket: Ticket | None = None  # what the gate decided at admission
    filter: OutputFilter | None = None  # the gate's output scanners
    blocked: bool = False  # an output scanner stopped it


class PredictionBook:
    """Every model's active and recently finished predictions, by id; and who to tell when one ends."""

    def __init__(self) -> None:
        self.active: dict[str, ActivePrediction] = {}
        self.recent: OrderedDict[str, ActivePrediction] = OrderedDict()
        # Called with each prediction that ends (metrics); an observer that raises is logged, never fatal.
        self.finish_observers: list[Callable[[PredictionRecord], None]] = []

    def find(self, prediction_id: str) -> ActivePrediction | None:
        return self.active.get(prediction_id) or self.recent.get(prediction_id)

    def finished(self, active: ActivePrediction) -> None:
        rec = active.record
        for observer in self.finish_observers:
            try:
                observer(rec)
            except Exception:
                log.exception("prediction observer failed")
        self.active.pop(rec.id, None)
        self.recent[rec.id] = active
        while len(self.recent) > _RECENT_MAX:
            self.recent.popitem(last=False)


@dataclass
class RuntimeContext:
    """What every model's runtime shares: config, store, files, webhooks, the book, this server's lease."""

    config: ServingConfig
    store: Store
    files: FileStore
    webhooks: WebhookSender
    book: PredictionBook
    owner: str  # this server instance's lease owner id
    # The hot path's store writes (acceptance, "running", partial output, final state): batched off the event loop
    # on a store that takes calls from several threads, so that concurrent predictions share round trips and
    # commits; plain calls on the loop otherwise (SQLite).
    writer: StoreWriter
    renderers: dict[str, Renderer] = field(default_factory=dict)  # webhook bodies, by surface
    publish_training: TrainingPublisher | None = None  # None: this server keeps no trained versions
    gate: Gate | None = None  # the guard: what the store keeps of a record, and each prediction's end
    # Records whose last write the store refused (PostgreSQL restarting): written again until it takes them, so a
    # prediction that finished during an outage does not stay `processing` for ever.
    unwritten: dict[str, PredictionRecord] = field(default_factory=dict)


class ModelRuntime:
    """The queue and running predictions of one model. `start()`, then `enqueue`; `drain()` at the end."""

    flush_interval_s = 0.5
    cancel_grace_s = 10.0  # after asking the process to cancel, how long before the prediction is given up

    def __init__(self, model: ServedModel, ctx: RuntimeContext) -> None:
        self.model = model
        self.ctx = ctx
        self._queue: deque[str] = deque()
        self._running: set[str] = set()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._loader: asyncio.Task[None] | None = None
        self._predict_times: deque[float] = deque(maxlen=32)
        self.accepting = True
        model.on_change = self._wake.set

    # ---- lifecycle

    def start(self) -> None:
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())

    def wake(self) -> None:
        """Look again at the queue and the model (e.g. it was just marked warm)."""
        self._wake.set()

    @property
    def concurrency(self) -> int:
        return self.ctx.config.concurrency or self.model.max_concurrency

    @property
    def num_queued(self) -> int:
        return len(self._queue)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def idle(self) -> bool:
        return not self._queue and not self._running

    @property
    def queue_full(self) -> bool:
        return len(self._queue) + len(self._running) >= self.concurrency + self.ctx.config.max_queue

    def check_room(self) -> None:
        """`QueueFull` when one more prediction would overflow the bounded queue."""
        if self.queue_full:
            raise QueueFull(self._retry_after_s())

    def _retry_after_s(self) -> int:
        mean = sum(self._predict_times) / len(self._predict_times) if self._predict_times else 1.0
        waiting = len(self._queue) + 1
        return max(1, math.ceil(mean * waiting / self.concurrency))

    # ---- admitting

    def enqueue(
        self,
        rec: PredictionRecord,
        job: Job,
        ticket: Ticket | None = None,
        output_filter: OutputFilter | None = None,
    ) -> ActivePrediction:
        """Queue a prediction whose row is in the store."""
        active = ActivePrediction(rec, job, self, ticket=ticket, filter=output_filter)
        self.ctx.book.active[rec.id] = active
        self._attach_webhook(active)
        self._queue.append(rec.id)
        self._wake.set()
        return active

    def resume(self, rec: PredictionRecord) -> None:
        """A prediction reclaimed from an expired lease: re-run it from scratch, or fail it when it cannot be."""
        limit = self.ctx.config.max_rerun_attempts
        if rec.run_input is None or rec.attempts >= limit:
            rec.status = PredictionStatus.FAILED
            rec.error = (
                "The server stopped while this prediction was running and it was not re-run "
                f"(re-runs: {rec.attempts} of at most {limit}"
                + ("; it cannot be re-run without its client" if rec.run_input is None else "")
                + ")."
            )
            rec.completed_at = utc_now()
            if self.ctx.gate is not None:
                self.ctx.gate.finished(rec, None, None)
            self._write(rec)
            return
        # From scratch: the partial output and logs of the lost run would mislead.
        rec.status = PredictionStatus.STARTING
        rec.output = None
        rec.logs = ""
        rec.error = None
        rec.started_at = None
        rec.attempts += 1
        if self._write(rec):
            self.enqueue(rec, PredictJob(rec.run_input, dict(rec.context)))

    def _attach_webhook(self, active: ActivePrediction) -> None:
        rec = active.record
        renderer = self.ctx.renderers.get(rec.surface)
        if rec.webhook and renderer is not None:
            active.webhook = self.ctx.webhooks.channel(rec.webhook, rec.webhook_events_filter, lambda: renderer(rec))

    # ---- dispatching

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            state = self.model.state
            if self._queue:
                if state is ModelState.READY:
                    while self._queue and len(self._running) < self.concurrency:
                        self._start(self._queue.popleft())
                elif state is ModelState.UNLOADED:
                    self._request_load()
                elif state in (ModelState.FAILED, ModelState.STOPPED):
                    error = str(self.model.unavailable().message)
                    while self._queue:
                        active = self.ctx.book.active.get(self._queue.popleft())
                        if active is not None and not active.record.status.is_terminal:
                            self._finish(active, PredictionStatus.FAILED, error)
            elif self.model.warm and state is ModelState.UNLOADED and self.accepting:
                self._request_load()  # kept warm: reloaded at once after its process died
            await self._wake.wait()

    def _request_load(self) -> None:
        if self._loader is not None and not self._loader.done():
            return
        self._loader = asyncio.get_running_loop().create_task(self._load_or_fail())

    async def _load_or_fail(self) -> None:
        try:
            await self.model.request_load()
        except ModelUnavailable as exc:
            # No room to load it: the predictions waiting for it must not wait for ever.
            while self._queue:
                active = self.ctx.book.active.get(self._queue.popleft())
                if active is not None and not active.record.status.is_terminal:
                    self._finish(active, PredictionStatus.FAILED, exc.message)

    def _start(self, pid: str) -> None:
        active = self.ctx.book.active.get(pid)
        if active is None or active.record.status.is_terminal:
            return
        self._running.add(pid)
        active.task = asyncio.get_running_loop().create_task(self._run(active))

    async def _run(self, active: ActivePrediction) -> None:
        pid = active.record.id
        try:
            await self._run_one(active)
        except asyncio.CancelledError:
            # This task is the prediction's own: it ends here, whoever cancelled it.
            if active.cancel_reason is CancelReason.LEASE_LOST:
                self._abandon(active)
            elif not active.record.status.is_terminal:
                self._finish(active, PredictionStatus.CANCELED, "The server shut down while this prediction ran.")
        except Exception:
            log.exception("prediction %s: runtime error", pid)
            if not active.record.status.is_terminal:
                self._finish(active, PredictionStatus.FAILED, "Internal error while running the prediction.")
        finally:
            self._running.discard(pid)
            self._wake.set()

    def _deadline_s(self, rec: PredictionRecord) -> tuple[float | None, CancelReason]:
        timeout = self.ctx.config.prediction_timeout_s
        if rec.deadline is not None:
            left = max(0.0, rec.deadline - time.time())
            if timeout is None or left < timeout:
                return left, CancelReason.DEADLINE
        return timeout, CancelReason.TIMEOUT

    async def _run_one(self, active: ActivePrediction) -> None:
        rec = active.record
        rec.status = PredictionStatus.PROCESSING
        rec.started_at = utc_now()
        started = time.monotonic()
        active.last_flush = started
        if not await self._write_off_loop(rec):
            self._abandon(active)
            return
        self._emit(active, Started())
        job = active.job
        if isinstance(job, GenerationJob):
            work = self._generate(active, job)
        else:
            assert isinstance(job, PredictJob)
            work = self._predict(active, self.ctx.files.localize_inputs(job.inputs), job.context)
        consume = asyncio.get_running_loop().create_task(work)
        active.consume = consume
        deadline_s, reason = self._deadline_s(rec)
        try:
            try:
                status, error, predict_time = await asyncio.wait_for(asyncio.shield(consume), deadline_s)
            except TimeoutError:
                if active.cancel_reason is None:
                    active.cancel_reason = reason
                await self._stop(active, force_after_s=self.cancel_grace_s)
                status, error, predict_time = await consume
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                consume.cancel()
                raise  # the run itself is being stopped (shutdown, lease lost)
            # The process ignored the cancel and the prediction was given up (`_stop`).
            status, error, predict_time = PredictionStatus.CANCELED, "The predictor did not stop when canceled.", 0.0
        if active.cancel_reason is CancelReason.LEASE_LOST:
            self._abandon(active)
            return
        if active.cancel_reason is CancelReason.TIMEOUT:
            status = PredictionStatus.FAILED
            error = f"Prediction timed out after {self.ctx.config.prediction_timeout_s} seconds."
        elif active.cancel_reason is CancelReason.SHUTDOWN and status is PredictionStatus.CANCELED:
            error = error or "The server shut down while this prediction was running."
        elif active.cancel_reason is CancelReason.CLIENT_GONE and status is PredictionStatus.CANCELED:
            error = error or "The client disconnected."
        if isinstance(job, GenerationJob):
            rec.output = job.render(job) if status is PredictionStatus.SUCCEEDED else job.partial()
            rec.metrics = {
                **rec.metrics,
                "input_token_count": job.prompt_tokens,
                "output_token_count": job.completion_tokens,
            }
            if job.first_output_at is not None:
                rec.metrics["time_to_first_token"] = round(job.first_output_at - started, 6)
        elif self._iterator_output and rec.output is None and status is PredictionStatus.SUCCEEDED:
            # An iterator that yielded nothing produced an empty list, as in Cog: `null` would make clients
            # that iterate the output fail.
            rec.output = []
        if rec.kind == "training" and status is PredictionStatus.SUCCEEDED:
            status, error = await self._publish_training(active)
        predict_time = predict_time or time.monotonic() - started
        self._predict_times.append(predict_time)
        self._settle(active, status, error, predict_time)
        try:
            await asyncio.shield(self._write_off_loop(rec))
        finally:
            self._announce_finished(active)  # even if this run is being stopped meanwhile: nobody waits for ever

    async def _publish_training(self, active: ActivePrediction) -> tuple[PredictionStatus, str | None]:
        """Make the trained version (the training succeeds only once it exists)."""
        rec = active.record
        publish = self.ctx.publish_training
        if publish is None:
            return PredictionStatus.FAILED, "This server keeps no trained versions (it has no hub)."
        try:
            rec.output = await publish(rec, self.model.spec, active.raw_output)
        except TrainingFailed as exc:
            return PredictionStatus.FAILED, str(exc)
        except OutputUploadError as exc:
            return PredictionStatus.FAILED, str(exc)
        return PredictionStatus.SUCCEEDED, None

    @property
    def _iterator_output(self) -> bool:
        schema = self.model.schema or {}
        output = schema.get("components", {}).get("schemas", {}).get("Output", {})
        return bool(output.get("x-cog-array-type") == "iterator")

    async def _predict(
        self, active: ActivePrediction, inputs: dict[str, Any], context: dict[str, str]
    ) -> tuple[PredictionStatus, str | None, float]:
        rec = active.record
        iterator = self._iterator_output
        stream = self.model.predict(inputs, rec.id, context)
        try:
            async for ev in stream:
                if isinstance(ev, Log):
                    rec.logs += ev.data
                    self._emit(active, LogChunk(ev.data, ev.source))
                elif isinstance(ev, Metric):
                    self._emit(active, MetricChunk(ev.name, ev.value, ev.mode))
                elif isinstance(ev, Output):
                    if rec.kind == "training":
                        # Published once the trained version exists (`_publish_training`).
                        active.raw_output = ev.value
                        continue
                    try:
                        value = await self.ctx.files.publish_outputs(ev.value, self.ctx.config.output_inline_max_bytes)
                    except OutputUploadError as exc:
                        return PredictionStatus.FAILED, str(exc), 0.0
                    if active.filter is not None:
                        value, blocked = active.filter.value(value)
                        if blocked:
                            active.blocked = True
                            return PredictionStatus.FAILED, self._blocked_message(active), 0.0
                    if iterator:
                        rec.output = [*(rec.output or []), value]
                        self._emit(active, OutputChunk(value, active.num_outputs))
                        active.num_outputs += 1
                    else:
                        rec.output = value
                        self._emit(active, OutputChunk(value, 0))
                elif isinstance(ev, Done):
                    if ev.metrics:
                        rec.metrics = {**rec.metrics, **ev.metrics}
                    return PredictionStatus(ev.status.value), ev.error, ev.predict_time
                self._flush(active)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("prediction %s: the model's process failed", rec.id)
            return PredictionStatus.FAILED, f"The predictor failed ({type(exc).__name__}).", 0.0
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
        return PredictionStatus.FAILED, "The predictor ended without a result.", 0.0

    async def _generate(
        self, active: ActivePrediction, job: GenerationJob
    ) -> tuple[PredictionStatus, str | None, float]:
        """Every choice at once on the model's engine, merged into one ordered stream of events."""
        rec = active.record
        merged: asyncio.Queue[tuple[int, Tokens | GenerationEnd | BaseException]] = asyncio.Queue()

        async def pump(index: int) -> None:
            choice = job.choices[index]
            stream = self.model.generate(choice.prompt_ids, choice.options.to_params(), f"{rec.id}-{index}")
            try:
                async for ev in stream:
                    await merged.put((index, ev))
                    if isinstance(ev, GenerationEnd):
                        return
                await merged.put((index, GenerationEnd("error", error="the generation ended without finishing")))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await merged.put((index, exc))
            finally:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # type: ignore[attr-defined]

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(pump(i)) for i in range(len(job.choices))]
        pending = len(tasks)
        try:
            while pending:
                index, ev = await merged.get()
                choice = job.choices[index]
                if isinstance(ev, Tokens):
                    if choice.finish_reason is not None:
                        continue  # an output scanner ended this choice; its engine request is being closed
                    lps = tuple(
                        TokenLogprob(str(t), float(lp), tuple((str(a), float(p)) for a, p in top))
                        for t, lp, top in (ev.logprobs or [])
                    )
                    text = ev.text
                    choice.completion_tokens += len(ev.token_ids)
                    if active.filter is not None:
                        released, blocked = active.filter.text(index, text)
                        if released != text:
                            lps = ()  # the tokens' own strings would show what was held back or redacted
                        text = released
                        if blocked:
                            pending -= self._content_filtered(active, job, index, tasks)
                            continue
                    if job.first_output_at is None and text:
                        job.first_output_at = time.monotonic()
                    choice.text += text
                    choice.logprobs.extend(lps)
                    self._emit(active, TokenChunk(index, text, len(ev.token_ids), lps))
                elif isinstance(ev, GenerationEnd) and ev.reason in ("stop", "length"):
                    if choice.finish_reason is not None:
                        continue
                    if active.filter is not None:
                        rest, blocked = active.filter.flush(index)
                        if blocked:
                            pending -= self._content_filtered(active, job, index, tasks)
                            continue
                        if rest:
                            if job.first_output_at is None:
                                job.first_output_at = time.monotonic()
                            choice.text += rest
                            self._emit(active, TokenChunk(index, rest, 0, ()))
                    choice.finish_reason = ev.reason
                    choice.completion_tokens = ev.completion_tokens
                    pending -= 1
                    self._emit(active, ChoiceFinished(index, ev.reason, ev.completion_tokens))
                elif isinstance(ev, GenerationEnd) and ev.reason == "abort":
                    return PredictionStatus.CANCELED, None, 0.0
                elif isinstance(ev, GenerationEnd):
                    return PredictionStatus.FAILED, ev.error or "The generation failed.", 0.0
                else:
                    log.error("prediction %s: generation failed", rec.id, exc_info=ev)
                    return PredictionStatus.FAILED, f"The engine failed ({type(ev).__name__}).", 0.0
            return PredictionStatus.SUCCEEDED, None, 0.0
        except asyncio.CancelledError:
            if active.cancel_reason is not None:
                return PredictionStatus.CANCELED, None, 0.0
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _content_filtered(
        self, active: ActivePrediction, job: GenerationJob, index: int, tasks: list[asyncio.Task[None]]
    ) -> int:
        """An output scanner blocked a choice: it ends with OpenAI's `content_filter` and its generation stops
        (the engine frees its KV blocks). Returns 1 (the choice is no longer pending)."""
        choice = job.choices[index]
        choice.finish_reason = "content_filter"
        active.blocked = True
        tasks[index].cancel()
        self._emit(active, ChoiceFinished(index, "content_filter", choice.completion_tokens))
        return 1

    @staticmethod
    def _blocked_message(active: ActivePrediction) -> str:
        return "The output was blocked by the server's content scanners."

    # ---- events and records

    def _emit(self, active: ActivePrediction, event: PredictionEvent) -> None:
        active.events.append(event)
        changed, active.changed = active.changed, asyncio.Event()
        changed.set()
        if active.webhook is not None:
            kind = {Started: "start", LogChunk: "logs", OutputChunk: "output", Completed: "completed"}.get(type(event))
            if kind is not None:
                active.webhook.notify(kind)

    def _flush(self, active: ActivePrediction) -> None:
        """Partial output (and logs) reach the store at most every `flush_interval_s`, and never later than that
        after they were made (a follower on another replica reads them there): a write waits for its time in a
        task of its own, off the event loop's path, and takes the newest state when it goes."""
        active.unflushed = True
        if active.flush is None:
            delay = max(0.0, active.last_flush + self.flush_interval_s - time.monotonic())
            active.flush = asyncio.get_running_loop().create_task(self._flush_later(active, delay))

    async def _flush_later(self, active: ActivePrediction, delay: float) -> None:
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            if active.record.status.is_terminal:
                return  # the final write has it all
            active.last_flush = time.monotonic()
            active.unflushed = False
            if not await self._write_off_loop(active.record):
                self._lease_lost(active)
        finally:
            active.flush = None
        if active.unflushed and not active.record.status.is_terminal:
            self._flush(active)  # output made while the write was in flight: its own write, in its time

    def _write(self, rec: PredictionRecord) -> bool:
        """Write the record under this server's lease; False when another server has taken it over."""
        gate = self.ctx.gate
        try:
            kept = self.ctx.store.update(gate.persist(rec) if gate is not None else rec, owner=self.ctx.owner)
        except StoreError as exc:
            # The row keeps its last state until the store is back (`Serving` writes it again then); if this
            # server dies first, recovery settles it.
            if rec.id not in self.ctx.unwritten:
                log.error("prediction %s: the store failed: %s", rec.id, exc)
            self.ctx.unwritten[rec.id] = rec
            return True
        self.ctx.unwritten.pop(rec.id, None)
        if not kept:
            log.warning("prediction %s: another server has taken it over; this one stops", rec.id)
        return kept

    def _abandon(self, active: ActivePrediction) -> None:
        """Another server owns the prediction now: forget it here without writing (its owner finishes it)."""
        self.ctx.book.active.pop(active.record.id, None)
        active.done.set()

    def _lease_lost(self, active: ActivePrediction) -> None:
        if active.cancel_reason is None:
            active.cancel_reason = CancelReason.LEASE_LOST
            if active.task is not None:
                active.task.cancel()

    def _finish(
        self, active: ActivePrediction, status: PredictionStatus, error: str | None, predict_time: float | None = None
    ) -> None:
        self._settle(active, status, error, predict_time)
        self._write(active.record)
        self._announce_finished(active)

    def _settle(
        self, active: ActivePrediction, status: PredictionStatus, error: str | None, predict_time: float | None
    ) -> None:
        """Put the final state in the record, and settle it with the guard (its tokens, the audit log), before it
        is written."""
        rec = active.record
        if active.flush is not None and not active.flush.done():
            active.flush.cancel()  # the final write takes everything; one already made is ordered before it
        rec.status = status
        rec.error = error
        rec.completed_at = utc_now()
        metrics = dict(rec.metrics)
        if predict_time is not None:
            metrics["predict_time"] = round(predict_time, 6)
        created = datetime.fromisoformat(rec.created_at)
        metrics["total_time"] = round((datetime.now(UTC) - created).total_seconds(), 6)
        rec.metrics = metrics
        if self.ctx.gate is not None:
            job = active.job
            if isinstance(job, GenerationJob):
                used: int | None = job.prompt_tokens + job.completion_tokens
            else:  # a predictor that reports Replicate's token counts (cocina's LLMPredictor does) is charged them
                counts = [rec.metrics.get(k) for k in ("input_token_count", "output_token_count")]
                used = sum(int(c) for c in counts if isinstance(c, int | float)) or None
            try:
                self.ctx.gate.finished(rec, active.ticket, used)
            except Exception:
                log.exception("prediction %s: the guard failed at its end", rec.id)

    def _announce_finished(self, active: ActivePrediction) -> None:
        """After the final state is written: tell followers, waiters and the book."""
        self._emit(active, Completed(active.record.status))
        active.done.set()
        self.ctx.book.finished(active)

    async def _write_off_loop(self, rec: PredictionRecord) -> bool:
        """`_write`, with the store call on the store pool (a snapshot of the record travels: the loop may go on
        changing the live one)."""
        gate = self.ctx.gate
        snapshot = gate.persist(rec) if gate is not None else rec
        snapshot = dataclasses.replace(snapshot) if snapshot is rec else snapshot
        try:
            kept = await self.ctx.writer.update(snapshot, owner=self.ctx.owner)
        except StoreError as exc:
            if rec.id not in self.ctx.unwritten:
                log.error("prediction %s: the store failed: %s", rec.id, exc)
            self.ctx.unwritten[rec.id] = rec
            return True
        self.ctx.unwritten.pop(rec.id, None)
        if not kept:
            log.warning("prediction %s: another server has taken it over; this one stops", rec.id)
        return bool(kept)

    # ---- cancel

    def cancel(self, active: ActivePrediction, reason: CancelReason) -> None:
        """Cancel a queued or running prediction of this model (a running one stops in the background)."""
        pid = active.record.id
        if active.record.status.is_terminal or active.cancel_reason is not None:
            return
        active.cancel_reason = reason
        if pid in self._queue:
            self._queue.remove(pid)
            self._finish(
                active,
                PredictionStatus.CANCELED,
                "The client disconnected." if reason is CancelReason.CLIENT_GONE else None,
            )
        elif pid in self._running:
            asyncio.get_running_loop().create_task(self._stop(active, force_after_s=self.cancel_grace_s))

    async def _stop(self, active: ActivePrediction, *, force_after_s: float) -> None:
        """Ask the model's process to stop the prediction; give it up if it does not within `force_after_s`."""
        consume = active.consume
        if isinstance(active.job, GenerationJob):
            # Closing the generation streams aborts them in the engine (their KV blocks are freed).
            if consume is not None:
                consume.cancel()
            return
        try:
            await self.model.cancel(active.record.id)
        except Exception:
            log.exception("cancel failed for %s", active.record.id)
        if consume is None:
            return
        await asyncio.wait({consume}, timeout=force_after_s)
        if not consume.done():
            consume.cancel()  # the process did not stop: give the prediction up rather than run for ever

    # ---- drain

    async def drain(self, grace_s: float) -> None:
        """Cancel queued predictions; running ones get `grace_s` to finish, then are canceled; stop the
        model's process."""
        self.accepting = False
        book = self.ctx.book
        while self._queue:
            active = book.active.get(self._queue.popleft())
            if active is not None and not active.record.status.is_terminal:
                active.cancel_reason = CancelReason.SHUTDOWN
                self._finish(active, PredictionStatus.CANCELED, "The server shut down before this prediction ran.")
        running = [a for pid in list(self._running) if (a := book.active.get(pid)) is not None]
        if running:
            await asyncio.wait([asyncio.ensure_future(a.done.wait()) for a in running], timeout=grace_s)
        late = [a for a in running if not a.done.is_set()]
        for active in late:
            active.cancel_reason = CancelReason.SHUTDOWN
        await asyncio.gather(*(self._stop(a, force_after_s=min(self.cancel_grace_s, 5.0)) for a in late))
        if late:
            await asyncio.wait([asyncio.ensure_future(a.done.wait()) for a in late], timeout=1.0)
        for task in (self._dispatcher, self._loader):
            if task is not None:
                task.cancel()
        for active in late:
            if active.task is not None:
                active.task.cancel()
        await asyncio.gather(*(t for t in (self._dispatcher, self._loader) if t is not None), return_exceptions=True)
        await self.model.unload(grace_s=1.0, stopping=True)

    # ---- following a prediction

    @staticmethod
    async def follow(active: ActivePrediction, start: int = 0) -> AsyncIterator[PredictionEvent]:
        """Every event of the prediction from its `start`th (default: its start), live, ending with
        `Completed`."""
        i = start
        while True:
            changed = active.changed
            while i < len(active.events):
                ev = active.events[i]
                i += 1
                yield ev
                if isinstance(ev, Completed):
                    return
            await changed.wait()
