"""cocina's Cog-compatible predictor SDK; inside cocina, `import cog` resolves here (see `shim.py`).

`__all__` is what `cog` exports. Two deprecated names Cog still accepts, `ExperimentalFeatureWarning` and
`emit_metric`, are looked up lazily (`deprecated`), so that using them prints Cog's deprecation notice once.
"""

from __future__ import annotations

from typing import Any

from cocina.sdk.decorators import concurrent, streaming
from cocina.sdk.deprecated import DEPRECATED_NAMES, deprecated
from cocina.sdk.input import FieldInfo, Input
from cocina.sdk.predictor import BasePredictor, BaseRunner
from cocina.sdk.scope import current_scope
from cocina.sdk.types import (
    AsyncConcatenateIterator,
    BaseModel,
    CancelationException,
    ConcatenateIterator,
    File,
    Opaque,
    Path,
    Secret,
)

# The Cog release whose SDK this one matches (a PEP 440 local version marks it as cocina's).
__version__ = "0.22.0+cocina"

__all__ = [
    "AsyncConcatenateIterator",
    "BaseModel",
    "BasePredictor",
    "BaseRunner",
    "CancelationException",
    "ConcatenateIterator",
    "FieldInfo",
    "File",
    "Input",
    "Opaque",
    "Path",
    "Secret",
    "__version__",
    "concurrent",
    "current_scope",
    "streaming",
]


def __getattr__(name: str) -> Any:
    if name in DEPRECATED_NAMES:
        return deprecated(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
