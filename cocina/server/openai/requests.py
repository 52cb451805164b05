"""OpenAI's request bodies, with the bounds OpenAI documents (and vLLM enforces)."""

from __future__ import annotations

from typing import Any, Literal

import pydantic

MAX_N = 16
MAX_STOP = 4
MAX_CHOICES = 64  # prompts x n in one request: more would flood the engine's queue from a single call


class StreamOptions(pydantic.BaseModel):
    include_usage: bool = False


class Sampling(pydantic.BaseModel):
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
    ignore_eos: bool = False  # vLLM's extension: generate exactly max_tokens (benchmarks rely on it)
    # cocina's extension: retrieval-augmented generation for this request, `{"index", "top_k", "min_score",
    # "rewrite"}` or an index name (docs/rag.md); checked by serving (`parse_rag`)
    rag: dict[str, Any] | str | None = None

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

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(Sampling):
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
            # Only text parts are understood; other parts (images, audio) are refused by the route.
            return "".join(str(p.get("text", "")) for p in self.content)
        return self.content or ""


class ResponseFormat(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]


class ChatRequest(Sampling):
    messages: list[ChatMessage] = pydantic.Field(min_length=1)
    max_completion_tokens: int | None = pydantic.Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = pydantic.Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
