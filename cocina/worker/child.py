"""The worker child: a separate process that imports the user's predict.py, runs setup() and predictions.

Started by `cocina.worker.runner` as `python -m cocina.worker.child SPEC_JSON`. It talks to the parent through
two pipes of JSON lines (see `events.py`): requests in, events out. Its own fd 1 and fd 2 are pipes read by
the parent, so output written below Python (C extensions, subprocesses, a segfault's fault handler dump) is
captured there; Python-level `print`/`logging` goes through `sys.stdout`/`sys.stderr` replacements that send
tagged `Log` events, which is how concurrent async predictions get their own logs.

A sync predictor runs in the main thread so that cancellation can work like Cog's: the parent's `Cancel` makes
the child signal itself with SIGUSR1 and the handler raises `CancelationException` inside `predict`. An async
predictor runs on an event loop in the main thread and is cancelled with `Task.cancel()`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import ctypes
import faulthandler
import inspect
import io
import json
import os
import pathlib
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

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
    PredictionStatus,
    PredictRequest,
    SchemaReady,
    SetupDone,
    SetupStatus,
    Shutdown,
    Stats,
    StatsRequest,
    Tokens,
    decode,
    encode,
    output_kind,
)

# The prediction whose code is running in this context. Async predictions each set it in their task; threads
# started by a sync predict() do not inherit contextvars, hence the `_Sync.current` fallback.
_TAG: contextvars.ContextVar[str | None] = contextvars.ContextVar("cocina_prediction", default=None)


class _Channel:
    """The event pipe to the parent: whole lines under a lock, so threads never interleave messages."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, event: Any, tag: str | None = None) -> None:
        data = encode(event, tag)
        with _SIGNALS.sending(), self._lock:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]


class _SyncCancel:
    """SIGUSR1 handling for sync predictors.

    The handler raises only while a prediction is armed, and never while the main thread is writing a message:
    an exception in the middle of `os.write` would tear a line on the event pipe. Such a cancel is kept
    pending and raised right after the write.
    """

    def __init__(self) -> None:
        self.current: str | None = None
        self._armed = False
        self._pending = False
        self._sending_depth = 0

    def arm(self, tag: str) -> None:
        self.current = tag
        self._pending = False
        self._armed = True

    def disarm(self) -> None:
        self._armed = False
        self._pending = False

    def handler(self, signum: int, frame: Any) -> None:
        if not self._armed:
            return
        if self._sending_depth:
            self._pending = True
            return
        self._armed = False
        from cocina.sdk import CancelationException

        raise CancelationException()

    def sending(self) -> _Sending:
        return _Sending(self)


class _Sending:
    def __init__(self, owner: _SyncCancel) -> None:
        self._owner = owner
        self._main = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> None:
        if self._main:
            self._owner._sending_depth += 1

    def __exit__(self, *exc: object) -> None:
        if not self._main:
            return
        owner = self._owner
        owner._sending_depth -= 1
        if owner._sending_depth == 0 and owner._pending and owner._armed and exc[0] is None:
            owner._pending = False
            owner._armed = False
            from cocina.sdk import CancelationException

            raise CancelationException()


_SIGNALS = _SyncCancel()


class _LogStream(io.TextIOBase):
    """Replaces sys.stdout / sys.stderr: sends each complete line as a `Log` tagged with its prediction."""

    def __init__(self, channel: _Channel, source: Literal["stdout", "stderr"], fd: int) -> None:
        super().__init__()
        self._channel = channel
        self._source: Literal["stdout", "stderr"] = source
        self._fd = fd
        self._buffers: dict[str | None, str] = {}
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # Code that hands sys.stdout to a subprocess gets the real fd, which the parent captures too.
        return self._fd

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        tag = _current_tag()
        with self._lock:
            text = self._buffers.pop(tag, "") + s
            cut = text.rfind("\n") + 1
            if cut < len(text):
                self._buffers[tag] = text[cut:]
            ready = text[:cut]
        if ready:
            self._channel.send(Log(ready, self._source), tag)
        return len(s)

    def flush(self, tag: str | Literal["all"] | None = "all") -> None:
        with self._lock:
            if tag == "all":
                pending = list(self._buffers.items())
                self._buffers.clear()
            else:
                text = self._buffers.pop(tag, "")
                pending = [(tag, text)] if text else []
        for t, text in pending:
            self._channel.send(Log(text, self._source), t)


def _current_tag() -> str | None:
    tag = _TAG.get()
    return tag if tag is not None else _SIGNALS.current


def _flush_c_stdio() -> None:
    """Flush C stdio buffers, so that printf output reaches the parent before the prediction's `Done`."""
    with contextlib.suppress(Exception):  # no libc symbol table: nothing we can flush
        ctypes.CDLL(None).fflush(None)


HEALTHCHECK_TIMEOUT_S = 5.0  # Cog's limit on a predictor's healthcheck()


def _describe(exc: BaseException) -> str:
    """The one-line error of a failed prediction: the exception's message, as Cog reports it."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the predictor called sys.exit({exc.code!r})"
    message = str(exc).strip()
    return message if message else type(exc).__name__


def _describe_setup(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"setup() called sys.exit({exc.code!r})"
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _is_stream(result: Any, kind: OutputKind) -> bool:
    if isinstance(result, str | bytes | bytearray | dict):
        return False
    if inspect.isgenerator(result) or isinstance(result, Iterator):
        return True
    # `-> Iterator[str]` implemented by returning a list still streams item by item.
    return kind is not OutputKind.VALUE and isinstance(result, list | tuple)


class Child:
    """One worker process: owns the predictor instance and serves the parent's requests."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.root = pathlib.Path(spec["root"])
        self.predict_ref: str = spec["predict_ref"]
        # The model and typed engine options for a predictor on cocina's engine (`cocina serve`/`predict`).
        self.engine_spec: dict[str, Any] | None = spec.get("engine")
        self.schema_only: bool = bool(spec.get("schema_only"))
        self.mode: str = spec.get("mode", "predict")  # "train": the project's train entry point
        self.channel = _Channel(spec["event_fd"])
        self.request_fd: int = spec["request_fd"]
        self.requests: queue.Queue[tuple[str | None, Any]] = queue.Queue()
        self.stdout = _LogStream(self.channel, "stdout", 1)
        self.stderr = _LogStream(self.channel, "stderr", 2)
        self.predictor: Any = None
        self.predict_fn: Callable[..., Any] | None = None
        self.kind = OutputKind.VALUE
        self.is_async = False
        self.canceled_before_start: set[str] = set()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    # --- plumbing ---

    def _read_requests(self) -> None:
        """Reader thread: requests from the parent. EOF means the parent is gone or gave up: exit at once."""
        buffer = b""
        while True:
            try:
                chunk = os.read(self.request_fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                os._exit(0)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line:
                    tag, message = decode(line)
                    if isinstance(message, Cancel):
                        self._cancel(tag)
                    elif isinstance(message, Healthcheck):
                        threading.Thread(target=self._healthcheck, args=(tag,), daemon=True).start()
                    else:
                        self.requests.put((tag, message))

    def _cancel(self, tag: str | None) -> None:
        if tag is None:
            return
        if self.is_async:
            loop = self.loop
            if loop is not None:
                loop.call_soon_threadsafe(self._cancel_task, tag)
        elif _SIGNALS.current == tag:
            os.kill(os.getpid(), signal.SIGUSR1)
        else:
            # Not started yet (still in our queue): it ends as canceled without running.
            self.canceled_before_start.add(tag)

    def _healthcheck(self, tag: str | None) -> None:
        """Run the predictor's `healthcheck()` (if it has one) within HEALTHCHECK_TIMEOUT_S, off the main thread.

        Cog's rules: a result of False is unhealthy, anything else healthy; an exception or a timeout is unhealthy.
        A sync healthcheck that overruns keeps running in its thread: Python cannot stop it.
        """
        check = None if inspect.isfunction(self.predictor) else getattr(self.predictor, "healthcheck", None)
        if not callable(check):
            self.channel.send(HealthcheckResult(True), tag)
            return
        timeout = HEALTHCHECK_TIMEOUT_S
        try:
            if inspect.iscoroutinefunction(check):
                loop = self.loop
                if loop is not None and loop.is_running():
                    future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(check(), timeout), loop)
                    result = future.result(timeout + 1.0)
                else:
                    result = asyncio.run(asyncio.wait_for(check(), timeout))
            else:
                outcome: list[Any] = []

                def call() -> None:
                    try:
                        outcome.append(("ok", check()))
                    except BaseException as exc:
                        outcome.append(("error", exc))

                thread = threading.Thread(target=call, name="cocina-healthcheck", daemon=True)
                thread.start()
                thread.join(timeout)
                if not outcome:
                    raise TimeoutError()
                kind, value = outcome[0]
                if kind == "error":
                    raise value
                result = value
        except (TimeoutError, concurrent.futures.TimeoutError):
            error = f"Healthcheck failed: user-defined healthcheck timed out after {timeout:.1f} seconds"
            self.channel.send(HealthcheckResult(False, error), tag)
            return
        except BaseException as exc:
            self.channel.send(HealthcheckResult(False, f"Healthcheck failed: {_describe_setup(exc)}"), tag)
            return
        if result is False:
            error = "Healthcheck failed: user-defined healthcheck returned False"
            self.channel.send(HealthcheckResult(False, error), tag)
        else:
            self.channel.send(HealthcheckResult(True), tag)

    def _cancel_task(self, tag: str) -> None:
        task = self.tasks.get(tag)
        if task is not None:
            task.cancel()
        else:
            self.canceled_before_start.add(tag)

    def _log_traceback(self, exc: BaseException, tag: str | None) -> None:
        text = "".join(traceback.format_exception(exc))
        self.channel.send(Log(text, "stderr", traceback=True), tag)

    def _finish(
        self, tag: str, status: PredictionStatus, error: str | None, started: float, metrics: dict[str, Any]
    ) -> None:
        self.stdout.flush(tag)
        self.stderr.flush(tag)
        _flush_c_stdio()
        try:
            metrics = json.loads(json.dumps(metrics, default=str))
        except ValueError:
            metrics = {}
        self.channel.send(Done(status, error, time.monotonic() - started, metrics), tag)

    # --- lifecycle ---

    def run(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is the parent's to handle
        signal.signal(signal.SIGUSR1, _SIGNALS.handler)
        faulthandler.enable(file=sys.__stderr__ or sys.stderr, all_threads=True)
        sys.stdout = self.stdout
        sys.stderr = self.stderr
        threading.Thread(target=self._read_requests, name="cocina-requests", daemon=True).start()
        os.chdir(self.root)

        if not self._load():
            return
        if self.schema_only:  # a pushed version is checked without running its setup()
            self.channel.send(SetupDone(SetupStatus.SUCCEEDED))
            return
        if self.is_async:
            asyncio.run(self._amain())
        else:
            if self._setup_sync():
                self._serve_sync()

    def _load(self) -> bool:
        """Import predict.py and derive the schema; on failure report setup failed."""
        try:
            from cocina.sdk.decorators import concurrent_max, is_streaming
            from cocina.sdk.predictor import get_predict_function, is_async_callable, load_predictor
            from cocina.sdk.schema import derive_schema
            from cocina.sdk.shim import install_cog_shim

            install_cog_shim()
            loaded = load_predictor(self.predict_ref, self.root, self.mode)
            openapi = derive_schema(loaded, mode=self.mode)
            self.predictor = loaded() if inspect.isclass(loaded) else loaded
            self._configure_engine()
            self.predict_fn = get_predict_function(self.predictor, self.mode)
            self.is_async = is_async_callable(self.predict_fn)
            self.kind = output_kind(openapi)
            streaming = is_streaming(self.predict_fn)
            concurrency = concurrent_max(self.predict_fn)
        except BaseException as exc:
            self._log_traceback(exc, None)
            self.stdout.flush()
            self.stderr.flush()
            self.channel.send(SetupDone(SetupStatus.FAILED, _describe_setup(exc)))
            return False
        schema = json.loads(json.dumps(openapi, default=str))
        self.channel.send(SchemaReady(schema, self.is_async, streaming, concurrency))
        return True

    def _llm_predictor(self) -> Any:
        """The predictor if it is a `cocina.llm.LLMPredictor` (only then is `cocina.llm` already imported)."""
        module = sys.modules.get("cocina.llm.predictor")
        if module is not None and isinstance(self.predictor, module.LLMPredictor):
            return self.predictor
        return None

    def _configure_engine(self) -> None:
        llm = self._llm_predictor()
        if llm is not None and self.engine_spec is not None:
            from cocina.engine.config import EngineConfig

            llm.use_engine(self.engine_spec.get("model"), EngineConfig(**self.engine_spec.get("config", {})))

    def _language_model(self) -> dict[str, Any] | None:
        """What the parent needs of a predictor on cocina's engine (None for any other predictor)."""
        llm = self._llm_predictor()
        engine = getattr(llm, "engine", None) if llm is not None else None
        if engine is None or not self.is_async:
            return None
        return {
            "max_model_len": int(engine.engine.max_model_len),
            "vocab_size": int(engine.engine.runner.vocab_size),
            "model": str(getattr(llm, "model_path", "")),
        }

    def _setup_call(self) -> Any:
        from cocina.sdk.predictor import setup_kwargs

        setup = getattr(self.predictor, "setup", None)
        if setup is None or inspect.isfunction(self.predictor):
            return None
        return setup(**setup_kwargs(self.predictor, self.root))

    def _setup_failed(self, exc: BaseException) -> None:
        if getattr(exc, "show_traceback", True):
            self._log_traceback(exc, None)
        else:  # an error whose message is the whole story (e.g. a model that is not there)
            self.channel.send(Log(_describe_setup(exc) + "\n", "stderr"), None)
        self.stdout.flush()
        self.stderr.flush()
        _flush_c_stdio()
        self.channel.send(SetupDone(SetupStatus.FAILED, _describe_setup(exc)))

    def _setup_succeeded(self) -> None:
        self.stdout.flush()
        self.stderr.flush()
        _flush_c_stdio()
        self.channel.send(SetupDone(SetupStatus.SUCCEEDED, language_model=self._language_model()))

    def _setup_sync(self) -> bool:
        try:
            result = self._setup_call()
            if inspect.isawaitable(result):
                asyncio.run(_await(result))
        except BaseException as exc:
            self._setup_failed(exc)
            return False
        self._setup_succeeded()
        return True

    # --- sync predictions (main thread) ---

    def _serve_sync(self) -> None:
        while True:
            tag, message = self.requests.get()
            if isinstance(message, Shutdown):
                return
            if isinstance(message, PredictRequest) and tag is not None:
                self._predict_sync(tag, message.inputs, message.context)

    def _metric_listener(self, tag: str) -> Callable[[str, Any, str], None]:
        def listener(name: str, value: Any, mode: str) -> None:
            self.channel.send(Metric(name, value, mode), tag)

        return listener

    def _predict_sync(self, tag: str, inputs: dict[str, Any], context: dict[str, str]) -> None:
        from cocina.sdk import CancelationException
        from cocina.sdk.schema import coerce_inputs, encode_output
        from cocina.sdk.scope import prediction_scope

        started = time.monotonic()
        status, error = PredictionStatus.SUCCEEDED, None
        metrics: dict[str, Any] = {}
        recorder: Any = None
        token = _TAG.set(tag)
        assert self.predict_fn is not None
        try:
            _SIGNALS.arm(tag)
            if tag in self.canceled_before_start:
                self.canceled_before_start.discard(tag)
                raise CancelationException()
            with prediction_scope(context, self._metric_listener(tag)) as scope:
                recorder = scope.metrics
                kwargs = coerce_inputs(self.predict_fn, inputs)
                result = self.predict_fn(**kwargs)
                if _is_stream(result, self.kind):
                    for item in result:
                        self.channel.send(Output(encode_output(item)), tag)
                else:
                    self.channel.send(Output(encode_output(result)), tag)
            _SIGNALS.disarm()
        except CancelationException:
            _SIGNALS.disarm()
            status = PredictionStatus.CANCELED
        except BaseException as exc:
            # SystemExit and KeyboardInterrupt too: one bad prediction must not take the worker down.
            _SIGNALS.disarm()
            status, error = PredictionStatus.FAILED, _describe(exc)
            self._log_traceback(exc, tag)
        finally:
            _SIGNALS.disarm()
            _TAG.reset(token)
        if recorder is not None:
            metrics = recorder.snapshot()
        self._finish(tag, status, error, started, metrics)
        _SIGNALS.current = None

    # --- async predictions (event loop in the main thread) ---

    async def _amain(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            result = self._setup_call()
            if inspect.isawaitable(result):
                await result
        except BaseException as exc:
            self._setup_failed(exc)
            return
        self._setup_succeeded()
        while True:
            # The reader thread feeds a thread-safe queue; one executor thread waits on it for the loop.
            tag, message = await self.loop.run_in_executor(None, self.requests.get)
            if isinstance(message, Shutdown):
                break
            if tag is None:
                continue
            if isinstance(message, PredictRequest):
                if tag in self.canceled_before_start:
                    self.canceled_before_start.discard(tag)
                    self._finish(tag, PredictionStatus.CANCELED, None, time.monotonic(), {})
                    continue
                self.tasks[tag] = asyncio.create_task(self._predict_async(tag, message.inputs, message.context))
            elif isinstance(message, Generate):
                if tag in self.canceled_before_start:
                    self.canceled_before_start.discard(tag)
                    self.channel.send(GenerationEnd("abort"), tag)
                    continue
                self.tasks[tag] = asyncio.create_task(self._generate(tag, message))
            elif isinstance(message, Encode):
                self.channel.send(self._encode(message), tag)
            elif isinstance(message, StatsRequest):
                self.channel.send(self._stats(), tag)
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _predict_async(self, tag: str, inputs: dict[str, Any], context: dict[str, str]) -> None:
        from cocina.sdk.schema import coerce_inputs, encode_output
        from cocina.sdk.scope import prediction_scope

        started = time.monotonic()
        status, error = PredictionStatus.SUCCEEDED, None
        metrics: dict[str, Any] = {}
        recorder: Any = None
        _TAG.set(tag)  # this task's own context
        assert self.predict_fn is not None
        try:
            with prediction_scope(context, self._metric_listener(tag)) as scope:
                recorder = scope.metrics
                kwargs = coerce_inputs(self.predict_fn, inputs)
                result = self.predict_fn(**kwargs)
                if inspect.isawaitable(result):
                    result = await result
                if isinstance(result, AsyncIterator):
                    async for item in result:
                        self.channel.send(Output(encode_output(item)), tag)
                elif _is_stream(result, self.kind):
                    for item in result:
                        self.channel.send(Output(encode_output(item)), tag)
                else:
                    self.channel.send(Output(encode_output(result)), tag)
        except asyncio.CancelledError:
            status = PredictionStatus.CANCELED
        except BaseException as exc:
            status, error = PredictionStatus.FAILED, _describe(exc)
            self._log_traceback(exc, tag)
        finally:
            self.tasks.pop(tag, None)
        if recorder is not None:
            metrics = recorder.snapshot()
        self._finish(tag, status, error, started, metrics)


    # --- the language-model channel (a predictor on cocina's engine) ---

    def _encode(self, message: Encode) -> Encoded:
        llm = self._llm_predictor()
        if llm is None or getattr(llm, "engine", None) is None:
            return Encoded(error="this predictor is not a language model on cocina's engine")
        try:
            from cocina.llm.chat import chat_prompt_ids

            tokenizer = llm.engine.engine.tokenizer
            if message.messages is not None:
                return Encoded(chat_prompt_ids(tokenizer, message.messages))
            return Encoded([int(t) for t in llm.engine.engine.encode(message.text or "")])
        except Exception as exc:
            # A chat template may refuse a conversation (e.g. roles out of order): the client's to fix.
            return Encoded(error=_describe(exc))

    def _stats(self) -> Stats:
        import dataclasses

        llm = self._llm_predictor()
        engine = getattr(llm, "engine", None) if llm is not None else None
        if engine is None:
            return Stats({})
        stats = engine.stats()
        data = dataclasses.asdict(stats)
        data["kv_cache_usage"] = stats.kv_cache_usage
        return Stats(json.loads(json.dumps(data, default=str)))

    async def _generate(self, tag: str, message: Generate) -> None:
        from cocina.engine.errors import EngineOverloaded
        from cocina.engine.llm_engine import ErrorEvent, FinishedEvent, TokenEvent
        from cocina.engine.sequence import SamplingParams

        llm = self._llm_predictor()
        end = GenerationEnd("error", error="the generation ended without finishing")
        try:
            if llm is None or getattr(llm, "engine", None) is None:
                raise ValueError("this predictor is not a language model on cocina's engine")
            engine = llm.engine
            params = SamplingParams(**{**message.params, "stop": tuple(message.params.get("stop") or ())})
            async for ev in engine.generate(list(message.prompt_ids), params, request_id=tag):
                if isinstance(ev, TokenEvent):
                    logprobs = None
                    if ev.logprobs:
                        logprobs = [
                            [
                                _token(engine, lp.token_id),
                                float(lp.logprob),
                                [[_token(engine, t), float(p)] for t, p in lp.top],
                            ]
                            for lp in ev.logprobs
                        ]
                    self.channel.send(Tokens(ev.text, [int(t) for t in ev.token_ids], logprobs), tag)
                elif isinstance(ev, FinishedEvent):
                    reason = str(getattr(ev.reason, "value", ev.reason))
                    end = GenerationEnd(
                        "length" if reason == "length" else "stop",
                        ev.usage.prompt_tokens,
                        ev.usage.completion_tokens,
                    )
                    break
                elif isinstance(ev, ErrorEvent):
                    end = GenerationEnd("error", error=ev.message)
                    break
        except asyncio.CancelledError:
            end = GenerationEnd("abort")
        except EngineOverloaded as exc:
            end = GenerationEnd("overloaded", error=str(exc) or "the engine's queue is full")
        except Exception as exc:
            end = GenerationEnd("error", error=_describe(exc))
        finally:
            self.tasks.pop(tag, None)
        self.channel.send(end, tag)


def _token(engine: Any, token_id: int) -> str:
    try:
        return str(engine.engine.tokenizer.decode([token_id]))
    except Exception:
        return ""


async def _await(awaitable: Any) -> Any:
    return await awaitable


def schema_main(root: str, ref: str, mode: str) -> int:
    """`python -m cocina.worker.child --schema ROOT REF MODE`: print the OpenAPI schema of a project's predictor
    (or trainer) as JSON without running setup() (`cocina schema`); on failure, the reason on stderr and 1."""
    from cocina.sdk.predictor import PredictorLoadError, load_predictor
    from cocina.sdk.schema import derive_schema
    from cocina.sdk.shim import install_cog_shim

    os.chdir(root)
    try:
        install_cog_shim()
        schema = derive_schema(load_predictor(ref, pathlib.Path(root), mode), mode=mode)
    except (TypeError, PredictorLoadError) as exc:
        print(f"error: {ref}: {exc}", file=sys.stderr)
        return 1
    except BaseException as exc:
        traceback.print_exception(exc)
        print(f"error: importing {ref} failed: {_describe_setup(exc)}", file=sys.stderr)
        return 1
    print(json.dumps(schema, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process; `argv[1]` is the JSON spec written by the runner (or `--schema`, see
    `schema_main`)."""
    args = sys.argv if argv is None else argv
    if len(args) == 5 and args[1] == "--schema":
        sys.exit(schema_main(args[2], args[3], args[4]))
    spec = json.loads(args[1])
    for fd in (spec["event_fd"], spec["request_fd"]):
        # pass_fds made them inheritable; the user's subprocesses must not hold our pipes open.
        os.set_inheritable(fd, False)
    Child(spec).run()
    # Skip interpreter teardown: non-daemon threads a predictor started must not keep a finished worker alive.
    sys.stdout.flush()
    sys.stderr.flush()
    _flush_c_stdio()
    os._exit(0)


if __name__ == "__main__":
    main()
