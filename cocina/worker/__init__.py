"""Predictions run in a child process, as in Cog: `Runner` (parent side), `events` (the messages), `child`."""

from cocina.worker.events import (
    Done,
    HealthcheckResult,
    Log,
    Metric,
    Output,
    OutputKind,
    PredictionEvent,
    PredictionStatus,
    SetupResult,
    SetupStatus,
    output_kind,
)
from cocina.worker.runner import QueueFullError, Runner, RunnerState

__all__ = [
    "Done",
    "HealthcheckResult",
    "Log",
    "Metric",
    "Output",
    "OutputKind",
    "PredictionEvent",
    "PredictionStatus",
    "QueueFullError",
    "Runner",
    "RunnerState",
    "SetupResult",
    "SetupStatus",
    "output_kind",
]
