"""Newer Cog features through the worker: metrics (events and totals), the request context, the predictor's own
healthcheck() and its timeout, @streaming / @concurrent, COG_SETUP_TIMEOUT, and the `train:` entry point."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from cocina.worker import HealthcheckResult, Metric, PredictionStatus, Runner, RunnerState, SetupStatus

from .support import make_runner, run

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def features() -> AsyncIterator[Runner]:
    runner = make_runner("cog_features")
    setup = await runner.start()
    assert setup.status is SetupStatus.SUCCEEDED, setup.logs
    yield runner
    await runner.shutdown()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def async_features() -> AsyncIterator[Runner]:
    runner = make_runner("async_features")
    setup = await runner.start()
    assert setup.status is SetupStatus.SUCCEEDED, setup.logs
    yield runner
    await runner.shutdown()


async def test_metrics_arrive_as_events_and_as_totals(features: Runner) -> None:
    result = await run(features, {"mode": "metrics"})
    assert result.done is not None and result.done.status is PredictionStatus.SUCCEEDED
    assert result.done.metrics == {"temperature": 0.7, "tokens": 3, "timing": {"total": 0.5}}
    assert result.metrics == [
        Metric("temperature", 0.7, "replace"),
        Metric("tokens", 1, "increment"),
        Metric("tokens", 2, "increment"),
        Metric("timing.total", 0.5, "replace"),
    ]


async def test_a_bad_metric_name_fails_the_prediction_with_cogs_message(features: Runner) -> None:
    result = await run(features, {"mode": "bad_metric"})
    assert result.done is not None and result.done.status is PredictionStatus.FAILED
    assert result.done.error == "metric name segment '_bad' must start with a letter"


async def test_the_request_context_reaches_the_predictor(features: Runner) -> None:
    result = await run(features, {"mode": "context"}, context={"api_token": "t0k", "region": "eu"})
    assert result.outputs == ["api_token=t0k,region=eu"]
    empty = await run(features, {"mode": "context"})
    assert empty.outputs == [""]


async def test_streaming_opt_in_is_reported(features: Runner, async_features: Runner) -> None:
    assert features.streaming is True
    assert async_features.streaming is False


async def test_healthcheck_outcomes(features: Runner) -> None:
    assert await features.healthcheck() == HealthcheckResult(True)
    await run(features, {"mode": "false"})
    assert await features.healthcheck() == HealthcheckResult(
        False, "Healthcheck failed: user-defined healthcheck returned False"
    )
    await run(features, {"mode": "raise"})
    assert await features.healthcheck() == HealthcheckResult(False, "Healthcheck failed: RuntimeError: disk is full")
    await run(features, {"mode": "ok"})
    assert (await features.healthcheck()).healthy


async def test_a_slow_healthcheck_times_out_after_5_seconds_and_predictions_go_on(features: Runner) -> None:
    await run(features, {"mode": "slow"})
    started = time.monotonic()
    result = await features.healthcheck()
    assert 4.5 < time.monotonic() - started < 7.5
    assert result == HealthcheckResult(
        False, "Healthcheck failed: user-defined healthcheck timed out after 5.0 seconds"
    )
    ok = await run(features, {"mode": "ok"})  # the stuck healthcheck thread does not block predictions
    assert ok.done is not None and ok.done.status is PredictionStatus.SUCCEEDED


async def test_async_healthcheck_runs_on_the_predictors_loop(async_features: Runner) -> None:
    assert await async_features.healthcheck() == HealthcheckResult(True)
    await run(async_features, {"mode": "raise"})
    assert await async_features.healthcheck() == HealthcheckResult(
        False, "Healthcheck failed: RuntimeError: async check failed"
    )
    await run(async_features, {"mode": "false"})
    assert not (await async_features.healthcheck()).healthy
    await run(async_features, {"mode": "ok"})


async def test_async_context_metrics_and_concurrent_max(async_features: Runner) -> None:
    assert async_features.concurrency == 3  # @concurrent(max=3), the project sets no concurrency
    result = await run(async_features, {"mode": "ok"}, context={"k": "v"})
    assert result.outputs == ["k=v"]
    assert result.done is not None and result.done.metrics == {"calls": 1}


async def test_a_predictor_without_a_healthcheck_is_healthy() -> None:
    runner = make_runner("value_output")
    try:
        assert (await runner.healthcheck()).healthy is False  # not started: not ready
        await runner.start()
        assert await runner.healthcheck() == HealthcheckResult(True)
    finally:
        await runner.shutdown()


async def test_cog_setup_timeout_fails_a_setup_that_takes_too_long() -> None:
    runner = make_runner("slow_setup", env_overrides={"COG_SETUP_TIMEOUT": "1"})
    try:
        started = time.monotonic()
        setup = await runner.start()
        assert time.monotonic() - started < 20
        assert setup.status is SetupStatus.FAILED
        assert setup.error == "setup() did not finish within 1 seconds"
        assert "setup timed out after 1 seconds (COG_SETUP_TIMEOUT)" in setup.logs
        assert runner.state is RunnerState.SETUP_FAILED
    finally:
        await runner.shutdown()


async def test_the_train_entry_point_runs_setup_then_train() -> None:
    runner = make_runner("cog_features", mode="train")
    try:
        setup = await runner.start()
        assert setup.status is SetupStatus.SUCCEEDED, setup.logs
        assert "trainer setup" in setup.logs
        assert set(runner.openapi_schema["components"]["schemas"]) >= {"TrainingInput", "TrainingOutput"}
        result = await run(runner, {"epochs": 3})
        assert result.done is not None and result.done.status is PredictionStatus.SUCCEEDED, result.done
        assert result.outputs == [{"weights": "www", "epochs": 3}]
        assert "training for 3 epochs" in result.text
    finally:
        await runner.shutdown()


async def test_train_mode_needs_a_train_entry_point() -> None:
    with pytest.raises(ValueError, match="has no `train:` entry point"):
        make_runner("value_output", mode="train")


async def test_the_runner_stops_waiting_for_a_healthcheck_answer(features: Runner) -> None:
    await run(features, {"mode": "slow"})
    result = await features.healthcheck(timeout_s=0.5)
    assert result == HealthcheckResult(False, "Healthcheck failed: no answer from the predictor in 0.5 s")
    await run(features, {"mode": "ok"})


@pytest.mark.parametrize(("value", "seconds"), [("10", 10.0), ("0", None), ("", None), ("ten", None), ("-5", None)])
async def test_cog_setup_timeout_values(value: str, seconds: float | None) -> None:
    from cocina.worker.runner import _setup_timeout

    assert _setup_timeout({"COG_SETUP_TIMEOUT": value}) == seconds  # as Cog: 0 or a bad value means no limit
    assert _setup_timeout({}) is None
