"""The OpenAI API for language-model predictors: `/v1/models`, `/v1/completions`, `/v1/chat/completions`.

Requests are validated here (bounds OpenAI documents, `max_tokens_limit`, the context length) and answered in
OpenAI's shapes; generation is the `TextGenerator`'s. `n` choices (and several prompts) run as concurrent
generations. Errors before the first byte are OpenAI error objects; a failure mid-stream is sent as an SSE
`error` object before `[DONE]`. A client that disconnects — streaming or not — cancels its generations, which
frees their engine slots.

Every accepted request (one that reached the engine) is a row in the prediction store, surface `openai`, with
the request as `input` and the answer in the non-streaming response's shape as `output` — so the audit of what
was asked and answered (`GET /v1/predictions`) covers this surface too. Such rows are never re-run after a
crash (the client is gone): recovery fails them, as it does any prediction without a runnable input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cocina.server.auth import check_auth
from cocina.server.backend import (
    Finished,
    GenerationEvent,
    GenerationFailed,
    GenerationOptions,
    GeneratorOverloaded,
    PredictionStatus,
    TextDelta,
    TextGenerator,
    TokenLogprob,
)
from cocina.server.bodies import dumps, parse_body
from cocina.server.errors import ApiError, BadRequest, ContextLengthExceeded, NotFound, Unavailable
from cocina.server.runtime import Runtime
from cocina.server.settings import ServerSettings
from cocina.server.store import PredictionRecord, utc_now

router = APIRouter(prefix="/v1", dependencies=[Depends(check_auth)])
log = logging.getLogger("cocina.server.openai")

MAX_N = 16
MAX_STOP = 4
MAX_CHOICES = 64  # prompts x n in one request: more would flood the engine's queue from a single call


class StreamOptions(pydantic.BaseModel):
    include_usage: bool = False


class _Sampling(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = pydantic.Field(default=None, ge=1)
    temperature: float | None = pydantic.Field(default=None, ge=0, le=2)
    top_p: float | None = pydantic.Field(default=None, gt=0, le=1)
    n: int = pydantic.Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = pydantic.Field(default=None, ge=-(2**63), lt=2**64)
    presence_penalty: float | None = pydantic.Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = pydantic.Field(default=None, ge=-2, le=2)
    user: str | None = None

    @pydantic.field_validator("stop")
    @classmethod
    def _check_stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return v

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = pydantic.Field(default=None, ge=0, le=5)
    echo: bool = False


class ChatMessage(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            # Only text parts are understood; other parts (images, audio) are refused in `_chat_prompt`.
            return "".join(str(p.get("text", "")) for p in self.content)
        return self.content or ""


class ResponseFormat(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = pydantic.Field(min_length=1)
    max_completion_tokens: int | None = pydantic.Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = pydantic.Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None


def _generator(request: Request) -> TextGenerator:
    """The language model, once it can generate: 503 (OpenAI's error object, `Retry-After` while loading)
    while the model loads, after its load failed, or while the server drains — as the other surfaces answer."""
    generator: TextGenerator | None = request.app.state.generator
    if generator is None:
        raise NotFound("This server's model is not a language model; use the Cog or Replicate API.")
    runtime: Runtime = request.app.state.runtime
    runtime.check_accepting()
    return generator


def _settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def _check_model(request: Request, generator: TextGenerator, model: str) -> None:
    if model not in (generator.model_name, _settings(request).model_ref):
        raise NotFound(f"The model `{model}` does not exist.", param="model")


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """OpenAI's model list, with Replicate's page fields (`results`, `next`): both clients call it."""
    settings = _settings(request)
    generator: TextGenerator | None = request.app.state.generator
    name = generator.model_name if generator is not None else settings.model_ref
    data = [{"id": name, "object": "model", "created": 0, "owned_by": settings.model_owner}]
    return {"object": "list", "data": data, "next": None, "previous": None, "results": []}


# ---- request planning -------------------------------------------------------------------------------------


@dataclass
class _Choice:
    """One generation: its prompt, and what it produced."""

    index: int
    prompt_ids: list[int]
    options: GenerationOptions
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0


def _max_tokens(
    request: Request,
    generator: TextGenerator,
    asked: int | None,
    default: int | None,
    prompt_len: int,
    what: str,
) -> int:
    limit = _settings(request).max_tokens_limit
    context = generator.max_model_len
    if prompt_len >= context:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context} tokens. However, your {what} resulted in "
            f"{prompt_len} tokens. Please reduce the length of the {what}.",
            param=what,
        )
    if asked is not None and asked > limit:
        raise BadRequest(
            f"max_tokens is too large: {asked}. This server allows at most {limit}.", param="max_tokens"
        )
    if asked is not None and prompt_len + asked > context:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_len + asked} tokens ({prompt_len} in the {what}, {asked} in the completion). "
            f"Please reduce the length of the {what} or completion.",
            param=what,
        )
    if asked is not None:
        return asked
    return min(default if default is not None else context - prompt_len, context - prompt_len, limit)


def _options(body: _Sampling, max_tokens: int, logprobs: int | None, seed_offset: int) -> GenerationOptions:
    return GenerationOptions(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        seed=None if body.seed is None else body.seed + seed_offset,
        stop=body.stops(),
        logprobs=logprobs,
    )


def _completion_prompts(generator: TextGenerator, prompt: Any) -> list[list[int]]:
    if isinstance(prompt, str):
        return [generator.encode(prompt)]
    if not prompt:
        raise BadRequest("prompt must not be empty.", param="prompt")
    if all(isinstance(p, int) for p in prompt):
        prompts = [list(prompt)]
    elif all(isinstance(p, str) for p in prompt):
        prompts = [generator.encode(p) for p in prompt]
    else:
        prompts = [list(p) for p in prompt]
    for ids in prompts:
        if not ids:
            raise BadRequest("prompt must not be empty.", param="prompt")
        if any(t < 0 for t in ids):
            raise BadRequest("token ids in prompt must not be negative.", param="prompt")
    return prompts


def _chat_prompt(generator: TextGenerator, messages: list[ChatMessage]) -> list[int]:
    for i, m in enumerate(messages):
        if isinstance(m.content, list) and any(p.get("type", "text") != "text" for p in m.content):
            raise BadRequest("Only text content parts are supported.", param=f"messages.[{i}].content")
    return generator.encode_chat([{"role": m.role, "content": m.text()} for m in messages])


# ---- running ----------------------------------------------------------------------------------------------


class _Run:
    """The generations of one request, merged into one ordered stream of (choice, event)."""

    def __init__(self, generator: TextGenerator, choices: list[_Choice], request_id: str) -> None:
        self.choices = choices
        self.queue: asyncio.Queue[tuple[_Choice, GenerationEvent | BaseException | None]] = asyncio.Queue()
        self._streams = [
            generator.generate(c.prompt_ids, c.options, f"{request_id}-{c.index}") for c in choices
        ]
        self._tasks: list[asyncio.Task[None]] = []
        self.error: str | None = None  # why the run failed, once it has
        self.first_output_at: float | None = None  # time.monotonic() of the first text

    async def start(self) -> None:
        """Pull each generation's first event, so refusals (overload, bad prompt) happen before any byte."""
        firsts: list[GenerationEvent | None] = []
        try:
            for stream in self._streams:
                firsts.append(await anext(stream, None))
        except GeneratorOverloaded as exc:
            await self.aclose()
            raise Unavailable(str(exc) or "The engine is overloaded.", headers={"Retry-After": "1"}) from None
        except ValueError as exc:
            await self.aclose()
            raise BadRequest(str(exc)) from None
        except BaseException:
            await self.aclose()
            raise
        loop = asyncio.get_running_loop()
        for choice, stream, first in zip(self.choices, self._streams, firsts, strict=True):
            self._tasks.append(loop.create_task(self._pump(choice, stream, first)))

    async def _pump(
        self, choice: _Choice, stream: AsyncIterator[GenerationEvent], first: GenerationEvent | None
    ) -> None:
        try:
            if first is not None:
                await self.queue.put((choice, first))
                if not isinstance(first, TextDelta):
                    return
            async for ev in stream:
                await self.queue.put((choice, ev))
                if not isinstance(ev, TextDelta):
                    return
            await self.queue.put((choice, GenerationFailed("The generation ended without finishing.")))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.queue.put((choice, exc))
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    async def events(self) -> AsyncIterator[tuple[_Choice, GenerationEvent]]:
        """Events until every choice finished; raises `GenerationError` on a failure."""
        pending = len(self.choices)
        while pending:
            choice, ev = await self.queue.get()
            if isinstance(ev, BaseException):
                self.error = f"The engine failed ({type(ev).__name__})."
                raise GenerationError(self.error)
            if isinstance(ev, GenerationFailed):
                self.error = ev.message
                raise GenerationError(ev.message)
            assert ev is not None
            if isinstance(ev, TextDelta):
                if self.first_output_at is None and ev.text:
                    self.first_output_at = time.monotonic()
                choice.text += ev.text
                choice.logprobs.extend(ev.logprobs)
                choice.completion_tokens += len(ev.token_ids)
            elif isinstance(ev, Finished):
                choice.finish_reason = ev.reason
                choice.completion_tokens = ev.completion_tokens
                pending -= 1
            yield choice, ev

    async def aclose(self) -> None:
        """Cancel every generation (a client went away, or the request failed) and wait until they let go."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for stream in self._streams:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]


class GenerationError(ApiError):
    status = 500
    title = "Generation failed"
    openai_type = "server_error"


async def _collect_or_disconnect(request: Request, run: _Run) -> None:
    """Drain the run; if the client disconnects first, cancel it (the non-streaming case)."""

    async def drain() -> None:
        async for _ in run.events():
            pass

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.1)

    drain_task = asyncio.ensure_future(drain())
    watch_task = asyncio.ensure_future(watch())
    try:
        done, _ = await asyncio.wait({drain_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        if drain_task in done:
            drain_task.result()
        else:
            drain_task.cancel()
            await run.aclose()
            raise asyncio.CancelledError()
    finally:
        watch_task.cancel()
        await run.aclose()


def _usage(choices: list[_Choice]) -> dict[str, int]:
    # Each prompt is counted once, however many choices (n) were drawn from it.
    seen: set[int] = set()
    prompt_tokens = 0
    for c in choices:
        key = id(c.prompt_ids)
        if key not in seen:
            seen.add(key)
            prompt_tokens += len(c.prompt_ids)
    completion = sum(c.completion_tokens for c in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def _sse(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


def _completion_logprobs(lps: list[TokenLogprob], offset0: int = 0) -> dict[str, Any]:
    offsets, pos = [], offset0
    for lp in lps:
        offsets.append(pos)
        pos += len(lp.token)
    return {
        "tokens": [lp.token for lp in lps],
        "token_logprobs": [lp.logprob for lp in lps],
        "top_logprobs": [dict(lp.top) for lp in lps],
        "text_offset": offsets,
    }


def _chat_logprobs(lps: list[TokenLogprob]) -> dict[str, Any]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {
        "content": [
            {**entry(lp.token, lp.logprob), "top_logprobs": [entry(t, p) for t, p in lp.top]} for lp in lps
        ]
    }


# ---- audit -----------------------------------------------------------------------------------------------


class _Audit:
    """The store row of one OpenAI request: written `processing` before the first byte, then its outcome."""

    def __init__(self, request: Request, request_id: str, body: pydantic.BaseModel) -> None:
        self.runtime: Runtime = request.app.state.runtime
        self.t0 = time.monotonic()
        now = utc_now()
        self.record = PredictionRecord(
            id=request_id,
            status=PredictionStatus.PROCESSING,
            surface="openai",
            input={"path": request.url.path, **body.model_dump(mode="json", exclude_unset=True)},
            run_input=None,  # an OpenAI request is answered once, to the client that asked; never re-run
            created_at=now,
            started_at=now,
        )
        self.runtime.store.insert(self.record)

    def finish(self, status: PredictionStatus, output: Any, run: _Run, error: str | None = None) -> None:
        """Record how the request ended (called exactly once, whatever happened)."""
        rec = self.record
        if rec.status.is_terminal:
            return
        elapsed = time.monotonic() - self.t0
        usage = _usage(run.choices)
        rec.status = status
        rec.output = output
        rec.error = error
        rec.completed_at = utc_now()
        # Replicate's names for language-model metrics, so the audit reads like a Replicate LLM prediction.
        rec.metrics = {
            "predict_time": round(elapsed, 6),
            "total_time": round(elapsed, 6),
            "input_token_count": usage["prompt_tokens"],
            "output_token_count": usage["completion_tokens"],
        }
        if run.first_output_at is not None:
            rec.metrics["time_to_first_token"] = round(run.first_output_at - self.t0, 6)
        try:
            self.runtime.store.update(rec)
        except Exception:
            log.exception("could not store OpenAI request %s", rec.id)
        self.runtime.notify_finished(rec)


def _partial(run: _Run) -> dict[str, Any]:
    """What a failed or canceled request had produced, per choice."""
    return {"choices": [{"index": c.index, "text": c.text, "finish_reason": c.finish_reason} for c in run.choices]}


async def _audited_stream(
    stream: AsyncIterator[bytes], audit: _Audit, run: _Run, result: Callable[[], dict[str, Any]]
) -> AsyncIterator[bytes]:
    """`stream`, then the audit row: succeeded (every choice finished), failed (the engine), or canceled (the
    client went away first)."""
    try:
        async for chunk in stream:
            yield chunk
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
        if run.error is not None:
            audit.finish(PredictionStatus.FAILED, _partial(run), run, run.error)
        elif all(c.finish_reason is not None for c in run.choices):
            audit.finish(PredictionStatus.SUCCEEDED, result(), run)
        else:
            audit.finish(PredictionStatus.CANCELED, _partial(run), run, "The client disconnected.")


async def _collect_audited(request: Request, run: _Run, audit: _Audit) -> None:
    """The non-streaming run, with its outcome recorded when it does not succeed."""
    try:
        await _collect_or_disconnect(request, run)
    except asyncio.CancelledError:
        audit.finish(PredictionStatus.CANCELED, _partial(run), run, "The client disconnected.")
        raise
    except Exception as exc:
        audit.finish(PredictionStatus.FAILED, _partial(run), run, run.error or f"{type(exc).__name__}")
        raise


def _stream_response(
    chunks: AsyncIterator[bytes],
    run: _Run,
    audit: _Audit,
    result: Callable[[], dict[str, Any]],
    base: dict[str, Any],
    choices: list[_Choice],
    include_usage: bool,
) -> StreamingResponse:
    """The SSE framing both endpoints share: their chunks, the usage chunk when asked for, a generation error as
    an error event, then `[DONE]`. The run is closed however the stream ends; the audit records its outcome."""

    async def stream() -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
            if include_usage:
                yield _sse({**base, "choices": [], "usage": _usage(choices)})
        except GenerationError as exc:
            yield _sse({"error": {"message": exc.message, "type": "server_error", "param": None, "code": None}})
        finally:
            await run.aclose()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        _audited_stream(stream(), audit, run, result),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store"},
    )


async def _answer(request: Request, run: _Run, audit: _Audit, result: Callable[[], dict[str, Any]]) -> JSONResponse:
    """The non-streaming answer, recorded as succeeded once the run has finished."""
    await _collect_audited(request, run, audit)
    answer = result()
    audit.finish(PredictionStatus.SUCCEEDED, answer, run)
    return JSONResponse(answer)


# ---- /v1/completions --------------------------------------------------------------------------------------


@router.post("/completions")
async def completions(request: Request) -> Response:
    generator = _generator(request)
    body = await parse_body(request, CompletionRequest)
    _check_model(request, generator, body.model)
    prompts = _completion_prompts(generator, body.prompt)
    if len(prompts) * body.n > MAX_CHOICES:
        raise BadRequest(
            f"{len(prompts)} prompts x n={body.n} is more than {MAX_CHOICES} completions in one request.",
            param="prompt",
        )
    choices = []
    for p_i, ids in enumerate(prompts):
        max_tokens = _max_tokens(request, generator, body.max_tokens, 16, len(ids), "prompt")
        for j in range(body.n):
            index = p_i * body.n + j
            choices.append(_Choice(index, ids, _options(body, max_tokens, body.logprobs, j)))
    rid = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    run = _Run(generator, choices, rid)
    await run.start()
    audit = _Audit(request, rid, body)
    base = {"id": rid, "object": "text_completion", "created": created, "model": body.model}

    def result() -> dict[str, Any]:
        return {
            **base,
            "choices": [
                {
                    "index": c.index,
                    "text": c.text,
                    "logprobs": _completion_logprobs(c.logprobs) if body.logprobs is not None else None,
                    "finish_reason": c.finish_reason,
                }
                for c in choices
            ],
            "usage": _usage(choices),
        }

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def chunks() -> AsyncIterator[bytes]:
            offsets = {c.index: 0 for c in choices}
            async for choice, ev in run.events():
                item: dict[str, Any] = {"index": choice.index, "text": "", "logprobs": None, "finish_reason": None}
                if isinstance(ev, TextDelta):
                    if not ev.text and not ev.logprobs:
                        continue
                    item["text"] = ev.text
                    if body.logprobs is not None:
                        item["logprobs"] = _completion_logprobs(list(ev.logprobs), offsets[choice.index])
                    offsets[choice.index] += len(ev.text)
                elif isinstance(ev, Finished):
                    item["finish_reason"] = ev.reason
                chunk = {**base, "choices": [item]}
                if include_usage:
                    chunk["usage"] = None
                yield _sse(chunk)

        return _stream_response(chunks(), run, audit, result, base, choices, include_usage)
    return await _answer(request, run, audit, result)


# ---- /v1/chat/completions ---------------------------------------------------------------------------------


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    generator = _generator(request)
    body = await parse_body(request, ChatRequest)
    _check_model(request, generator, body.model)
    if body.response_format is not None and body.response_format.type != "text":
        raise BadRequest(
            f"response_format {body.response_format.type!r} is not supported; use 'text'.",
            param="response_format",
        )
    ids = _chat_prompt(generator, body.messages)
    asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    max_tokens = _max_tokens(request, generator, asked, None, len(ids), "messages")
    top = (body.top_logprobs or 0) if body.logprobs else None
    choices = [_Choice(j, ids, _options(body, max_tokens, top, j)) for j in range(body.n)]
    rid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    run = _Run(generator, choices, rid)
    await run.start()
    audit = _Audit(request, rid, body)
    base = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": body.model,
        "system_fingerprint": None,
    }

    def result() -> dict[str, Any]:
        return _chat_result(base, choices, body.logprobs)

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(items: list[dict[str, Any]]) -> bytes:
            obj: dict[str, Any] = {**base, "choices": items}
            if include_usage:
                obj["usage"] = None
            return _sse(obj)

        async def chunks() -> AsyncIterator[bytes]:
            for c in choices:
                role = {"role": "assistant", "content": ""}
                yield chunk([{"index": c.index, "delta": role, "logprobs": None, "finish_reason": None}])
            async for choice, ev in run.events():
                if isinstance(ev, TextDelta):
                    if not ev.text and not ev.logprobs:
                        continue
                    lp = _chat_logprobs(list(ev.logprobs)) if body.logprobs else None
                    delta = {"content": ev.text}
                    yield chunk([{"index": choice.index, "delta": delta, "logprobs": lp, "finish_reason": None}])
                elif isinstance(ev, Finished):
                    yield chunk([{"index": choice.index, "delta": {}, "logprobs": None, "finish_reason": ev.reason}])

        return _stream_response(chunks(), run, audit, result, base, choices, include_usage)
    return await _answer(request, run, audit, result)


def _chat_result(base: dict[str, Any], choices: list[_Choice], with_logprobs: bool) -> dict[str, Any]:
    """The non-streaming chat answer (also what the audit stores for a stream)."""
    return {
        **base,
        "object": "chat.completion",
        "choices": [
            {
                "index": c.index,
                "message": {"role": "assistant", "content": c.text},
                "logprobs": _chat_logprobs(c.logprobs) if with_logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for c in choices
        ],
        "usage": _usage(choices),
    }
