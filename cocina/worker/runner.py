"""The parent side of the worker: `Runner` starts the child, queues predictions, streams their events.

Used by `cocina predict` and by the server. The runner never dies with its child: a child that exits,
segfaults or is killed fails the predictions it was running (with their logs) and a fresh child is started,
setup included, for the next ones. Every wait is bounded by the child's life: its exit is noticed by a watcher
thread and the pipes are drained before the running predictions are failed, so the last log lines before a
crash are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cocina.worker.events import (
    Cancel,
    Done,
    Encode,
    Encoded,
    Generate,
    GenerationEnd,
    Healthcheck,
    HealthcheckResult,
    Log,
    Metric,
    Output,
    OutputKind,
    PredictionEvent,
    PredictionStatus,
    PredictRequest,
    SchemaReady,
    SetupDone,
    SetupResult,
    SetupStatus,
    Shutdown,
    Stats,
    StatsRequest,
    Tokens,
    decode,
    encode,
    output_kind,
)

if TYPE_CHECKING:
    from cocina.config import ProjectConfig
    from cocina.sdk.schema import InputValidator

__all__ = ["QueueFullError", "Runner", "RunnerState", "secret_values"]

REDACTED = "**********"


class RunnerState(enum.StrEnum):
    """The runner's lifecycle (Cog's health-check statuses, plus RESTARTING and STOPPED)."""

    NEW = "NEW"
    STARTING = "STARTING"
    READY = "READY"
    RESTARTING = "RESTARTING"  # the child died; a fresh one is running setup
    SETUP_FAILED = "SETUP_FAILED"
    EXITED = "EXITED"  # the child died and, without `restart_on_exit`, is not replaced
    STOPPED = "STOPPED"


class QueueFullError(RuntimeError):
    """`Runner.predict` was called while `max_queue` predictions were already waiting for a slot."""


def secret_values(openapi: Mapping[str, Any], inputs: Mapping[str, Any]) -> list[str]:
    """The string values of `inputs` the schema marks secret (`x-cog-secret` or `format: password`)."""
    props = openapi.get("components", {}).get("schemas", {}).get("Input", {}).get("properties", {})
    found: list[str] = []

    def is_secret(schema: Mapping[str, Any]) -> bool:
        return bool(schema.get("x-cog-secret")) or schema.get("format") == "password"

    for name, value in inputs.items():
        schema = props.get(name, {})
        if is_secret(schema) and isinstance(value, str):
            found.append(value)
        elif is_secret(schema.get("items", {})) and isinstance(value, list):
            found.extend(v for v in value if isinstance(v, str))
    # Longest first, so a secret that contains another is redacted whole.
    return sorted({s for s in found if s}, key=len, reverse=True)


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


@dataclass
class _Prediction:
    id: str
    secrets: list[str]
    generation: bool = False  # a language-model generation (Tokens/GenerationEnd) rather than a prediction
    events: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)  # PredictionEvent, or Tokens | GenerationEnd
    cancel_requested: bool = False
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    sent: bool = False  # the request reached the child
    sent_at: float = 0.0  # time.monotonic() when it did
    done: bool = False


class _Child:
    """One child process and its three pipes, read with the event loop's readers (non-blocking)."""

    def __init__(self, runner: Runner, loop: asyncio.AbstractEventLoop) -> None:
        self.runner = runner
        self.loop = loop
        request_r, self.request_w = os.pipe()
        self.event_r, event_w = os.pipe()
        project = runner.project
        root = str(Path(project.root).resolve())
        spec: dict[str, Any] = {
            "root": root,
            "predict_ref": project.train if runner.mode == "train" else project.predict_ref,
            "mode": runner.mode,
            "request_fd": request_r,
            "event_fd": event_w,
        }
        if runner.engine is not None:
            spec["engine"] = runner.engine
        if runner.schema_only:
            spec["schema_only"] = True
        env = dict(os.environ)
        env.update(_environment(project))
        env.update(runner.env_overrides)
        self.proc = subprocess.Popen(
            [runner.python, "-m", "cocina.worker.child", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(request_r, event_w),
            cwd=root,
            env=env,
        )
        os.close(request_r)
        os.close(event_w)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.fds: dict[int, Literal["events", "stdout", "stderr"]] = {
            self.event_r: "events",
            self.proc.stdout.fileno(): "stdout",
            self.proc.stderr.fileno(): "stderr",
        }
        self.buffers: dict[int, bytes] = {fd: b"" for fd in self.fds}
        self.open_fds: set[int] = set(self.fds)
        for fd in self.fds:
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            loop.add_reader(fd, self._readable, fd)
        self.exited = False
        self.schema: asyncio.Future[SchemaReady | None] = loop.create_future()
        self.setup_done: asyncio.Future[SetupDone] = loop.create_future()
        self.running: dict[str, _Prediction] = {}
        threading.Thread(target=self._watch, name=f"cocina-child-{self.proc.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    # --- sending ---

    def send(self, message: Any, tag: str | None = None) -> bool:
        if self.exited:
            return False
        try:
            data = memoryview(encode(message, tag))
            while data:
                data = data[os.write(self.request_w, data) :]
        except OSError:  # the child is gone; its exit is being handled
            return False
        return True

    # --- reading ---

    def _readable(self, fd: int) -> None:
        self._drain(fd)

    def _drain(self, fd: int) -> None:
        """Read everything available on `fd` now, dispatching complete lines."""
        if fd not in self.open_fds:
            return
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._close_fd(fd)
                return
            self.buffers[fd] += chunk
            *lines, self.buffers[fd] = self.buffers[fd].split(b"\n")
            for line in lines:
                self._line(fd, line)

    def _close_fd(self, fd: int) -> None:
        self.open_fds.discard(fd)
        with contextlib.suppress(Exception):
            self.loop.remove_reader(fd)
        rest, self.buffers[fd] = self.buffers[fd], b""
        # A torn last message of a dying child is dropped; a partial log line is kept.
        if rest and self.fds[fd] != "events":
            self._line(fd, rest, newline=False)

    def _flush_partial_logs(self) -> None:
        for fd, kind in self.fds.items():
            if kind != "events" and self.buffers[fd]:
                rest, self.buffers[fd] = self.buffers[fd], b""
                self._line(fd, rest, newline=False)

    def _line(self, fd: int, line: bytes, *, newline: bool = True) -> None:
        kind = self.fds[fd]
        if kind == "events":
            try:
                tag, message = decode(line)
            except ValueError:
                return
            self._message(tag, message)
        else:
            text = line.decode("utf-8", errors="replace") + ("\n" if newline else "")
            self.runner._route_log(self, None, Log(text, kind))

    def _message(self, tag: str | None, message: Any) -> None:
        if isinstance(message, Log):
            self.runner._route_log(self, tag, message)
        elif isinstance(message, Output | Tokens | Metric):
            prediction = self.running.get(tag or "")
            if prediction is not None:
                prediction.events.put_nowait(message)
        elif isinstance(message, GenerationEnd):
            prediction = self.running.pop(tag or "", None)
            if prediction is not None:
                prediction.done = True
                prediction.events.put_nowait(message)
        elif isinstance(message, Encoded | Stats):
            self.runner._reply(tag, message)
        elif isinstance(message, HealthcheckResult):
            waiter = self.runner._healthchecks.pop(tag or "", None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)
        elif isinstance(message, Done):
            # Output written at fd level before Done is already in the pipes: take it first, in order.
            for fd, kind in self.fds.items():
                if kind != "events":
                    self._drain(fd)
            self._flush_partial_logs()
            prediction = self.running.pop(tag or "", None)
            if prediction is not None:
                self.runner._finish(prediction, message)
        elif isinstance(message, SchemaReady):
            if not self.schema.done():
                self.schema.set_result(message)
        elif isinstance(message, SetupDone):
            if not self.schema.done():
                self.schema.set_result(None)
            if not self.setup_done.done():
                self.setup_done.set_result(message)

    # --- exit ---

    def _watch(self) -> None:
        self.proc.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(self._on_exit)

    def _on_exit(self) -> None:
        if self.exited:
            return
        # Everything the child wrote before dying is in the pipes; read it before failing its predictions.
        self._drain(self.event_r)
        for fd, kind in self.fds.items():
            if kind != "events":
                self._drain(fd)
        self._flush_partial_logs()
        self.exited = True
        for fd in list(self.open_fds):
            with contextlib.suppress(Exception):
                self.loop.remove_reader(fd)
        self.open_fds.clear()
        for fd in (self.event_r, self.request_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        reason = _exit_reason(self.proc.returncode)
        if not self.schema.done():
            self.schema.set_result(None)
        if not self.setup_done.done():
            self.setup_done.set_result(SetupDone(SetupStatus.FAILED, f"the predictor process {reason}"))
        self.runner._child_exited(self, reason)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


def _exit_reason(returncode: int | None) -> str:
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        detail = {"SIGSEGV": " (segmentation fault)", "SIGKILL": " (killed, possibly out of memory)"}.get(
            name, ""
        )
        return f"was killed by {name}{detail}"
    return f"exited with code {returncode}"


def _environment(project: Any) -> dict[str, str]:
    """The project's `environment` as a dict; cog.yaml writes it as a list of `KEY=VALUE` strings."""
    env = getattr(project, "environment", None) or {}
    if isinstance(env, Mapping):
        return {str(k): str(v) for k, v in env.items()}
    out: dict[str, str] = {}
    for item in env:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


class Runner:
    """Runs one project's predictor in a child process; see docs/internals.md for the contract.

    `max_concurrency` (default: the project's `concurrency.max`, else 1) applies to async predictors only; a sync
    predictor runs one prediction at a time. Predictions beyond it wait in a FIFO queue of at most `max_queue`; one
    more raises `QueueFullError`. A canceled prediction that has not ended after `cancel_timeout_s` gets its child
    killed (and replaced), so no prediction runs forever once canceled. `env_overrides` are set in the child's
    environment after the project's `environment:`.

    `engine` (`{"model": ..., "config": {EngineConfig fields}}`) is handed to a `cocina.llm.LLMPredictor`
    before its setup. Without `restart_on_exit` a child that dies is not replaced: the runner becomes `EXITED`
    and `on_exit(reason)` is called (the server reloads the model when it is next used). With `schema_only` the
    child imports predict.py, sends its schema and exits without running `setup()` (checking a pushed version).
    """

    def __init__(
        self,
        project: ProjectConfig,
        *,
        max_concurrency: int | None = None,
        max_queue: int = 64,
        cancel_timeout_s: float = 30.0,
        python: str | None = None,
        env_overrides: dict[str, str] | None = None,
        engine: dict[str, Any] | None = None,
        restart_on_exit: bool = True,
        on_exit: Callable[[str], None] | None = None,
        schema_only: bool = False,
        mode: Literal["predict", "train"] = "predict",
    ) -> None:
        if mode == "train" and not getattr(project, "train", None):
            raise ValueError(f"{project.config_file} has no `train:` entry point")
        self.project = project
        self.schema_only = schema_only
        self.engine = engine
        self.restart_on_exit = restart_on_exit
        self.on_exit = on_exit
        self.exit_reason: str | None = None
        self.language_model: dict[str, Any] | None = None  # set by setup when the predictor runs on the engine
        self._replies: dict[str, asyncio.Future[Any]] = {}
        self.mode = mode  # "train": the child runs the project's `train:` entry point instead of its predictor
        # Set last in the child's environment, over the project's `environment:` (command-line flags win).
        self.env_overrides = dict(env_overrides or {})
        self.python = python or sys.executable
        self.max_queue = max_queue
        self.cancel_timeout_s = cancel_timeout_s
        self._requested_concurrency = max_concurrency or getattr(project, "concurrency_max", None) or 1
        self.state = RunnerState.NEW
        self.setup_result: SetupResult | None = None
        self.is_async = False
        self.streaming = False  # the predict function is marked @streaming (Cog's opt-in to event streams)
        self._explicit_concurrency = max_concurrency is not None or getattr(project, "concurrency_max", 1) != 1
        self._healthchecks: dict[str, asyncio.Future[HealthcheckResult]] = {}
        self._openapi: dict[str, Any] | None = None
        self._validator: InputValidator | None = None
        self._child: _Child | None = None
        self._ready: asyncio.Future[SetupResult] | None = None
        self._schema_ready: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._predictions: dict[str, _Prediction] = {}
        self._setup_logs: list[str] = []
        self._restart_task: asyncio.Task[SetupResult] | None = None
        self.log_listener: Callable[[Log], None] | None = None  # setup-time logs, e.g. for `--debug`

    # --- public API ---

    @property
    def openapi_schema(self) -> dict[str, Any]:
        """The predictor's OpenAPI document (available once the child has imported predict.py)."""
        if self._openapi is None:
            raise RuntimeError("the predictor's schema is not known yet: start() has not imported predict.py")
        return self._openapi

    @property
    def validator(self) -> InputValidator:
        """An `InputValidator` for the predictor's inputs, built from the schema."""
        if self._validator is None:
            from cocina.sdk.schema import InputValidator

            self._validator = InputValidator(self.openapi_schema)
        return self._validator

    @property
    def output_kind(self) -> OutputKind:
        """Whether the output is a value, an iterator, or a concatenate iterator."""
        return output_kind(self.openapi_schema)

    @property
    def concurrency(self) -> int:
        """How many predictions run at once."""
        return self._requested_concurrency if self.is_async else 1

    @property
    def queued(self) -> int:
        """Predictions waiting for a slot."""
        return self._waiting

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start)."""
        return self._child.pid if self._child is not None else None

    async def start(self) -> SetupResult:
        """Start the child, import predict.py and run setup(). User errors give a FAILED result; never raises
        them.
        """
        if self._ready is None:
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            self._schema_ready = asyncio.Event()
            self.state = RunnerState.STARTING
            result = await self._start_child()
            if not self._ready.done():
                self._ready.set_result(result)
        return await asyncio.shield(self._ready)

    async def wait_schema(self) -> dict[str, Any] | None:
        """Wait until predict.py is imported: its schema, or None if the import failed."""
        while self._schema_ready is None:
            await asyncio.sleep(0.01)
        await self._schema_ready.wait()
        return self._openapi

    async def predict(
        self,
        inputs: Mapping[str, Any],
        *,
        prediction_id: str | None = None,
        context: Mapping[str, str] | None = None,
    ) -> AsyncIterator[PredictionEvent]:
        """Run one prediction on validated inputs; yields `Log`, `Output` and `Metric` events, then one `Done`.

        `context` is the request's `context` object, which the predictor reads as `current_scope().context`.
        Stopping the iteration early (a client that went away) cancels the prediction.
        """
        pid = prediction_id or uuid.uuid4().hex
        if pid in self._predictions:
            raise ValueError(f"prediction {pid!r} is already running")
        if self._ready is None:
            await self.start()
        assert self._ready is not None
        if self._waiting >= self.max_queue and self._slots is not None and self._slots.locked():
            raise QueueFullError(f"{self._waiting} predictions are already waiting")
        secrets = secret_values(self._openapi or {}, inputs)
        prediction = _Prediction(pid, secrets)
        self._predictions[pid] = prediction
        acquired = False
        try:
            setup = await asyncio.shield(self._ready)
            if setup.status is SetupStatus.SUCCEEDED:
                acquired = await self._acquire(prediction)
            if prediction.cancel_requested and not prediction.sent:
                yield Done(PredictionStatus.CANCELED)
                return
            if not acquired:
                yield self._unavailable_done()
                return
            # A child that died while we queued is being replaced: wait for its setup.
            if self._restart_task is not None:
                await asyncio.shield(self._restart_task)
            child = self._child
            if self.state is not RunnerState.READY or child is None or child.exited:
                yield self._unavailable_done()
                return
            child.running[pid] = prediction
            request = PredictRequest(dict(inputs), {str(k): str(v) for k, v in (context or {}).items()})
            prediction.sent = child.send(request, pid)
            prediction.sent_at = time.monotonic()
            if not prediction.sent:
                child.running.pop(pid, None)
                yield Done(PredictionStatus.FAILED, "the predictor process is not running")
                return
            while True:
                event = await prediction.events.get()
                yield event
                if isinstance(event, Done):
                    return
        finally:
            if prediction.sent and not prediction.done:
                # The consumer stopped early: cancel, and keep the slot until the child says it is done.
                await self.cancel(pid)
                asyncio.get_running_loop().create_task(self._release_when_done(prediction))
            else:
                self._predictions.pop(pid, None)
                if acquired and self._slots is not None:
                    self._slots.release()

    async def cancel(self, prediction_id: str) -> bool:
        """Cancel a queued or running prediction; False if it is not known (e.g. already finished)."""
        prediction = self._predictions.get(prediction_id)
        if prediction is None or prediction.done:
            return False
        if prediction.cancel_requested:
            return True
        prediction.cancel_requested = True
        prediction.cancel_event.set()
        child = self._child
        if prediction.sent and child is not None and not child.exited:
            child.send(Cancel(), prediction_id)
            asyncio.get_running_loop().create_task(self._escalate_cancel(prediction, child))
        return True

    async def healthcheck(self, timeout_s: float = 10.0) -> HealthcheckResult:
        """Run the predictor's own `healthcheck()` in the child (healthy when it has none).

        The child limits the healthcheck to 5 s, as Cog does; `timeout_s` bounds the wait for the child's answer.
        Only meaningful once setup succeeded: before (or after a failed setup) the answer is unhealthy.
        """
        child = self._child
        if self.state is not RunnerState.READY or child is None or child.exited:
            return HealthcheckResult(False, f"the predictor is not ready ({self.state.value})")
        tag = f"healthcheck-{uuid.uuid4().hex}"
        waiter: asyncio.Future[HealthcheckResult] = asyncio.get_running_loop().create_future()
        self._healthchecks[tag] = waiter
        try:
            if not child.send(Healthcheck(), tag):
                return HealthcheckResult(False, "the predictor process is not running")
            return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            return HealthcheckResult(False, f"Healthcheck failed: no answer from the predictor in {timeout_s:g} s")
        finally:
            self._healthchecks.pop(tag, None)

    async def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop the child: let running predictions finish for `grace_s`, then kill it. Idempotent."""
        self.state = RunnerState.STOPPED
        if self._restart_task is not None and not self._restart_task.done():
            self._restart_task.cancel()
        child = self._child
        if child is None:
            return
        if not child.exited:
            child.send(Shutdown())
            # A child still in setup() would only read the request when setup ends: nothing to wait for.
            deadline = time.monotonic() + (grace_s if child.setup_done.done() else 0.0)
            while not child.exited and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if not child.exited:
                child.kill()
                for _ in range(500):
                    if child.exited:
                        break
                    await asyncio.sleep(0.01)

    # --- the language-model channel ---

    async def encode(self, *, text: str | None = None, messages: list[dict[str, Any]] | None = None) -> list[int]:
        """Token ids of `text`, or of chat `messages` through the model's chat template. Raises ValueError
        when the model refuses them, RuntimeError when the child is not there to ask."""
        reply = await self._request(Encode(text, messages))
        assert isinstance(reply, Encoded)
        if reply.error is not None:
            raise ValueError(reply.error)
        return list(reply.token_ids)

    async def stats(self) -> dict[str, Any] | None:
        """The engine's statistics as plain data (None when the child has no engine or is not running)."""
        try:
            reply = await self._request(StatsRequest())
        except RuntimeError:
            return None
        assert isinstance(reply, Stats)
        return reply.data or None

    async def generate(
        self, prompt_ids: list[int], params: Mapping[str, Any], *, generation_id: str | None = None
    ) -> AsyncIterator[Tokens | GenerationEnd]:
        """Generate on the child's engine: `Tokens` events, then one `GenerationEnd`. Not bounded by the
        runner's slots (the engine batches them). Stopping the iteration early aborts the generation."""
        gid = generation_id or uuid.uuid4().hex
        child = self._child
        if self.state is not RunnerState.READY or child is None or child.exited:
            yield GenerationEnd("error", error=self._not_running())
            return
        prediction = _Prediction(gid, [], generation=True)
        child.running[gid] = prediction
        if not child.send(Generate(list(prompt_ids), dict(params)), gid):
            child.running.pop(gid, None)
            yield GenerationEnd("error", error=self._not_running())
            return
        try:
            while True:
                event = await prediction.events.get()
                yield event
                if isinstance(event, GenerationEnd):
                    return
        finally:
            if not prediction.done:
                prediction.cancel_requested = True
                child.send(Cancel(), gid)

    async def _request(self, message: Any) -> Any:
        child = self._child
        if self.state is not RunnerState.READY or child is None or child.exited:
            raise RuntimeError(self._not_running())
        tag = uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[tag] = future
        try:
            if not child.send(message, tag):
                raise RuntimeError(self._not_running())
            return await future
        finally:
            self._replies.pop(tag, None)

    def _reply(self, tag: str | None, message: Any) -> None:
        future = self._replies.get(tag or "")
        if future is not None and not future.done():
            future.set_result(message)

    def _not_running(self) -> str:
        if self.exit_reason is not None:
            return f"the predictor process {self.exit_reason}"
        return "the predictor process is not running"

    # --- internals ---

    def _unavailable_done(self) -> Done:
        setup = self.setup_result
        if self.state is RunnerState.STOPPED:
            return Done(PredictionStatus.FAILED, "the runner is shut down")
        reason = setup.error if setup is not None and setup.error else "setup did not succeed"
        return Done(PredictionStatus.FAILED, f"setup failed: {reason}")

    async def _acquire(self, prediction: _Prediction) -> bool:
        """Wait for a slot, or for the prediction to be canceled while it waits (then False)."""
        assert self._slots is not None
        if not self._slots.locked() and self._waiting == 0:
            await self._slots.acquire()
            return True
        self._waiting += 1
        try:
            acquire = asyncio.ensure_future(self._slots.acquire())
            canceled = asyncio.ensure_future(prediction.cancel_event.wait())
            try:
                await asyncio.wait({acquire, canceled}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                canceled.cancel()
            if acquire.done() and not acquire.cancelled():
                if prediction.cancel_requested:
                    self._slots.release()
                    return False
                return True
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquire
            if acquire.done() and not acquire.cancelled():
                self._slots.release()  # it won the race with the cancel
            return False
        finally:
            self._waiting -= 1

    async def _release_when_done(self, prediction: _Prediction) -> None:
        while not prediction.done:
            event = await prediction.events.get()
            if isinstance(event, Done):
                break
        self._predictions.pop(prediction.id, None)
        if self._slots is not None:
            self._slots.release()

    async def _escalate_cancel(self, prediction: _Prediction, child: _Child) -> None:
        deadline = time.monotonic() + self.cancel_timeout_s
        while not prediction.done and not child.exited and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not prediction.done and not child.exited:
            # The predictor ignored the cancel (caught it, or is stuck in native code): replace the process.
            child.kill()

    async def _start_child(self) -> SetupResult:
        loop = asyncio.get_running_loop()
        started_at = datetime.now(UTC)
        self._setup_logs = []
        child = _Child(self, loop)
        self._child = child
        schema = await child.schema
        if schema is not None:
            self._openapi = schema.openapi
            self._validator = None
            self.is_async = schema.is_async
            self.streaming = schema.streaming
            if schema.concurrency_max is not None and not self._explicit_concurrency:
                self._requested_concurrency = schema.concurrency_max  # @concurrent(max=N) on predict()
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.concurrency)
            if self._requested_concurrency > 1 and not self.is_async:
                # Cog refuses this combination; cocina runs it, one prediction at a time, and says so.
                self._setup_logs.append(
                    f"cocina: concurrency.max is {self._requested_concurrency} but predict() is not async; "
                    "predictions run one at a time\n"
                )
        if self._schema_ready is not None:
            self._schema_ready.set()
        setup_timeout = _setup_timeout({**os.environ, **_environment(self.project), **self.env_overrides})
        try:
            setup = await asyncio.wait_for(asyncio.shield(child.setup_done), setup_timeout)
        except TimeoutError:
            child.kill()
            setup = SetupDone(SetupStatus.FAILED, f"setup() did not finish within {setup_timeout:g} seconds")
            self._setup_logs.append(f"cocina: setup timed out after {setup_timeout:g} seconds (COG_SETUP_TIMEOUT)\n")
        # A schema-only child exits right after saying so: its exit is not a failure.
        ok = setup.status is SetupStatus.SUCCEEDED and (self.schema_only or not child.exited)
        result = SetupResult(
            status=SetupStatus.SUCCEEDED if ok else SetupStatus.FAILED,
            logs="".join(self._setup_logs),
            started_at=started_at,
            completed_at=datetime.now(UTC),
            error=None if ok else setup.error,
        )
        self.setup_result = result
        self.language_model = setup.language_model if ok else None
        if self.state is not RunnerState.STOPPED:
            self.state = RunnerState.READY if ok else RunnerState.SETUP_FAILED
        if not ok:
            child.kill()
        return result

    def _route_log(self, child: _Child, tag: str | None, log: Log) -> None:
        """Attribute a log chunk: to its prediction, else to the sole running ones, else to setup."""
        if child is not self._child:
            return
        # A generation's stream is tokens only: output written meanwhile belongs to the predictions, if any.
        running = [p for p in child.running.values() if not p.generation]
        if tag is not None:
            targets = [p for p in (child.running.get(tag),) if p is not None and not p.generation]
        elif running:
            # fd-level output (C code, subprocesses) carries no tag; with several predictions running it is
            # impossible to tell whose it is, so each of them gets it.
            targets = running
        else:
            targets = []
        if not targets:
            if self.state in (RunnerState.STARTING, RunnerState.RESTARTING):
                self._setup_logs.append(log.data)
                if self.log_listener is not None:
                    self.log_listener(log)
            return
        for prediction in targets:
            secrets = prediction.secrets if tag is not None else _all_secrets(running)
            data = _redact(log.data, secrets)
            prediction.events.put_nowait(Log(data, log.source, log.traceback))

    def _finish(self, prediction: _Prediction, done: Done) -> None:
        if prediction.generation:
            prediction.done = True
            reason = "abort" if prediction.cancel_requested else "error"
            prediction.events.put_nowait(GenerationEnd(reason, error=done.error))
            return
        if prediction.cancel_requested and done.status is PredictionStatus.FAILED and done.error is None:
            done = Done(PredictionStatus.CANCELED, None, done.predict_time)
        prediction.done = True
        prediction.events.put_nowait(done)

    def _child_exited(self, child: _Child, reason: str) -> None:
        if child is not self._child:
            return
        for prediction in list(child.running.values()):
            elapsed = time.monotonic() - prediction.sent_at
            if prediction.cancel_requested:
                self._finish(prediction, Done(PredictionStatus.CANCELED, None, elapsed))
            else:
                error = f"the predictor process {reason}"
                self._finish(prediction, Done(PredictionStatus.FAILED, error, elapsed))
        child.running.clear()
        for future in self._replies.values():
            if not future.done():
                future.set_exception(RuntimeError(f"the predictor process {reason}"))
        if self.state is RunnerState.READY:
            if not self.restart_on_exit:
                self.state = RunnerState.EXITED
                self.exit_reason = reason
                if self.on_exit is not None:
                    self.on_exit(reason)
                return
            # Replace the dead child so the next prediction works; queued predictions wait for its setup.
            self.state = RunnerState.RESTARTING
            self._restart_task = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> SetupResult:
        try:
            return await self._start_child()
        finally:
            self._restart_task = None


def _setup_timeout(env: Mapping[str, str]) -> float | None:
    """Seconds setup() may take: `COG_SETUP_TIMEOUT` (the environment or the project's `environment:`), as in
    Cog; unset, 0 or not a whole number: no limit."""
    value = env.get("COG_SETUP_TIMEOUT", "").strip()
    return float(value) if value.isdigit() and int(value) > 0 else None


def _all_secrets(predictions: Any) -> list[str]:
    found: set[str] = set()
    for prediction in predictions:
        found.update(prediction.secrets)
    return sorted(found, key=len, reverse=True)
