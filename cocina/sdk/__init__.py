"""cocina's Cog-compatible predictor SDK; inside cocina, `import cog` resolves here (see `shim.py`)."""

from cocina.sdk.input import Input
from cocina.sdk.predictor import BasePredictor, BaseRunner
from cocina.sdk.scope import current_scope, emit_metric
from cocina.sdk.types import (
    AsyncConcatenateIterator,
    BaseModel,
    CancelationException,
    ConcatenateIterator,
    File,
    Path,
    Secret,
)

__all__ = [
    "AsyncConcatenateIterator",
    "BaseModel",
    "BasePredictor",
    "BaseRunner",
    "CancelationException",
    "ConcatenateIterator",
    "File",
    "Input",
    "Path",
    "Secret",
    "current_scope",
    "emit_metric",
]
