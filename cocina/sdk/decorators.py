"""`@streaming` and `@concurrent(max=N)`: what a predict function declares about itself, as in Cog.

- `@streaming`: the prediction may be streamed to clients as server-sent events (Cog answers a request for an
  event stream to a predictor without it with an error). The worker reports it as `SchemaReady.streaming`.
- `@concurrent(max=N)`: an async predict function may run N predictions at once (Cog's replacement for
  `concurrency: max:` in cog.yaml). The worker reports it as `SchemaReady.concurrency_max`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

__all__ = ["CONCURRENT_ATTR", "STREAMING_ATTR", "concurrent", "concurrent_max", "is_streaming", "streaming"]

F = TypeVar("F", bound=Callable[..., Any])
STREAMING_ATTR = "__cog_streaming__"
CONCURRENT_ATTR = "__cog_concurrent_max__"


@overload
def streaming(fn: F) -> F: ...
@overload
def streaming(fn: None = None) -> Callable[[F], F]: ...
def streaming(fn: F | None = None) -> F | Callable[[F], F]:
    """Mark a predict function as supporting streamed responses (server-sent events)."""

    def decorate(inner: F) -> F:
        setattr(inner, STREAMING_ATTR, True)
        return inner

    return decorate if fn is None else decorate(fn)


@overload
def concurrent(fn: F) -> F: ...
@overload
def concurrent(fn: None = None, *, max: int = 1) -> Callable[[F], F]: ...
def concurrent(fn: F | None = None, *, max: int = 1) -> F | Callable[[F], F]:
    """Let an async predict function run up to `max` predictions at once."""
    if isinstance(max, bool) or not isinstance(max, int):
        raise TypeError("concurrent max must be an integer")
    if max < 1:
        raise ValueError("concurrent max must be at least 1")

    def decorate(inner: F) -> F:
        if max > 1 and not (inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)):
            raise TypeError("concurrent max greater than 1 requires an async function")
        setattr(inner, CONCURRENT_ATTR, max)
        return inner

    if fn is None:
        return decorate
    if not callable(fn):
        raise TypeError("concurrent must be used as @concurrent or @concurrent(max=...)")
    return decorate(fn)


def is_streaming(fn: Callable[..., Any]) -> bool:
    """Whether `fn` (a function or bound method) was marked with `@streaming`."""
    return bool(getattr(fn, STREAMING_ATTR, False))


def concurrent_max(fn: Callable[..., Any]) -> int | None:
    """The `max` of `@concurrent(max=...)` on `fn`, or None when it has no such decorator."""
    value = getattr(fn, CONCURRENT_ATTR, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
