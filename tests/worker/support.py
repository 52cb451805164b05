"""Helpers for the worker tests: fixture projects and collecting a prediction's events."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocina.config import load_project
from cocina.worker import Done, Log, Metric, Output, Runner

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "predictors"


def make_runner(name: str, **kwargs: Any) -> Runner:
    """A runner for the fixture project `tests/fixtures/predictors/<name>`."""
    return Runner(load_project(FIXTURES / name), **kwargs)


@dataclass
class Result:
    """Everything one prediction yielded."""

    logs: list[Log] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)
    done: Done | None = None

    @property
    def text(self) -> str:
        return "".join(log.data for log in self.logs)


async def run(
    runner: Runner,
    inputs: dict[str, Any] | None = None,
    prediction_id: str | None = None,
    context: dict[str, str] | None = None,
) -> Result:
    """Validate `inputs` by the runner's schema, run the prediction and collect its events."""
    normalized = runner.validator.validate(inputs or {})
    result = Result()
    async for event in runner.predict(normalized, prediction_id=prediction_id, context=context):
        if isinstance(event, Log):
            result.logs.append(event)
        elif isinstance(event, Output):
            result.outputs.append(event.value)
        elif isinstance(event, Metric):
            result.metrics.append(event)
        else:
            result.done = event
    assert result.done is not None
    return result
