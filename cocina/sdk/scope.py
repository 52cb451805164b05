"""`current_scope()` and `emit_metric()`: a predictor records custom metrics on the running prediction, as in
Cog."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Scope", "current_scope", "emit_metric", "prediction_scope"]


@dataclass
class Scope:
    """Per-prediction state visible to predictor code; `metrics` end up in the prediction's `metrics`."""

    metrics: dict[str, Any] = field(default_factory=dict)

    def record_metric(self, name: str, value: Any) -> None:
        """Set metric `name` for the current prediction (the last value wins)."""
        self.metrics[name] = value


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("cocina_scope", default=None)


def current_scope() -> Scope:
    """The scope of the running prediction; outside a prediction a throwaway scope, so calls never fail."""
    scope = _scope.get()
    return scope if scope is not None else Scope()


def emit_metric(name: str, value: Any) -> None:
    """Record a custom metric for the running prediction."""
    current_scope().record_metric(name, value)


@contextmanager
def prediction_scope() -> Iterator[Scope]:
    """Used by the worker around one prediction: gives the scope whose metrics it reports afterwards."""
    scope = Scope()
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)
