"""`current_scope()`: the running prediction's context and metrics, as in Cog.

A predictor records metrics with `current_scope().record_metric(name, value, mode=...)` (or
`scope.metrics[name] = value`); they end up in the prediction's `metrics`, beside `predict_time`. The rules are
Cog's: a name is at most 128 characters and 4 dot-separated segments, each a letter followed by letters, digits
and single underscores, not ending with an underscore; `predict_time` and the `cog.` prefix are reserved; a dotted
name makes nested objects (`timing.preprocess` -> `{"timing": {"preprocess": ...}}`). A value is a bool, int,
float, str, list or dict, and keeps its type until deleted. Modes: `replace` (the default; None deletes),
`incr` (adds to a number) and `append` (adds to a list). Outside a prediction the scope records nothing.

`current_scope().context` is the request's `context` object (`dict[str, str]`), empty when none was given.
"""

from __future__ import annotations

import contextvars
import copy
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = ["MetricRecorder", "Scope", "current_scope", "prediction_scope", "validate_metric_name"]

MAX_NAME_LENGTH = 128
MAX_NAME_SEGMENTS = 4
_MODES = {None: "replace", "replace": "replace", "incr": "increment", "increment": "increment", "append": "append"}
_SEGMENT_CHARS = re.compile(r"^[A-Za-z0-9_]*$")

# Called with (name, value, mode) for every metric recorded: the worker streams them to the server.
MetricListener = Callable[[str, Any, str], None]


def validate_metric_name(name: str, *, for_delete: bool = False) -> None:
    """Raise ValueError, with Cog's message, when `name` is not a valid metric name."""
    if not for_delete:
        if name == "predict_time":
            raise ValueError("'predict_time' is reserved by the runtime")
        if name.startswith("cog."):
            raise ValueError("the 'cog.' prefix is reserved for system metrics")
    if not name:
        raise ValueError("metric name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"metric name must be {MAX_NAME_LENGTH} characters or fewer (got {len(name)} characters)"
        )
    segments = name.split(".")
    if len(segments) > MAX_NAME_SEGMENTS:
        raise ValueError(
            f"metric name must have at most {MAX_NAME_SEGMENTS} dot-separated segments (got {len(segments)})"
        )
    for index, segment in enumerate(segments):
        if not segment:
            if index == 0:
                raise ValueError("metric name must not start with a dot")
            if index == len(segments) - 1:
                raise ValueError("metric name must not end with a dot")
            raise ValueError("metric name must not contain empty segments (consecutive dots)")
        if not (segment[0].isascii() and segment[0].isalpha()):
            raise ValueError(f"metric name segment '{segment}' must start with a letter")
        if not _SEGMENT_CHARS.match(segment):
            bad = next(c for c in segment if not (c.isascii() and (c.isalnum() or c == "_")))
            raise ValueError(f"metric name segment '{segment}' contains invalid character '{bad}'")
        if "__" in segment:
            raise ValueError(f"metric name segment '{segment}' must not contain consecutive underscores")
        if segment.endswith("_"):
            raise ValueError(f"metric name segment '{segment}' must end with a letter or digit")


def _value_type(value: Any) -> str:
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (list, "list"), (dict, "dict")):
        if isinstance(value, kind):
            return name
    raise TypeError(
        f"Unsupported metric value type: {type(value).__name__}. Expected bool, int, float, str, list, or dict."
    )


def _apply(target: dict[str, Any], key: str, value: Any, mode: str) -> None:
    if mode == "replace":
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    elif mode == "increment":
        current = target.get(key, 0)
        if isinstance(current, int | float) and not isinstance(current, bool):
            target[key] = current + value
    else:
        current = target.setdefault(key, [])
        if isinstance(current, list):
            current.append(value)
        else:
            target[key] = [current, value]


class MetricRecorder:
    """`scope.metrics`: records metrics on the running prediction (a no-op outside one)."""

    def __init__(self, listener: MetricListener | None = None, *, active: bool = True) -> None:
        self._active = active
        self._listener = listener
        self._types: dict[str, str] = {}
        self._values: dict[str, Any] = {}

    def record(self, key: str, value: Any, mode: str | None = "replace") -> None:
        """Record `value` under `key`; `mode` is "replace" (default), "incr" or "append"."""
        if mode not in _MODES:
            raise TypeError(f"Invalid metric mode: '{mode}'. Expected 'replace', 'incr', or 'append'.")
        if not self._active:
            return
        wire_mode = _MODES[mode]
        if value is None and wire_mode == "replace":
            self.delete(key)
            return
        validate_metric_name(key)
        kind = _value_type(value)
        previous = self._types.get(key)
        if previous is not None and previous != kind:
            raise TypeError(f"Metric '{key}' has type {previous}, cannot set to {kind} without deleting first")
        if wire_mode == "increment" and kind not in ("int", "float"):
            raise TypeError(f"Increment mode requires int or float, got {kind}")
        value = copy.deepcopy(value)
        self._types[key] = kind
        self._store(key, value, wire_mode)

    def delete(self, key: str) -> None:
        """Remove `key`; needed before giving it a value of another type."""
        if not self._active:
            return
        validate_metric_name(key, for_delete=True)
        self._types.pop(key, None)
        self._store(key, None, "replace")

    def _store(self, key: str, value: Any, mode: str) -> None:
        *parents, leaf = key.split(".")
        target = self._values
        for part in parents:
            child = target.get(part)
            if not isinstance(child, dict):
                child = target[part] = {}
            target = child
        _apply(target, leaf, value, mode)
        if self._listener is not None:
            self._listener(key, value, mode)

    def __setitem__(self, key: str, value: Any) -> None:
        self.record(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def snapshot(self) -> dict[str, Any]:
        """The metrics as the prediction reports them (dotted names as nested objects)."""
        return copy.deepcopy(self._values)

    def __repr__(self) -> str:
        return f"MetricRecorder(keys={len(self._types)})" if self._active else "MetricRecorder(inactive)"


class Scope:
    """The running prediction's scope: `metrics`, `record_metric()` and the request's `context`."""

    def __init__(
        self,
        context: Mapping[str, str] | None = None,
        listener: MetricListener | None = None,
        *,
        active: bool = True,
    ) -> None:
        self.metrics = MetricRecorder(listener, active=active)
        self.context: dict[str, str] = dict(context or {})

    def record_metric(self, key: str, value: Any, mode: str | None = "replace") -> None:
        """Shorthand for `self.metrics.record(key, value, mode)`."""
        self.metrics.record(key, value, mode)

    def __repr__(self) -> str:
        return f"Scope({self.metrics!r})"


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("cocina_scope", default=None)


def current_scope() -> Scope:
    """The scope of the running prediction; outside one, a scope that records nothing (never None)."""
    scope = _scope.get()
    return scope if scope is not None else Scope(active=False)


@contextmanager
def prediction_scope(
    context: Mapping[str, str] | None = None, listener: MetricListener | None = None
) -> Iterator[Scope]:
    """Used by the worker around one prediction: the scope whose metrics it reports when the prediction ends."""
    scope = Scope(context, listener)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)
