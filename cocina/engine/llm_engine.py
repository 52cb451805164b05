"""The engine: a synchronous core (:class:`LLMEngine`) and its asyncio front (:class:`AsyncLLMEngine`).

One step is three lines, as in nano-vllm: the scheduler picks the work, the model runner computes the logits,
the scheduler applies the sampled tokens. Around that the engine turns tokens into text (incremental
detokenization, stop strings) and keeps statistics.

:class:`AsyncLLMEngine` runs ``step()`` in a background thread while there is work and hands each request's
events to its caller's event loop. Cancelling the caller's iterator queues an abort that the engine thread
applies before its next step, so the request's KV blocks are free after that step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cocina.engine.block_manager import BlockManager
from cocina.engine.config import EngineConfig
from cocina.engine.detokenizer import IncrementalDetokenizer, StopStringMatcher
from cocina.engine.errors import EngineError, EngineOverloaded
from cocina.engine.model_runner import MemoryReport, ModelRunner
from cocina.engine.sampler import Sampler, TokenLogprobs
from cocina.engine.scheduler import Scheduler
from cocina.engine.sequence import FinishReason, SamplingParams, Sequence
from cocina.engine.stats import EngineStats, StatsCollector

__all__ = [
    "AsyncLLMEngine",
    "ErrorEvent",
    "Event",
    "FinishedEvent",
    "LLMEngine",
    "RequestOutput",
    "TokenEvent",
    "Usage",
]

log = logging.getLogger(__name__)


# -- events --
@dataclass(frozen=True)
class Usage:
    """Token counts of one finished request (OpenAI's ``usage``)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens served by the prefix cache

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenEvent:
    """New tokens of a request and the text they completed (may be empty while a character or a possible
    stop string is incomplete)."""

    token_ids: list[int]
    text: str
    logprobs: list[TokenLogprobs] | None = None


@dataclass(frozen=True)
class FinishedEvent:
    """The request is done; always the last event of a successful (or aborted) request."""

    reason: FinishReason
    usage: Usage


@dataclass(frozen=True)
class ErrorEvent:
    """The request failed; the last event. ``message`` is safe to show to the client."""

    message: str


Event = TokenEvent | FinishedEvent | ErrorEvent


@dataclass
class RequestOutput:
    """What one step produced for one request (the synchronous engine's output)."""

    request_id: str
    token_ids: list[int]
    text: str
    logprobs: list[TokenLogprobs] | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        """True on the request's last output."""
        return self.finish_reason is not None

    def events(self) -> list[Event]:
        """This output as the async API's events."""
        out: list[Event] = []
        if self.token_ids or self.text:
            out.append(TokenEvent(self.token_ids, self.text, self.logprobs))
        if self.error is not None:
            out.append(ErrorEvent(self.error))
        elif self.finish_reason is not None and self.usage is not None:
            out.append(FinishedEvent(self.finish_reason, self.usage))
        return out


@dataclass
class _Request:
    seq: Sequence
    detok: IncrementalDetokenizer | None
    stops: StopStringMatcher | None
    generator: torch.Generator | None
    last_token_time: float | None = None
    first_scheduled_time: float | None = None  # the first step that computed any of its tokens (queue time)
    text: list[str] = field(default_factory=list)  # emitted pieces (kept for the sync generate() helper)


# -- the synchronous core --
class LLMEngine:
    """Continuous batching over one model: :meth:`add_request`, then :meth:`step` until done.

    Not thread-safe: one thread drives it (the :class:`AsyncLLMEngine` thread, a benchmark, a test).
    """

    def __init__(self, runner: ModelRunner, tokenizer: Any | None, config: EngineConfig) -> None:
        # The scheduler must know the model's real length limit, which only the runner can work out.
        self.config = dataclasses.replace(config, max_model_len=runner.max_model_len)
        self.runner = runner
        self.tokenizer = tokenizer
        self.block_manager = BlockManager(runner.num_kv_blocks, config.block_size, config.enable_prefix_caching)
        prefill_first = config.prefill_first
        if prefill_first is None:
            prefill_first = runner.device.type == "cpu"
        self.scheduler = Scheduler(self.config, self.block_manager, prefill_first=prefill_first)
        self.sampler = Sampler()
        self.eos_token_ids = _eos_token_ids(runner.hf_config, runner.generation_config, tokenizer)
        self._requests: dict[str, _Request] = {}
        self._ids = itertools.count()
        self._stats = StatsCollector()

    @classmethod
    def from_pretrained(cls, model: str | Path, config: EngineConfig | None = None) -> LLMEngine:
        """Load a model directory (or hub id) and its tokenizer."""
        from transformers import AutoTokenizer

        config = config or EngineConfig()
        runner = ModelRunner(model, config)
        tokenizer = AutoTokenizer.from_pretrained(str(model))
        engine = cls(runner, tokenizer, config)
        log.info(runner.memory_report().describe())
        return engine

    @property
    def max_model_len(self) -> int:
        """Prompt plus output never exceed this many tokens."""
        return self.scheduler.max_seq_len

    def memory_report(self) -> MemoryReport:
        """Weights and KV cache memory (logged at start)."""
        return self.runner.memory_report()

    # -- requests ------------------------------------------------------------------------------------------
    def encode(self, prompt: str | Seq[int]) -> list[int]:
        """Token ids of a prompt (a string is tokenized with the model's special tokens, as ``generate``)."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("this engine has no tokenizer: pass token ids")
            return list(self.tokenizer.encode(prompt))
        return [int(t) for t in prompt]

    def check_prompt(self, token_ids: Seq[int]) -> None:
        """Raise ``ValueError`` when a prompt can never run (empty, too long, ids outside the vocabulary)."""
        if not token_ids:
            raise ValueError("prompt is empty")
        if len(token_ids) >= self.max_model_len:
            raise ValueError(
                f"prompt too long: {len(token_ids)} tokens; at most {self.max_model_len - 1} fit "
                f"(max_model_len {self.max_model_len} covers prompt + output)"
            )
        vocab = self.runner.vocab_size
        bad = [t for t in token_ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"token ids outside the vocabulary (size {vocab}): {bad[:5]}")

    def add_request(
        self,
        prompt: str | Seq[int],
        params: SamplingParams | None = None,
        request_id: str | None = None,
        *,
        arrival_time: float | None = None,
    ) -> str:
        """Queue a request; returns its id. Raises ``ValueError`` (bad input) or ``EngineOverloaded``.

        ``arrival_time`` (``time.monotonic()``, default now) is when the caller received the request: time to
        first token, queue time and end-to-end latency count from it.
        """
        params = params or SamplingParams()
        params.validate()
        token_ids = self.encode(prompt)
        self.check_prompt(token_ids)
        request_id = request_id if request_id is not None else f"req-{next(self._ids)}"
        # Never plan past the model's length: the scheduler then finishes with LENGTH at the limit.
        seq = Sequence(token_ids, params, request_id=request_id)
        if arrival_time is not None:
            seq.arrival_time = arrival_time
        self.scheduler.add(seq)  # may raise EngineOverloaded / ValueError; nothing to undo then
        self._stats.prompt_tokens += len(token_ids)
        detok = IncrementalDetokenizer(self.tokenizer, token_ids) if self.tokenizer is not None else None
        stops = StopStringMatcher(params.stop) if params.stop else None
        gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
        self._requests[request_id] = _Request(seq, detok, stops, gen)
        return request_id

    def abort(self, request_id: str) -> bool:
        """Finish a request with ABORT and free its KV blocks now; False if it is unknown or done."""
        req = self._requests.pop(request_id, None)
        if req is None:
            return False
        self.scheduler.abort(request_id)
        self._stats.num_requests_aborted += 1
        self._observe_end(req, FinishReason.ABORT, time.monotonic())
        return True

    def has_unfinished(self) -> bool:
        """True while any request is waiting or running."""
        return self.scheduler.has_unfinished()

    @property
    def num_unfinished(self) -> int:
        """Requests waiting or running."""
        return len(self._requests)

    # -- one step ------------------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Run one scheduled step; returns the outputs of the requests that advanced (or failed)."""
        out = self.scheduler.schedule()
        if out.is_empty:
            return []
        self._stats.num_steps += 1
        scheduled_at = time.monotonic()
        for s in out.scheduled:
            seq = s.seq
            scheduled_req = self._requests.get(seq.request_id)
            if scheduled_req is not None and scheduled_req.first_scheduled_time is None:
                scheduled_req.first_scheduled_time = scheduled_at
            start = seq.num_computed_tokens
            self._stats.computed_prompt_tokens += max(0, min(start + s.num_new_tokens, seq.num_prompt_tokens) - start)
        sample_rows = [s for s in out.scheduled if s.needs_sample]
        try:
            logits = self.runner.run(out)  # [len(sample_rows), V]
            reqs = [self._requests[s.seq.request_id] for s in sample_rows]
            result = self.sampler(
                logits,
                [s.seq.params for s in sample_rows],
                [s.seq.token_ids for s in sample_rows],
                [s.seq.num_prompt_tokens for s in sample_rows],
                [r.generator for r in reqs],
                self.eos_token_ids,
            )
        except Exception as exc:  # a failed step fails its requests, never the engine
            log.exception("engine step failed")
            return self._fail([s.seq for s in out.scheduled], exc)
        sampled = {s.seq.seq_id: t for s, t in zip(sample_rows, result.token_ids, strict=True)}
        logprobs = {s.seq.seq_id: lp for s, lp in zip(sample_rows, result.logprobs, strict=True)}
        updated = self.scheduler.postprocess(out, sampled, self.eos_token_ids)
        now = time.monotonic()
        outputs = []
        for seq in updated:
            req = self._requests[seq.request_id]
            outputs.append(self._emit(req, seq.last_token_id, logprobs.get(seq.seq_id), now))
        return outputs

    def _emit(self, req: _Request, token_id: int, logprobs: TokenLogprobs | None, now: float) -> RequestOutput:
        """Text for one new token: detokenize, hold back possible stop strings, finish on a match."""
        seq = req.seq
        self._stats.generated_tokens += 1
        if req.last_token_time is None:
            seq.first_token_time = now
            self._stats.ttft.observe(now - seq.arrival_time)
        else:
            self._stats.itl.observe(now - req.last_token_time)
        req.last_token_time = now
        text = req.detok.push(token_id) if req.detok is not None else ""
        if seq.is_finished and req.detok is not None:
            text += req.detok.flush()  # the end: an unfinished character can no longer complete
        if req.stops is not None:
            text, matched = req.stops.feed(text)
            if matched:
                # A stop string also wins over a LENGTH finish on the same token.
                self.scheduler.finish(seq, FinishReason.STOP)
                seq.finish_reason = FinishReason.STOP
            elif seq.is_finished:
                text += req.stops.flush()
        req.text.append(text)
        output = RequestOutput(seq.request_id, [token_id], text, [logprobs] if logprobs is not None else None)
        if seq.is_finished:
            output.finish_reason = seq.finish_reason
            output.usage = Usage(seq.num_prompt_tokens, seq.num_output_tokens, seq.num_cached_tokens)
            self._requests.pop(seq.request_id, None)
            self._stats.num_requests_finished += 1
            assert seq.finish_reason is not None  # set with the FINISHED status
            self._observe_end(req, seq.finish_reason, now)
        return output

    def _observe_end(self, req: _Request, reason: FinishReason, now: float) -> None:
        """Count a request that ended (finished, aborted or failed) by reason, with its end-to-end latency
        and queue time (a request never scheduled waited all along)."""
        arrival = req.seq.arrival_time
        scheduled = req.first_scheduled_time if req.first_scheduled_time is not None else now
        self._stats.observe_request_end(reason.value, now - arrival, scheduled - arrival)

    def _fail(self, seqs: list[Sequence], exc: Exception) -> list[RequestOutput]:
        outputs = []
        message = f"engine error: {type(exc).__name__}"
        for seq in seqs:
            if seq.is_finished:
                continue
            self.scheduler.finish(seq, FinishReason.ERROR)
            req = self._requests.pop(seq.request_id, None)
            self._stats.num_requests_failed += 1
            if req is not None:
                self._observe_end(req, FinishReason.ERROR, time.monotonic())
            outputs.append(
                RequestOutput(
                    seq.request_id,
                    [],
                    "",
                    finish_reason=FinishReason.ERROR,
                    usage=Usage(seq.num_prompt_tokens, seq.num_output_tokens, seq.num_cached_tokens),
                    error=message,
                )
            )
        return outputs

    # -- convenience -----------------------------------------------------------------------------------------
    def generate(
        self, prompts: Seq[str | Seq[int]], params: SamplingParams | Seq[SamplingParams] | None = None
    ) -> list[RequestOutput]:
        """Run prompts to completion (blocking); one output per prompt with all its tokens and text."""
        plist: list[SamplingParams]
        if params is None or isinstance(params, SamplingParams):
            plist = [params or SamplingParams()] * len(prompts)
        else:
            plist = list(params)
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, plist, strict=True)]
        acc = {i: RequestOutput(i, [], "") for i in ids}
        while self.has_unfinished():
            for o in self.step():
                if o.request_id in acc:
                    a = acc[o.request_id]
                    a.token_ids.extend(o.token_ids)
                    a.text += o.text
                    if o.finished:
                        a.finish_reason, a.usage, a.error = o.finish_reason, o.usage, o.error
        return [acc[i] for i in ids]

    def stats(self) -> EngineStats:
        """A snapshot of the engine's gauges and counters."""
        bm, st = self.block_manager, self._stats
        return EngineStats(
            num_running=self.scheduler.num_running,
            num_waiting=self.scheduler.num_waiting,
            num_kv_blocks_used=bm.num_used_blocks,
            num_kv_blocks_total=bm.num_blocks,
            prefix_cache_queries=bm.prefix_query_tokens,
            prefix_cache_hits=bm.prefix_hit_tokens,
            prompt_tokens=st.prompt_tokens,
            computed_prompt_tokens=st.computed_prompt_tokens,
            generated_tokens=st.generated_tokens,
            num_preemptions=self.scheduler.num_preemptions,
            num_requests_finished=st.num_requests_finished,
            num_requests_aborted=st.num_requests_aborted,
            num_requests_failed=st.num_requests_failed,
            num_steps=st.num_steps,
            time_to_first_token_s=st.ttft.snapshot(),
            inter_token_latency_s=st.itl.snapshot(),
            requests_by_finish_reason=dict(st.requests_by_finish_reason),
            e2e_request_latency_s=st.e2e_latency.snapshot(),
            request_queue_time_s=st.queue_time.snapshot(),
        )


def _eos_token_ids(config: Any, gen_cfg: Any, tokenizer: Any | None) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(gen_cfg, "eos_token_id", None), getattr(config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, list | tuple):
            ids.update(int(t) for t in source)
    if tokenizer is not None and getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


# -- the asyncio front --
class _Stream:
    """One request's channel from the engine thread to its caller's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def put(self, events: list[Event]) -> None:
        for ev in events:
            try:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, ev)
            except RuntimeError:  # the caller's loop is closed: nobody is listening any more
                return


class AsyncLLMEngine:
    """Many concurrent callers over one :class:`LLMEngine`; the engine steps in a background thread.

    ``generate()`` may be called from any event loop (each request remembers its caller's loop).
    """

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._cv = threading.Condition()
        self._adds: deque[tuple[list[int], SamplingParams, str, _Stream, float]] = deque()
        self._aborts: deque[str] = deque()
        self._streams: dict[str, _Stream] = {}
        self._ids = itertools.count()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @classmethod
    def from_pretrained(cls, model: str | Path, config: EngineConfig | None = None) -> AsyncLLMEngine:
        """Load a model and start serving it."""
        return cls(LLMEngine.from_pretrained(model, config))

    # -- caller side -----------------------------------------------------------------------------------------
    async def generate(
        self, prompt: str | Seq[int], params: SamplingParams | None = None, request_id: str | None = None
    ) -> AsyncIterator[Event]:
        """Stream a request's events: ``TokenEvent``\\ s, then ``FinishedEvent`` or ``ErrorEvent``.

        Raises ``ValueError`` for an invalid prompt or parameters and ``EngineOverloaded`` when the waiting
        queue is full (both before any event). Leaving the iteration early aborts the request.
        """
        params = params or SamplingParams()
        params.validate()
        token_ids = self.engine.encode(prompt)  # tokenizing here keeps it off the engine thread
        self.engine.check_prompt(token_ids)
        request_id = request_id if request_id is not None else f"areq-{next(self._ids)}"
        stream = _Stream(asyncio.get_running_loop())
        with self._cv:
            if self._stopping:
                raise EngineError("engine is shut down")
            if request_id in self._streams:
                raise ValueError(f"request id {request_id!r} is already in use")
            # The engine's own queue bound, counted with what is not handed to it yet.
            if self.engine.scheduler.num_waiting + len(self._adds) >= self.engine.config.max_waiting:
                raise EngineOverloaded(
                    f"engine overloaded: {self.engine.config.max_waiting} requests are already waiting; retry later"
                )
            self._streams[request_id] = stream
            # Stamped now: the wait until the engine thread takes it in counts in its latencies.
            self._adds.append((token_ids, params, request_id, stream, time.monotonic()))
            self._ensure_thread()
            self._cv.notify()
        finished = False
        try:
            while True:
                ev = await stream.queue.get()
                finished = not isinstance(ev, TokenEvent)
                yield ev
                if finished:
                    return
        finally:
            if not finished:
                self.abort(request_id)

    def abort(self, request_id: str) -> None:
        """Abort a request (thread-safe); its blocks are free after the engine's next step."""
        with self._cv:
            if self._streams.pop(request_id, None) is not None:
                self._aborts.append(request_id)
                self._cv.notify()

    def stats(self) -> EngineStats:
        """The engine's statistics now (reads of counters the engine thread updates; safe under the GIL)."""
        return self.engine.stats()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the engine thread; pending requests get an ``ErrorEvent``."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- engine thread ---------------------------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="cocina-engine", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        engine = self.engine
        while True:
            with self._cv:
                while not (self._stopping or self._adds or self._aborts or engine.has_unfinished()):
                    self._cv.wait()
                if self._stopping:
                    streams = dict(self._streams)
                    leftover = [*self._aborts, *streams]
                    self._streams.clear()
                    self._aborts.clear()
                    self._adds.clear()
                    break
                adds = list(self._adds)
                aborts = list(self._aborts)
                self._adds.clear()
                self._aborts.clear()
            for request_id in aborts:
                engine.abort(request_id)
            for token_ids, params, request_id, stream, arrival in adds:
                try:
                    engine.add_request(token_ids, params, request_id, arrival_time=arrival)
                except (ValueError, EngineError) as exc:
                    self._deliver(request_id, [ErrorEvent(str(exc))], final=True)
                    del stream
            if engine.has_unfinished():
                try:
                    outputs = engine.step()
                except Exception as exc:  # a bug outside the model call: fail everything, keep serving
                    log.exception("engine step failed")
                    outputs = []
                    with self._cv:
                        ids = list(self._streams)
                    for request_id in ids:
                        engine.abort(request_id)
                        error = ErrorEvent(f"engine error: {type(exc).__name__}")
                        self._deliver(request_id, [error], final=True)
                for o in outputs:
                    self._deliver(o.request_id, o.events(), final=o.finished)
        # Leave the engine empty (its blocks free) for whoever uses it next, e.g. a synchronous caller.
        for request_id in leftover:
            engine.abort(request_id)
        for stream in streams.values():
            stream.put([ErrorEvent("engine shut down")])

    def _deliver(self, request_id: str, events: list[Event], final: bool) -> None:
        with self._cv:
            stream = self._streams.pop(request_id, None) if final else self._streams.get(request_id)
        if stream is not None and events:
            stream.put(events)
