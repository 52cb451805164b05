"""Reading request bodies into typed models, and the HTTP header grammars the surfaces share.

Bodies are parsed by hand (not FastAPI body parameters) so that every malformed body — not JSON, wrong shape, too
large — becomes one of our exceptions and is answered in the calling surface's own error format.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import pydantic
from starlette.requests import Request

from cocina.server.errors import RequestInvalid

M = TypeVar("M", bound=pydantic.BaseModel)


async def parse_body(request: Request, model: type[M], *, empty_ok: bool = False) -> M:
    """The request's JSON body validated as `model`; `RequestInvalid` (loc starts with "body") if it is
    not."""
    raw = await request.body()
    if not raw.strip():
        if empty_ok:
            return model.model_validate({})
        raise RequestInvalid([{"loc": ["body"], "msg": "Field required", "type": "missing"}])
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RequestInvalid(
            [{"loc": ["body"], "msg": "The body is not valid JSON.", "type": "json_invalid"}]
        ) from None
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise RequestInvalid(
            [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from None


def prefer_tokens(request: Request) -> dict[str, str | None]:
    """`Prefer: respond-async, wait=5` -> {"respond-async": None, "wait": "5"} (RFC 7240, lower-cased
    names)."""
    tokens: dict[str, str | None] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            name, sep, value = part.strip().partition("=")
            if name:
                tokens[name.strip().lower()] = value.strip().strip('"') if sep else None
    return tokens


def accepts_event_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float | None:
    """`Cancel-After` durations: "90", "90s", "5m", "1h30m", "500ms" -> seconds; None if malformed."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text) if float(text) >= 0 else None
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None


def sse_event(event: str | None, data: str, event_id: str | None = None) -> bytes:
    """One server-sent event; multi-line data becomes several `data:` lines (the client joins them with
    \\n)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    # SSE parsers also split on a bare CR; normalize so a chunk's line breaks survive as \n.
    data = data.replace("\r\n", "\n").replace("\r", "\n")
    lines += [f"data: {line}" for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
