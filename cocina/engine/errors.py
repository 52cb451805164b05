"""Exceptions raised by the engine to its callers (the LLM predictor, the HTTP server)."""

from __future__ import annotations

__all__ = ["EngineError", "EngineOverloaded"]


class EngineError(Exception):
    """The engine failed in a way that is not the request's fault (a bug, a device error)."""


class EngineOverloaded(EngineError):
    """The bounded waiting queue is full; the request was not accepted and may be retried later.

    A subclass of :class:`EngineError`, so error mappings must test for it first (it is a 503/429, not a 500).
    """
