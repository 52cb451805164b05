"""cocina: a self-hosted Replicate.

The Cog-compatible predictor SDK is re-exported here, so `from cocina import BasePredictor, Input` works as well as
`from cog import ...` (which cocina resolves to the same objects).
"""

from cocina.sdk import (
    AsyncConcatenateIterator,
    BaseModel,
    BasePredictor,
    BaseRunner,
    CancelationException,
    ConcatenateIterator,
    File,
    Input,
    Path,
    Secret,
)

__version__ = "0.1.0"

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
    "__version__",
]
