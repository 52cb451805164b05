"""Adapters from cocina's worker and engine to the server's backend protocols.

- `RunnerBackend`: a project directory served through the worker's `Runner` (the predictor runs in a child
  process, as in Cog).
- `EngineGenerator`: an `AsyncLLMEngine` as the OpenAI surface's `TextGenerator`.
- `InProcessLLMBackend`: the built-in `LLMPredictor` run in the server's process on the same engine, so the
  Cog/Replicate surfaces and the OpenAI surface share one continuous-batching engine (`cocina serve --model`).

Heavy modules (worker, engine, torch) are imported inside functions so that importing the server stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
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


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


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
        from cocina.worker import events as wev

        async for ev in self.runner.predict(inputs, prediction_id=prediction_id):
            if isinstance(ev, wev.Log):
                yield Log(ev.data, ev.source)
            elif isinstance(ev, wev.Output):
                yield Output(ev.value)
            elif isinstance(ev, wev.Done):
                yield Done(PredictionStatus(ev.status.value), ev.error, ev.predict_time)
                return

    async def cancel(self, prediction_id: str) -> None:
        await self.runner.cancel(prediction_id)

    async def shutdown(self, grace_s: float) -> None:
        await self.runner.shutdown(grace_s=grace_s)


class EngineGenerator:
    """An `AsyncLLMEngine` as a `TextGenerator`."""

    def __init__(self, aengine: Any, model_name: str) -> None:
        self.aengine = aengine
        self._model_name = model_name

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
        """The engine's `EngineStats` snapshot (for `/metrics`)."""
        return self.aengine.stats()

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
    """The built-in `LLMPredictor` on a shared engine, run in the server's process."""

    def __init__(self, aengine: Any, *, concurrency: int = 64) -> None:
        self.aengine = aengine
        self.concurrency = concurrency
        self._schema: dict[str, Any] = {}
        self._validator: Any = None
        self._predictor: Any = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def openapi_schema(self) -> dict[str, Any]:
        return self._schema

    @property
    def max_concurrency(self) -> int:
        return self.concurrency

    def engine_stats(self) -> Any:
        """The engine's `EngineStats` snapshot (for `/metrics`)."""
        return self.aengine.stats()

    async def start(self) -> SetupInfo:
        started = utc_now()
        try:
            from cocina.llm import LLMPredictor
            from cocina.sdk.schema import InputValidator, derive_schema

            predictor = LLMPredictor()
            predictor.engine = self.aengine  # setup() would load a second copy of the model
            self._predictor = predictor
            self._schema = derive_schema(predictor)
            self._validator = InputValidator(self._schema)
        except Exception as exc:
            return SetupInfo(
                SetupStatus.FAILED, f"{type(exc).__name__}: {exc}\n", started, utc_now(), str(exc)
            )
        return SetupInfo(SetupStatus.SUCCEEDED, "engine loaded\n", started, utc_now())

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
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.aengine.shutdown)
