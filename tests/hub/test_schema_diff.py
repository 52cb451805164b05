"""`cocina versions diff`: schema changes between two versions, breaking ones flagged (as cog-safe-push does);
schemas derived from real predictors by cocina's own derivation."""

from __future__ import annotations

from typing import Any

from cocina.hub.schema_diff import diff_schemas
from cocina.sdk import BasePredictor, Input
from cocina.sdk.schema import derive_schema
from cocina.sdk.types import ConcatenateIterator


class V1(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="what to say"),
        steps: int = Input(default=10, ge=1, le=100),
        style: str = Input(default="a", choices=["a", "b", "c"]),
        seed: int = Input(default=None),
    ) -> str:
        return prompt


class V2Compatible(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="what to say"),
        steps: int = Input(default=20, ge=1, le=200),
        style: str = Input(default="a", choices=["a", "b", "c", "d"]),
        seed: int = Input(default=None),
        temperature: float = Input(default=0.7),
    ) -> str:
        return prompt


class V3Breaking(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="what to say"),
        steps: str = Input(default="10"),
        style: str = Input(default="a", choices=["a", "b"]),
        negative: str = Input(description="now required"),
    ) -> ConcatenateIterator[str]:
        yield prompt


def _schema(cls: type) -> dict[str, Any]:
    return derive_schema(cls())


def test_compatible_changes_are_listed_but_not_breaking() -> None:
    diff = diff_schemas(_schema(V1), _schema(V2Compatible))
    kinds = {(c.kind, c.name) for c in diff.changes}
    assert ("added", "temperature") in kinds and ("relaxed", "steps") in kinds and ("relaxed", "style") in kinds
    assert ("default", "steps") in kinds
    assert not diff.breaking, diff.describe()


def test_breaking_changes_are_flagged() -> None:
    diff = diff_schemas(_schema(V1), _schema(V3Breaking))
    breaking = {(c.kind, c.name) for c in diff.changes if c.breaking}
    assert breaking == {
        ("removed", "seed"),
        ("added", "negative"),
        ("retyped", "steps"),
        ("constrained", "style"),
        ("output", "output"),
    }, diff.describe()
    assert diff.breaking and "BREAKING removed seed" in diff.describe()
    assert diff.to_json()["breaking"] is True


def test_no_change() -> None:
    assert diff_schemas(_schema(V1), _schema(V1)).describe() == "no change in the inputs or the output"
