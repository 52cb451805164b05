"""OpenAI's API for the server's language models: `/v1/completions`, `/v1/chat/completions` (the model list is
shared with Replicate's, in `cocina.server.replicate.routes`).

A request names its model (`owner/name`, or an alias such as the path given to `--model`). It is planned on
that model (prompts tokenized by the model's own process, bounds and the context length checked), then admitted
through serving's one admission function like any prediction: bounded by the model's queue, recorded before it
runs (surface `openai`, the request as `input`, the answer in the non-streaming response's shape as `output`),
and followed as a stream of token events. `n` choices (and several prompts) run as one prediction whose choices
generate at once. A client that disconnects, streaming or not, cancels the prediction, which frees its engine
slots and KV blocks.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cocina.rag import augment_question
from cocina.server.bodies import dumps, parse_body
from cocina.server.errors import BadRequest, GenerationFailed
from cocina.server.openai.requests import MAX_CHOICES, ChatMessage, ChatRequest, CompletionRequest, Sampling
from cocina.server.state import principal_of, serving_of, set_guard_headers
from cocina.serving import AdmissionRequest, CancelReason, ServedModel, Serving
from cocina.serving.errors import ContextLengthExceeded, InvalidRequest, ShuttingDown
from cocina.serving.events import ChoiceFinished, Completed, TokenChunk, TokenLogprob
from cocina.serving.jobs import Choice, GenerationJob, GenerationOptions
from cocina.serving.retrieval import parse_rag
from cocina.store import PredictionStatus

router = APIRouter(prefix="/v1")


# ---- planning (on the resolved model) ----------------------------------------------------------------------


def _max_tokens(
    model: ServedModel, limit: int, asked: int | None, default: int | None, prompt_len: int, what: str
) -> int:
    context = model.max_model_len or 0
    if prompt_len >= context:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context} tokens. However, your {what} resulted in "
            f"{prompt_len} tokens. Please reduce the length of the {what}.",
            param=what,
        )
    if asked is not None and asked > limit:
        raise InvalidRequest(
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


def _options(body: Sampling, max_tokens: int, logprobs: int | None, seed_offset: int) -> GenerationOptions:
    return GenerationOptions(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        seed=None if body.seed is None else body.seed + seed_offset,
        stop=body.stops(),
        logprobs=logprobs,
        ignore_eos=body.ignore_eos,
    )


async def _encode(
    model: ServedModel, *, text: str | None = None, messages: list[dict[str, Any]] | None = None
) -> list[int]:
    try:
        return await model.encode(text=text, messages=messages)
    except ValueError as exc:  # the chat template refused the conversation
        raise InvalidRequest(str(exc), param="messages" if messages is not None else "prompt") from None


async def _completion_prompts(model: ServedModel, prompt: Any) -> list[list[int]]:
    if isinstance(prompt, str):
        prompts = [await _encode(model, text=prompt)]
    elif not prompt:
        raise InvalidRequest("prompt must not be empty.", param="prompt")
    elif all(isinstance(p, int) for p in prompt):
        prompts = [list(prompt)]
    elif all(isinstance(p, str) for p in prompt):
        prompts = [await _encode(model, text=p) for p in prompt]
    else:
        prompts = [list(p) for p in prompt]
    vocab = int((model.language_model_info or {}).get("vocab_size") or 2**62)
    for ids in prompts:
        if not ids:
            raise InvalidRequest("prompt must not be empty.", param="prompt")
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise InvalidRequest(
                f"token ids in prompt must be in 0..{vocab - 1} (this model's vocabulary); got {bad[:5]}",
                param="prompt",
            )
    return prompts


def _chat_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    for i, m in enumerate(messages):
        if isinstance(m.content, list) and any(p.get("type", "text") != "text" for p in m.content):
            raise InvalidRequest("Only text content parts are supported.", param=f"messages.[{i}].content")
    return [{"role": m.role, "content": m.text()} for m in messages]


# ---- rendering ---------------------------------------------------------------------------------------------


def _sse(obj: Any) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


def _completion_logprobs(lps: list[TokenLogprob] | tuple[TokenLogprob, ...], offset0: int = 0) -> dict[str, Any]:
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


def _chat_logprobs(lps: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> dict[str, Any]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {
        "content": [{**entry(lp.token, lp.logprob), "top_logprobs": [entry(t, p) for t, p in lp.top]} for lp in lps]
    }


def _with_sources(obj: dict[str, Any], req: AdmissionRequest) -> dict[str, Any]:
    """cocina's `sources` and `retrieval` fields (retrieval-augmented generation): the passages the prompt was
    given, and what was searched for them."""
    if req.retrieval is not None:
        obj["sources"] = [p.source() for p in req.passages]
        obj["retrieval"] = req.retrieval.record()
    return obj


def _marker(meta: dict[str, Any]) -> dict[str, Any]:
    """The answer's AI-disclosure marker as an extra field of the response object (clients ignore it)."""
    return {"ai_disclosure": meta} if meta else {}


def _completion_result(
    base: dict[str, Any], job: GenerationJob, with_logprobs: bool, meta: dict[str, Any]
) -> dict[str, Any]:
    return {
        **base,
        "choices": [
            {
                "index": c.index,
                "text": c.text,
                "logprobs": _completion_logprobs(c.logprobs) if with_logprobs else None,
                "finish_reason": c.finish_reason,
            }
            for c in job.choices
        ],
        "usage": job.usage(),
        **_marker(meta),
    }


def _chat_result(base: dict[str, Any], job: GenerationJob, with_logprobs: bool, meta: dict[str, Any]) -> dict[str, Any]:
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
            for c in job.choices
        ],
        "usage": job.usage(),
        **_marker(meta),
    }


# ---- answering ---------------------------------------------------------------------------------------------


def _request(
    request: Request,
    body: Sampling,
    rid: str,
    plan: Callable[[ServedModel, dict[str, Any]], Any],
    question: str | None,
) -> AdmissionRequest:
    return AdmissionRequest(
        surface="openai",
        input={"path": request.url.path, **body.model_dump(mode="json", exclude_unset=True)},
        model=body.model,
        model_field="model",
        generation=plan,
        prediction_id=rid,
        rag=parse_rag(body.rag) if body.rag is not None else None,
        question=question,
        principal=principal_of(request),
    )


async def _admit(request: Request, req: AdmissionRequest) -> tuple[GenerationJob, dict[str, Any]]:
    """Admit the request; the job and the AI-disclosure marker of its answer (empty when turned off)."""
    admitted = await serving_of(request).admit(req)
    assert admitted.active is not None and isinstance(admitted.active.job, GenerationJob)
    set_guard_headers(request, admitted.ticket)
    marker = admitted.ticket.record.get("ai_disclosure") if admitted.ticket is not None else None
    return admitted.active.job, dict(marker or {})


async def _answer(request: Request, serving: Serving, rid: str) -> Response:
    """The non-streaming answer; a client that goes away first cancels the prediction."""
    waiting = asyncio.ensure_future(serving.wait(rid, None))

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.1)

    watcher = asyncio.ensure_future(watch())
    gone = False
    try:
        await asyncio.wait({waiting, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not waiting.done():
            # (A task asked to cancel is not `cancelled()` until the loop runs it again: decide here.)
            gone = True
            waiting.cancel()
            serving.cancel(rid, CancelReason.CLIENT_GONE)
    if gone:
        # Nobody is listening any more: the prediction is canceled and the handler ends quietly (499, nginx's
        # "client closed request", is what the access log shows; the client never reads it).
        return Response(status_code=499)
    rec = waiting.result()
    assert rec is not None
    if rec.status is PredictionStatus.SUCCEEDED:
        return JSONResponse(rec.output)
    if rec.status is PredictionStatus.CANCELED:
        raise ShuttingDown(rec.error or "The request was canceled.")
    raise GenerationFailed(rec.error or "The generation failed.")


def _stream(
    serving: Serving,
    rid: str,
    job: GenerationJob,
    render: Callable[[TokenChunk | ChoiceFinished], dict[str, Any] | None],
    head: list[dict[str, Any]],
    usage_chunk: dict[str, Any] | None,
) -> StreamingResponse:
    """SSE: `head` chunks, one chunk per token event, the usage chunk when asked for, a failure as an error
    object, then `[DONE]`. Leaving early (the client went away) cancels the prediction."""

    async def events() -> AsyncIterator[bytes]:
        for first in head:
            yield _sse(first)
        final: Completed | None = None
        try:
            async for ev in serving.events(rid):
                if isinstance(ev, Completed):
                    final = ev
                elif isinstance(ev, TokenChunk | ChoiceFinished):
                    chunk = render(ev)
                    if chunk is not None:
                        yield _sse(chunk)
        finally:
            if final is None:
                serving.cancel(rid, CancelReason.CLIENT_GONE)
        if final is None:  # the stream ended without its last event: the server is stopping
            return
        if final.status is PredictionStatus.SUCCEEDED:
            if usage_chunk is not None:
                yield _sse({**usage_chunk, "usage": job.usage()})
        else:
            rec = serving.get(rid)
            message = (rec.error if rec else None) or f"The request was {final.status.value}."
            yield _sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


# ---- /v1/completions ---------------------------------------------------------------------------------------


@router.post("/completions")
async def completions(request: Request) -> Response:
    serving = serving_of(request)
    body = await parse_body(request, CompletionRequest)
    rid = f"cmpl-{uuid.uuid4().hex}"
    base = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": body.model}
    limit = serving.config.max_tokens_limit
    question = body.prompt if isinstance(body.prompt, str) else None  # RAG searches for a single text prompt

    async def plan(model: ServedModel, scanned: dict[str, Any]) -> GenerationJob:
        # The prompt as the guard's scanners left it (invisible characters stripped, secrets redacted), with the
        # passages retrieval found (RAG) around a single text prompt.
        prompt = scanned.get("prompt", body.prompt)
        if isinstance(prompt, str):
            prompt = augment_question(prompt, req.passages)
        prompts = await _completion_prompts(model, prompt)
        if len(prompts) * body.n > MAX_CHOICES:
            raise InvalidRequest(
                f"{len(prompts)} prompts x n={body.n} is more than {MAX_CHOICES} completions in one request.",
                param="prompt",
            )
        choices = []
        for p_i, ids in enumerate(prompts):
            max_tokens = _max_tokens(model, limit, body.max_tokens, 16, len(ids), "prompt")
            for j in range(body.n):
                choices.append(Choice(p_i * body.n + j, ids, _options(body, max_tokens, body.logprobs, j)))
        return GenerationJob(
            choices,
            lambda job: _with_sources(_completion_result(base, job, body.logprobs is not None, meta), req),
        )

    meta: dict[str, Any] = {}
    req = _request(request, body, rid, plan, question)
    job, marker = await _admit(request, req)
    meta.update(marker)
    if not body.stream:
        return await _answer(request, serving, rid)
    offsets = {c.index: 0 for c in job.choices}

    def render(ev: TokenChunk | ChoiceFinished) -> dict[str, Any] | None:
        item: dict[str, Any] = {"index": ev.choice, "text": "", "logprobs": None, "finish_reason": None}
        if isinstance(ev, TokenChunk):
            if not ev.text and not ev.logprobs:
                return None
            item["text"] = ev.text
            if body.logprobs is not None:
                item["logprobs"] = _completion_logprobs(ev.logprobs, offsets[ev.choice])
            offsets[ev.choice] += len(ev.text)
        else:
            item["finish_reason"] = ev.reason
        chunk = {**base, "choices": [item]}
        if body.include_usage:
            chunk["usage"] = None
        return chunk

    usage = {**base, "choices": []} if body.include_usage else None
    head = [_with_sources({**base, "choices": []}, req)] if "sources" in _with_sources({}, req) else []
    return _stream(serving, rid, job, render, head, usage)


# ---- /v1/chat/completions ----------------------------------------------------------------------------------


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    serving = serving_of(request)
    body = await parse_body(request, ChatRequest)
    if body.response_format is not None and body.response_format.type != "text":
        raise BadRequest(
            f"response_format {body.response_format.type!r} is not supported; use 'text'.", param="response_format"
        )
    messages = _chat_messages(body.messages)
    rid = f"chatcmpl-{uuid.uuid4().hex}"
    base = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.model,
        "system_fingerprint": None,
    }
    limit = serving.config.max_tokens_limit
    top = (body.top_logprobs or 0) if body.logprobs else None

    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    question = messages[users[-1]]["content"] if users else None

    async def plan(model: ServedModel, scanned: dict[str, Any]) -> GenerationJob:
        # The messages as the guard's scanners left them (invisible characters stripped, secrets redacted), the
        # last user message with the passages retrieval found (RAG).
        msgs = messages
        if "messages" in scanned:
            msgs = _chat_messages([ChatMessage.model_validate(m) for m in scanned["messages"]])
        last_user = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        if req.passages and last_user:
            msgs = [dict(m) for m in msgs]
            msgs[last_user[-1]]["content"] = augment_question(str(msgs[last_user[-1]]["content"]), req.passages)
        ids = await _encode(model, messages=msgs)
        if not ids:
            raise InvalidRequest("The messages make an empty prompt.", param="messages")
        asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        max_tokens = _max_tokens(model, limit, asked, None, len(ids), "messages")
        choices = [Choice(j, ids, _options(body, max_tokens, top, j)) for j in range(body.n)]
        return GenerationJob(choices, lambda job: _with_sources(_chat_result(base, job, body.logprobs, meta), req))

    meta: dict[str, Any] = {}
    req = _request(request, body, rid, plan, question)
    job, marker = await _admit(request, req)
    meta.update(marker)
    if not body.stream:
        return await _answer(request, serving, rid)

    def chunk(items: list[dict[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {**base, "choices": items}
        if body.include_usage:
            obj["usage"] = None
        return obj

    def render(ev: TokenChunk | ChoiceFinished) -> dict[str, Any] | None:
        if isinstance(ev, TokenChunk):
            if not ev.text and not ev.logprobs:
                return None
            lp = _chat_logprobs(ev.logprobs) if body.logprobs else None
            return chunk([{"index": ev.choice, "delta": {"content": ev.text}, "logprobs": lp, "finish_reason": None}])
        return chunk([{"index": ev.choice, "delta": {}, "logprobs": None, "finish_reason": ev.reason}])

    role = {"role": "assistant", "content": ""}
    head = [chunk([{"index": c.index, "delta": role, "logprobs": None, "finish_reason": None}]) for c in job.choices]
    _with_sources(head[0], req)  # the first chunk carries the sources
    usage = {**base, "choices": []} if body.include_usage else None
    return _stream(serving, rid, job, render, head, usage)
