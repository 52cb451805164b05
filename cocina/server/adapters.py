"""Adapters from cocina's worker and engine to the server's backend protocols.

- `RunnerBackend`: a project directory served through the worker's `Runner` (the predictor runs in a child
  process, as in Cog).
- `EngineGenerator`: an `AsyncLLMEngine` as the OpenAI surface's `TextGenerator`.
- `InProcessLLMBackend`: the built-in `LLMPredictor` run in the server's process on the same engine, so the
  Cog/Replicate surfaces and the OpenAI surface share one continuous-batching engine (`cocina serve --model`).
- `EngineHandle`: the engine both share, already loaded or loaded by the backend's `start()` in a background
  thread, so the server listens (and `/health-check` says STARTING) while the weights load.

Heavy modules (worker, engine, torch) are imported inside functions so that importing the server stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from cocina.server.backend import (
    Done,
    Finished,
    GenerationEvent,
    GenerationFailed,
    GenerationOptions,
    GeneratorOverloaded,
    InvalidInput,
    Log,
    Output,
    PredictEvent,
    PredictionStatus,
    SetupInfo,
    SetupStatus,
    TextDelta,
    TokenLogprob,
)
from cocina.server.store import utc_now

log = logging.getLogger("cocina.server")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


class EngineNotLoaded(RuntimeError):
    """The engine is used before it has loaded (the server is STARTING, or its setup failed)."""


# Loads the engine (blocking: imports torch, reads the weights) and returns it; reports progress through the
# handle it is given (`progress`, `note`).
EngineLoader = Callable[["EngineHandle"], Any]


class EngineHandle:
    """The `AsyncLLMEngine` shared by `InProcessLLMBackend` and `EngineGenerator`: given loaded
    (`EngineHandle(aengine)`), or loaded later by `await load()` from `EngineHandle(loader=...)`.

    Loading runs in a daemon thread, not the event loop's default executor: torch loading blocks for seconds to
    minutes, during which the loop must keep answering `/health-check`; and a server asked to stop while loading
    must not wait for the load to end (`asyncio.run` joins its default executor at exit, a daemon thread is not
    joined). Progress lines go to the `cocina.server` log (the terminal) and to `logs` (the setup logs).
    """

    def __init__(self, aengine: Any = None, *, loader: EngineLoader | None = None) -> None:
        if aengine is None and loader is None:
            raise ValueError("EngineHandle needs an engine or a loader")
        self._aengine = aengine
        self._loader = loader
        self._loading: asyncio.Future[Any] | None = None
        self.logs: list[str] = []

    @property
    def loaded(self) -> bool:
        """Whether the engine is there to use."""
        return self._aengine is not None

    @property
    def aengine(self) -> Any:
        """The engine; `EngineNotLoaded` before it has loaded."""
        if self._aengine is None:
            raise EngineNotLoaded("the model is not loaded")
        return self._aengine

    def progress(self, line: str) -> None:
        """One progress line: to the terminal and to the setup logs."""
        self.note(line)
        log.info("cocina serve: %s", line.rstrip("\n"))

    def note(self, line: str) -> None:
        """A line for the setup logs only (what the terminal has already shown, e.g. the engine's own print)."""
        self.logs.append(line.rstrip("\n") + "\n")

    async def load(self) -> Any:
        """Load the engine once (later calls wait for the same load); raises what the loader raised."""
        if self._aengine is not None:
            return self._aengine
        if self._loading is None:
            assert self._loader is not None
            self._loading = self._start_thread(self._loader)
        # shield: a caller being cancelled (drain during setup) must not mark the shared load as cancelled.
        self._aengine = await asyncio.shield(self._loading)
        return self._aengine

    def _start_thread(self, loader: EngineLoader) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def deliver(result: Any, error: BaseException | None) -> None:
            if future.done():  # nobody waits any more (the server stopped): do not leak a loaded engine
                _shutdown_quietly(result)
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def work() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = loader(self)
            except Exception as exc:
                error = exc
            except BaseException as exc:
                # SystemExit & co. cannot go into a future; the server must still leave STARTING.
                error = RuntimeError(f"the model load was interrupted ({type(exc).__name__})")
            try:
                loop.call_soon_threadsafe(deliver, result, error)
            except RuntimeError:  # the event loop is closed: the server has stopped
                _shutdown_quietly(result)

        threading.Thread(target=work, name="cocina-engine-load", daemon=True).start()
        return future

    def abandon(self) -> None:
        """Nobody will use a load still under way: the engine is shut down as soon as it has loaded."""
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()

    def shutdown(self) -> None:
        """Stop the engine's loop thread (if it loaded)."""
        _shutdown_quietly(self._aengine)


def _shutdown_quietly(aengine: Any) -> None:
    if aengine is not None:
        with contextlib.suppress(Exception):
            aengine.shutdown()


def _handle(engine: Any) -> EngineHandle:
    return engine if isinstance(engine, EngineHandle) else EngineHandle(engine)


class RunnerBackend:
    """The worker's `Runner` as a `PredictorBackend`."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    @property
    def openapi_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.runner.openapi_schema
        return schema

    @property
    def max_concurrency(self) -> int:
        return int(self.runner.concurrency)

    async def start(self) -> SetupInfo:
        result = await self.runner.start()
        return SetupInfo(
            status=SetupStatus(result.status.value),
            logs=result.logs,
            started_at=_iso(result.started_at),
            completed_at=_iso(result.completed_at),
            error=result.error,
        )

    def validate(self, raw_input: dict[str, Any]) -> dict[str, Any]:
        from cocina.sdk.schema import InputValidationError

        try:
            normalized: dict[str, Any] = self.runner.validator.validate(raw_input)
        except InputValidationError as exc:
            raise InvalidInput(exc.errors) from None
        return normalized

    async def predict(self, inputs: dict[str, Any], prediction_id: str) -> AsyncIterator[PredictEvent]:
        async for ev in self.runner.predict(inputs, prediction_id=prediction_id):
            yield ev
            if isinstance(ev, Done):
                return

    async def cancel(self, prediction_id: str) -> None:
        await self.runner.cancel(prediction_id)

    async def shutdown(self, grace_s: float) -> None:
        await self.runner.shutdown(grace_s=grace_s)


class EngineGenerator:
    """An `AsyncLLMEngine` (or an `EngineHandle` still loading) as a `TextGenerator`.

    The OpenAI surface only calls it once the runtime is READY, i.e. after the engine loaded.
    """

    def __init__(self, engine: Any, model_name: str) -> None:
        self.handle = _handle(engine)
        self._model_name = model_name

    @property
    def aengine(self) -> Any:
        """The engine (`EngineNotLoaded` while it loads)."""
        return self.handle.aengine

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def max_model_len(self) -> int:
        return int(self.aengine.engine.max_model_len)

    @property
    def tokenizer(self) -> Any:
        return self.aengine.engine.tokenizer

    def engine_stats(self) -> Any:
        """The engine's `EngineStats` snapshot (for `/metrics`); None while it loads (no engine metrics yet)."""
        return self.aengine.stats() if self.handle.loaded else None

    def encode(self, text: str) -> list[int]:
        return list(self.aengine.engine.encode(text))

    def encode_chat(self, messages: list[dict[str, Any]]) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys") or hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            return [int(t) for t in ids]
        # No template: plain "role: content" lines, then the assistant's turn.
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return self.encode(text)

    def _token(self, token_id: int) -> str:
        try:
            return str(self.tokenizer.decode([token_id]))
        except Exception:
            return ""

    async def generate(
        self, prompt_ids: list[int], options: GenerationOptions, request_id: str
    ) -> AsyncIterator[GenerationEvent]:
        from cocina.engine.errors import EngineOverloaded
        from cocina.engine.llm_engine import ErrorEvent, FinishedEvent, TokenEvent
        from cocina.engine.sequence import SamplingParams

        params = SamplingParams(
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            presence_penalty=options.presence_penalty,
            frequency_penalty=options.frequency_penalty,
            seed=None if options.seed is None else options.seed % 2**63,
            stop=options.stop,
            logprobs=options.logprobs,
            ignore_eos=options.ignore_eos,
        )
        stream = self.aengine.generate(prompt_ids, params, request_id=request_id)
        try:
            try:
                first = await anext(stream)
            except EngineOverloaded as exc:
                raise GeneratorOverloaded(str(exc)) from None
            ev = first
            while True:
                if isinstance(ev, TokenEvent):
                    lps = tuple(
                        TokenLogprob(
                            self._token(lp.token_id),
                            float(lp.logprob),
                            tuple((self._token(t), float(p)) for t, p in lp.top),
                        )
                        for lp in (ev.logprobs or [])
                    )
                    yield TextDelta(ev.text, tuple(ev.token_ids), lps)
                elif isinstance(ev, FinishedEvent):
                    reason = str(getattr(ev.reason, "value", ev.reason))
                    yield Finished(
                        "length" if reason == "length" else "stop",
                        ev.usage.prompt_tokens,
                        ev.usage.completion_tokens,
                    )
                    return
                elif isinstance(ev, ErrorEvent):
                    yield GenerationFailed(ev.message)
                    return
                ev = await anext(stream)
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # leaving early aborts the request in the engine


class InProcessLLMBackend:
    """The built-in `LLMPredictor` on a shared engine, run in the server's process.

    `start()` (the runtime's setup, in the background) loads the engine when given a loading `EngineHandle`:
    a load failure is a failed setup (SETUP_FAILED with the error in the setup logs), not a dead server.
    `concurrency` None: the engine's `max_num_seqs`, known once it loaded.
    """

    def __init__(self, engine: Any, *, concurrency: int | None = None) -> None:
        self.handle = _handle(engine)
        self.concurrency = concurrency
        self._schema: dict[str, Any] = {}
        self._validator: Any = None
        self._predictor: Any = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def openapi_schema(self) -> dict[str, Any]:
        return self._schema

    @property
    def aengine(self) -> Any:
        """The engine (`EngineNotLoaded` while it loads)."""
        return self.handle.aengine

    @property
    def max_concurrency(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        if not self.handle.loaded:
            return 1  # read by the runtime only after setup succeeded; a safe value before
        return max(1, int(self.aengine.engine.config.max_num_seqs))

    def engine_stats(self) -> Any:
        """The engine's `EngineStats` snapshot (for `/metrics`); None while it loads."""
        return self.aengine.stats() if self.handle.loaded else None

    async def start(self) -> SetupInfo:
        started = utc_now()
        try:
            await self.handle.load()
        except Exception as exc:
            # The message only: a traceback of torch's loading code tells an operator less than the cause,
            # and the setup logs are shown to API clients by /health-check.
            error = f"{type(exc).__name__}: {exc}"
            log.error("cocina serve: the model failed to load: %s", error)
            logs = "".join(self.handle.logs) + f"the model failed to load: {error}\n"
            return SetupInfo(SetupStatus.FAILED, logs, started, utc_now(), error)
        try:
            from cocina.llm import LLMPredictor
            from cocina.sdk.schema import InputValidator, derive_schema

            predictor = LLMPredictor()
            predictor.engine = self.aengine  # setup() would load a second copy of the model
            self._predictor = predictor
            self._schema = derive_schema(predictor)
            self._validator = InputValidator(self._schema)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            logs = "".join(self.handle.logs) + f"{error}\n"
            return SetupInfo(SetupStatus.FAILED, logs, started, utc_now(), error)
        return SetupInfo(SetupStatus.SUCCEEDED, "".join(self.handle.logs) + "engine loaded\n", started, utc_now())

    def validate(self, raw_input: dict[str, Any]) -> dict[str, Any]:
        from cocina.sdk.schema import InputValidationError

        try:
            normalized: dict[str, Any] = self._validator.validate(raw_input)
        except InputValidationError as exc:
            raise InvalidInput(exc.errors) from None
        return normalized

    async def predict(self, inputs: dict[str, Any], prediction_id: str) -> AsyncIterator[PredictEvent]:
        from cocina.sdk.schema import coerce_inputs

        t0 = time.monotonic()
        queue: asyncio.Queue[PredictEvent] = asyncio.Queue()

        async def run() -> None:
            try:
                kwargs = coerce_inputs(self._predictor.predict, inputs)
                async for piece in self._predictor.predict(**kwargs):
                    await queue.put(Output(piece))
                await queue.put(Done(PredictionStatus.SUCCEEDED, None, time.monotonic() - t0))
            except asyncio.CancelledError:
                await queue.put(Done(PredictionStatus.CANCELED, None, time.monotonic() - t0))
            except Exception as exc:
                await queue.put(Log(f"{type(exc).__name__}: {exc}\n", "stderr"))
                await queue.put(
                    Done(PredictionStatus.FAILED, f"{type(exc).__name__}: {exc}", time.monotonic() - t0)
                )

        task = asyncio.get_running_loop().create_task(run())
        self._tasks[prediction_id] = task
        try:
            while True:
                ev = await queue.get()
                yield ev
                if isinstance(ev, Done):
                    return
        finally:
            self._tasks.pop(prediction_id, None)
            if not task.done():
                task.cancel()

    async def cancel(self, prediction_id: str) -> None:
        task = self._tasks.get(prediction_id)
        if task is not None:
            task.cancel()

    async def shutdown(self, grace_s: float) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        self.handle.abandon()
        if self.handle.loaded:
            await asyncio.to_thread(self.handle.shutdown)
