"""One streamed request against each API cocina benchmarks: OpenAI-compatible, Replicate v1 and Cog.

Every function fills a `RequestResult` and never raises: an HTTP error, a broken stream or a timeout is
recorded on the result (so it is counted, never dropped) and the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cocina.bench.metrics import RequestResult
from cocina.bench.workload import BenchRequest

if TYPE_CHECKING:
    import httpx

APIS = ("openai", "openai-chat", "replicate", "cog")


@dataclass(frozen=True)
class BackendConfig:
    api: str
    base_url: str  # scheme://host:port[/prefix], without a trailing slash or /v1
    model: str | None = None
    endpoint: str | None = None  # overrides the API's default path
    api_key: str | None = None
    ignore_eos: bool = False
    temperature: float = 0.0
    prompt_field: str = "prompt"  # Replicate/Cog input names
    max_tokens_field: str = "max_tokens"
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # added to the body (OpenAI) or to `input` (Replicate, Cog)
    timeout_s: float = 600.0
    count_tokens: Callable[[str], int] | None = (
        None  # a tokenizer's counter, used when the server gives no usage
    )


def normalize_base_url(url: str) -> str:
    """Accept `http://h:p`, `http://h:p/`, `http://h:p/v1` (what OpenAI clients are given) alike."""
    u = url.strip().rstrip("/")
    if u.endswith("/v1"):
        u = u[: -len("/v1")]
    if "://" not in u:
        u = "http://" + u
    return u


@dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None
    t: float  # perf_counter when the event was complete


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Server-sent events per the HTML spec: fields up to a blank line; data lines joined by newlines."""
    event, ev_id, has_data = "message", None, False
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r")
        if line == "":
            if has_data:
                yield SSEEvent(event, "\n".join(data), ev_id, time.perf_counter())
            event, data, has_data = "message", [], False
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
            has_data = True
        elif name == "event":
            event = value
        elif name == "id":
            ev_id = value
    if has_data:  # a stream that ends without the final blank line
        yield SSEEvent(event, "\n".join(data), ev_id, time.perf_counter())


class _Recorder:
    """Turns content arrivals into TTFT, ITL, E2E latency and the chunk timeline of one request."""

    def __init__(self, result: RequestResult, run_t0: float, sent: float) -> None:
        self.r = result
        self.run_t0 = run_t0
        self.sent = sent
        self.last: float | None = None
        self.text: list[str] = []
        self.usage_tokens: int | None = None

    def content(self, text: str, t: float) -> None:
        if not text:
            return
        if self.last is None:
            self.r.ttft = t - self.sent
        else:
            self.r.itl.append(t - self.last)
        self.last = t
        self.r.chunks.append((t - self.run_t0, text))
        self.r.latency = t - self.sent
        self.text.append(text)

    def finish(self, count_tokens: Callable[[str], int] | None) -> None:
        r = self.r
        r.generated_text = "".join(self.text)
        if not r.chunks:
            r.success = False
            r.error = r.error or "the stream ended with no content"
            return
        if self.usage_tokens is not None and self.usage_tokens > 0:
            r.output_tokens, r.output_tokens_source = self.usage_tokens, "usage"
        elif count_tokens is not None:
            r.output_tokens, r.output_tokens_source = count_tokens(r.generated_text), "tokenizer"
        else:
            r.output_tokens, r.output_tokens_source = len(r.chunks), "chunks"
        r.success = r.error is None


def _headers(cfg: BackendConfig, stream: bool = True) -> dict[str, str]:
    h = {"Content-Type": "application/json"}
    if stream:
        h["Accept"] = "text/event-stream"
    if cfg.api_key:
        h["Authorization"] = f"Bearer {cfg.api_key}"
    return h


def _error_message(body: bytes) -> str:
    """The useful line of an error body in any of the formats the three APIs use."""
    text = body.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return text[:300] or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str) and err:
            return err[:300]
        if "detail" in obj:
            return (
                json.dumps(obj["detail"])[:300] if not isinstance(obj["detail"], str) else obj["detail"][:300]
            )
        if obj.get("title"):
            return str(obj["title"])[:300]
    return text[:300]


async def send_request(
    client: httpx.AsyncClient, cfg: BackendConfig, req: BenchRequest, result: RequestResult, run_t0: float
) -> None:
    """Send one request with the configured API, filling `result`; bounded by `cfg.timeout_s` end to end."""
    import httpx

    sent = time.perf_counter()
    result.start = sent - run_t0
    rec = _Recorder(result, run_t0, sent)
    try:
        async with asyncio.timeout(cfg.timeout_s):
            if cfg.api in ("openai", "openai-chat"):
                await _openai(client, cfg, req, rec)
            elif cfg.api == "replicate":
                await _replicate(client, cfg, req, rec)
            elif cfg.api == "cog":
                await _cog(client, cfg, req, rec)
            else:
                raise ValueError(f"unknown api {cfg.api!r}")
    except TimeoutError:
        result.error = f"timeout after {cfg.timeout_s:g} s"
    except httpx.ConnectError as exc:
        result.error = f"connection error: {exc or type(exc).__name__}"
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc or 'transport error'}"
    except Exception as exc:  # a malformed response must fail this one request, not the whole run
        result.error = f"{type(exc).__name__}: {exc}"
    if result.error is not None:
        result.success = False
        # A failed request's latency is the time until it failed: excluded from the latency statistics, but it
        # counts as in flight until then.
        result.latency = time.perf_counter() - sent
        result.generated_text = "".join(rec.text)
        return
    rec.finish(cfg.count_tokens)


async def _openai(client: httpx.AsyncClient, cfg: BackendConfig, req: BenchRequest, rec: _Recorder) -> None:
    chat = cfg.api == "openai-chat" or (cfg.endpoint is not None and "chat" in cfg.endpoint)
    path = cfg.endpoint or ("/v1/chat/completions" if chat else "/v1/completions")
    body: dict[str, Any] = {
        "model": cfg.model,
        "max_tokens": req.output_len,
        "temperature": cfg.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if chat:
        body["messages"] = [{"role": "user", "content": req.prompt}]
    else:
        body["prompt"] = req.prompt
    if cfg.ignore_eos:
        # vLLM, SGLang and cocina accept these extensions; min_tokens also makes servers without ignore_eos
        # comply.
        body["ignore_eos"] = True
        body["min_tokens"] = req.output_len
    body.update(cfg.extra)
    async with client.stream("POST", cfg.base_url + path, json=body, headers=_headers(cfg)) as resp:
        if resp.status_code >= 400:
            rec.r.status_code = resp.status_code
            rec.r.error = f"HTTP {resp.status_code}: {_error_message(await resp.aread())}"
            return
        async for ev in iter_sse(resp.aiter_lines()):
            if ev.data.strip() == "[DONE]":
                break
            obj = json.loads(ev.data)
            if isinstance(obj.get("error"), dict | str):
                rec.r.error = f"error in stream: {_error_message(ev.data.encode())}"
                return
            choices = obj.get("choices") or []
            if choices:
                c = choices[0]
                if chat:
                    delta = c.get("delta") or {}
                    text = (delta.get("content") or "") + (
                        delta.get("reasoning_content") or delta.get("reasoning") or ""
                    )
                else:
                    text = c.get("text") or ""
                rec.content(text, ev.t)
            usage = obj.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                rec.usage_tokens = usage["completion_tokens"]


def _replicate_input(cfg: BackendConfig, req: BenchRequest) -> dict[str, Any]:
    inp: dict[str, Any] = {cfg.prompt_field: req.prompt, cfg.max_tokens_field: req.output_len}
    if cfg.ignore_eos:
        inp["min_tokens"] = req.output_len  # the convention of Replicate's language models
        inp["ignore_eos"] = True
    inp.update(cfg.extra)
    return inp


async def _replicate(
    client: httpx.AsyncClient, cfg: BackendConfig, req: BenchRequest, rec: _Recorder
) -> None:
    body: dict[str, Any] = {"input": _replicate_input(cfg, req), "stream": True}
    model = cfg.model
    if cfg.endpoint:
        path = cfg.endpoint
        if model:
            body["version"] = model
    elif model and "/" in model and ":" not in model:
        path = f"/v1/models/{model}/predictions"
    else:
        path = "/v1/predictions"
        if model:
            body["version"] = model
    resp = await client.post(cfg.base_url + path, json=body, headers=_headers(cfg, stream=False))
    if resp.status_code >= 400:
        rec.r.status_code = resp.status_code
        rec.r.error = f"HTTP {resp.status_code}: {_error_message(resp.content)}"
        return
    pred = resp.json()
    stream_url = (pred.get("urls") or {}).get("stream")
    if not stream_url:
        rec.r.error = "the prediction has no urls.stream (does the server stream?)"
        return
    headers = _headers(cfg)
    headers.pop("Content-Type")
    headers["Cache-Control"] = "no-store"
    async with client.stream("GET", stream_url, headers=headers) as sresp:
        if sresp.status_code >= 400:
            rec.r.status_code = sresp.status_code
            rec.r.error = f"HTTP {sresp.status_code} on the stream: {_error_message(await sresp.aread())}"
            return
        async for ev in iter_sse(sresp.aiter_lines()):
            if ev.event == "output":
                rec.content(ev.data, ev.t)
            elif ev.event == "error":
                rec.r.error = f"prediction error: {ev.data[:300]}"
                return
            elif ev.event == "done":
                try:
                    reason = (json.loads(ev.data or "{}") or {}).get("reason")
                except ValueError:
                    reason = None
                if reason in ("error", "canceled"):
                    rec.r.error = f"prediction ended: {reason}"
                return
    rec.r.error = "the stream ended without a done event"


async def _cog(client: httpx.AsyncClient, cfg: BackendConfig, req: BenchRequest, rec: _Recorder) -> None:
    path = cfg.endpoint or "/predictions"
    body = {"input": _replicate_input(cfg, req)}
    async with client.stream("POST", cfg.base_url + path, json=body, headers=_headers(cfg)) as resp:
        if resp.status_code >= 400:
            rec.r.status_code = resp.status_code
            rec.r.error = f"HTTP {resp.status_code}: {_error_message(await resp.aread())}"
            return
        if "text/event-stream" not in resp.headers.get("content-type", ""):
            # A server that ignores Accept answers with the finished prediction: the whole output arrives at
            # once.
            pred = json.loads(await resp.aread())
            _cog_final(pred, rec, time.perf_counter(), whole_output=True)
            return
        async for ev in iter_sse(resp.aiter_lines()):
            if ev.event == "output":
                rec.content(_cog_chunk(ev.data), ev.t)
            elif ev.event == "completed":
                _cog_final(json.loads(ev.data), rec, ev.t, whole_output=False)
                return
    rec.r.error = "the stream ended without a completed event"


def _cog_chunk(data: str) -> str:
    try:
        obj = json.loads(data)
    except ValueError:
        return data
    if isinstance(obj, dict) and "chunk" in obj:
        return "" if obj["chunk"] is None else str(obj["chunk"])
    return obj if isinstance(obj, str) else json.dumps(obj)


def _cog_final(pred: dict[str, Any], rec: _Recorder, t: float, *, whole_output: bool) -> None:
    status = pred.get("status")
    if status != "succeeded":
        rec.r.error = f"prediction {status}: {str(pred.get('error') or '')[:300]}".rstrip(": ")
        return
    if whole_output:
        out = pred.get("output")
        items = out if isinstance(out, list) else [out]
        for item in items:
            rec.content("" if item is None else str(item), t)
