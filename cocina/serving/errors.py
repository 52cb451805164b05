"""What can go wrong when serving a prediction, as domain errors: no HTTP status codes here.

`cocina.server.errors` maps each class to the status and body of every API (Cog `{"detail"}`, Replicate
problem+json, OpenAI `{"error"}`). Messages are safe to show to clients: never a repr or a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ServingError(Exception):
    """Base of serving's errors. `param` names the offending field (OpenAI's `param`); `retry_after_s` says
    when trying again may succeed."""

    def __init__(self, message: str, *, param: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s


class ModelNotFound(ServingError):
    """No model, version or deployment of that name is served here."""


class InvalidModelName(ServingError):
    """A model or version reference that cannot be a name at all (malformed)."""


class PredictionNotFound(ServingError):
    """No prediction with that id."""


class InvalidRequest(ServingError):
    """The request cannot be run as asked (a bad option, an empty prompt, an unsupported feature)."""


class ContextLengthExceeded(InvalidRequest):
    """The prompt (plus the tokens asked for) does not fit the model's context."""


class InvalidInput(ServingError):
    """The input does not fit the predictor's schema; `errors` are Cog 422 `detail[]` items."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__("invalid input")
        self.errors = [dict(e) for e in errors]


class Conflict(ServingError):
    """The request clashes with the state of things (a name taken, a version still in use)."""


class Unprocessable(ServingError):
    """The request is well formed but what it carries cannot be used (a pushed project that fails to import)."""


class QueueFull(ServingError):
    """Every slot of the model is busy and its bounded queue is full."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"Request was throttled: the prediction queue is full. Expected available in {retry_after_s} seconds.",
            retry_after_s=retry_after_s,
        )


class ModelUnavailable(ServingError):
    """The model cannot run predictions now: still loading past the wait limit, its setup failed, or no room
    to load it."""


class StoreUnavailable(ServingError):
    """The store refused to record the prediction, so it was not started."""


class ShuttingDown(ServingError):
    """The server is draining and accepts no new predictions."""
