"""A minimal SSE parser for tests (fields: id, event, data)."""

from __future__ import annotations

from collections.abc import Iterable


def parse_sse(lines: Iterable[str]) -> list[dict[str, str]]:
    events: list[dict[str, str]] = []
    current: dict[str, list[str]] = {}
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if current:
                events.append({k: "\n".join(v) for k, v in current.items()})
                current = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        current.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)
    if current:
        events.append({k: "\n".join(v) for k, v in current.items()})
    return events
