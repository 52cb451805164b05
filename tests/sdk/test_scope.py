"""`current_scope()`: metrics with Cog's modes and naming rules, the request context, and the no-op scope."""

from __future__ import annotations

from typing import Any

import pytest

from cocina.sdk.scope import Scope, current_scope, prediction_scope, validate_metric_name


def test_modes_dotted_names_and_dict_style() -> None:
    seen: list[tuple[str, Any, str]] = []
    with prediction_scope(listener=lambda *event: seen.append(event)) as scope:
        current_scope().record_metric("temperature", 0.7)
        scope.record_metric("token_count", 1, mode="incr")
        scope.record_metric("token_count", 2, mode="incr")
        scope.record_metric("tags", "fast", mode="append")
        scope.metrics.record("tags", "cached", mode="append")
        scope.record_metric("timing.preprocess", 0.1)
        scope.record_metric("timing.inference", 2)
        scope.metrics["dict_metric"] = "hello"
        scope.metrics["gone"] = 1
        del scope.metrics["gone"]
        scope.record_metric("dict_metric2", "x")
        scope.record_metric("dict_metric2", None)  # None deletes
    assert scope.metrics.snapshot() == {
        "temperature": 0.7,
        "token_count": 3,
        "tags": ["fast", "cached"],
        "timing": {"preprocess": 0.1, "inference": 2},
        "dict_metric": "hello",
    }
    assert seen[:3] == [
        ("temperature", 0.7, "replace"),
        ("token_count", 1, "increment"),
        ("token_count", 2, "increment"),
    ]


def test_a_recorded_value_is_a_copy() -> None:
    with prediction_scope() as scope:
        values = [1]
        scope.record_metric("values", values)
        values.append(2)
    assert scope.metrics.snapshot() == {"values": [1]}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("_invalid", "segment '_invalid' must start with a letter"),
        ("foo__bar", "must not contain consecutive underscores"),
        ("invalid_", "must end with a letter or digit"),
        (".invalid", "must not start with a dot"),
        ("invalid.", "must not end with a dot"),
        ("foo..bar", "must not contain empty segments (consecutive dots)"),
        ("predict_time", "'predict_time' is reserved by the runtime"),
        ("cog.system", "the 'cog.' prefix is reserved for system metrics"),
        ("a.b.c.d.e", "must have at most 4 dot-separated segments (got 5)"),
        ("a" * 129, "must be 128 characters or fewer (got 129 characters)"),
        ("bad-char", "contains invalid character '-'"),
        ("", "must not be empty"),
    ],
)
def test_metric_names_follow_cogs_rules(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_metric_name(name)
    with prediction_scope() as scope, pytest.raises(ValueError):
        scope.record_metric(name, 1)


@pytest.mark.parametrize("name", ["valid_name", "a1", "timing.pre_process", "a.b.c.d", "x" * 128])
def test_valid_metric_names(name: str) -> None:
    validate_metric_name(name)


def test_value_types_modes_and_the_type_invariant() -> None:
    with prediction_scope() as scope:
        with pytest.raises(TypeError, match="Unsupported metric value type: set"):
            scope.record_metric("s", {1})
        with pytest.raises(TypeError, match="Invalid metric mode: 'sum'"):
            scope.record_metric("n", 1, mode="sum")
        with pytest.raises(TypeError, match="Increment mode requires int or float, got str"):
            scope.record_metric("n", "1", mode="incr")
        scope.record_metric("n", 1)
        with pytest.raises(TypeError, match="Metric 'n' has type int, cannot set to str without deleting first"):
            scope.record_metric("n", "one")
        scope.metrics.delete("n")
        scope.record_metric("n", "one")
    assert scope.metrics.snapshot() == {"n": "one"}


def test_outside_a_prediction_the_scope_records_nothing() -> None:
    scope = current_scope()
    scope.record_metric("anything__goes", 1)  # not even validated: a no-op, as in Cog
    assert scope.metrics.snapshot() == {}
    assert scope.context == {}
    assert repr(scope) == "Scope(MetricRecorder(inactive))"


def test_context_is_the_requests() -> None:
    with prediction_scope({"api_token": "t", "region": "us"}):
        assert current_scope().context == {"api_token": "t", "region": "us"}
    assert Scope().context == {}
