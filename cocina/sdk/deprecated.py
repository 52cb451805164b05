"""Names Cog removed but still accepts, with the notice Cog prints (on stderr, once per process) when one is used.

The notice is printed rather than raised as a warning so that `warnings.filterwarnings("ignore", ...)`, which the
code using these names usually calls, cannot hide it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["DEPRECATED_NAMES", "deprecated", "emit_metric"]

DEPRECATED_NAMES = ("ExperimentalFeatureWarning", "emit_metric")

_NOTICES = {
    "ExperimentalFeatureWarning": (
        "cog: ExperimentalFeatureWarning is deprecated and will be removed in a future release. Remove "
        "`ExperimentalFeatureWarning` from your imports and any associated `warnings.filterwarnings(...)` calls."
    ),
    "emit_metric": (
        "cog: emit_metric() is deprecated and will be removed in a future release. "
        "Use current_scope().record_metric(name, value) instead."
    ),
}
_noticed: set[str] = set()
_lock = threading.Lock()


def emit_metric(name: str, value: Any) -> None:
    """Deprecated in Cog: record a metric on the running prediction (`current_scope().record_metric`)."""
    from cocina.sdk.scope import current_scope

    current_scope().record_metric(name, value)


def deprecated(name: str) -> Any:
    """The object behind deprecated name `name`, printing Cog's notice the first time it is asked for."""
    from cocina.sdk.types import ExperimentalFeatureWarning

    objects: dict[str, Any] = {"ExperimentalFeatureWarning": ExperimentalFeatureWarning, "emit_metric": emit_metric}
    with _lock:
        first = name not in _noticed
        _noticed.add(name)
    if first:
        print(_NOTICES[name], file=sys.stderr, flush=True)
    return objects[name]
