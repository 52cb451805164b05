"""Each way a predictor can fail, and what the caller sees then; the runner keeps working afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from cocina.worker import PredictionStatus, Runner, RunnerState, SetupStatus

from .support import make_runner, run

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def failing() -> AsyncIterator[Runner]:
    """One runner shared by the predict-time failure tests; each also proves the next prediction works."""
    runner = make_runner("predict_failures")
    setup = await runner.start()
    assert setup.status is SetupStatus.SUCCEEDED, setup.logs
    yield runner
    await runner.shutdown()


async def _assert_recovers(runner: Runner) -> str:
    result = await run(runner, {"mode": "ok"})
    assert result.done is not None and result.done.status is PredictionStatus.SUCCEEDED, result.done
    assert runner.state is RunnerState.READY
    return str(result.outputs[0])


async def test_raise_in_predict(failing: Runner) -> None:
    before = await _assert_recovers(failing)
    result = await run(failing, {"mode": "raise"})
    assert result.done is not None
    assert result.done.status is PredictionStatus.FAILED
    assert result.done.error == "something went wrong in predict"
    assert "about to raise" in result.text
    tracebacks = [log.data for log in result.logs if log.traceback]
    assert tracebacks and "ValueError: something went wrong in predict" in tracebacks[0]
    # The same process keeps serving: an exception is not a reason to restart.
    assert await _assert_recovers(failing) == before


async def test_sys_exit_in_predict(failing: Runner) -> None:
    result = await run(failing, {"mode": "exit"})
    assert result.done is not None and result.done.status is PredictionStatus.FAILED
    assert result.done.error == "SystemExit: the predictor called sys.exit(3)"  # Cog names SystemExit
    assert "about to exit" in result.text
    await _assert_recovers(failing)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("kill", "killed by SIGKILL"), ("segfault", "killed by SIGSEGV (segmentation fault)")],
)
async def test_child_death_fails_the_prediction_and_a_fresh_child_takes_over(
    failing: Runner, mode: str, reason: str
) -> None:
    before = await _assert_recovers(failing)
    result = await run(failing, {"mode": mode})
    assert result.done is not None and result.done.status is PredictionStatus.FAILED
    assert result.done.error is not None and reason in result.done.error
    # The log line printed right before the crash survives it.
    assert f"about to {mode}" in result.text
    if mode == "segfault":
        assert "Segmentation fault" in result.text  # the fault handler's dump, written at fd level
    after = await _assert_recovers(failing)
    assert after != before  # "ok from <pid>": a new process ran setup again


@pytest.mark.parametrize(
    ("fixture", "error", "log"),
    [
        ("import_error", "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'", "Traceback"),
        ("setup_raises", "RuntimeError: weights are corrupt", "loading weights"),
        ("setup_exits", "setup() called sys.exit(2)", "giving up"),
    ],
)
async def test_setup_failures(fixture: str, error: str, log: str) -> None:
    runner = make_runner(fixture)
    try:
        setup = await runner.start()
        assert setup.status is SetupStatus.FAILED
        assert setup.error == error
        assert log in setup.logs
        assert runner.state is RunnerState.SETUP_FAILED
        events = [event async for event in runner.predict({})]
        assert len(events) == 1
        done = events[0]
        assert done.status is PredictionStatus.FAILED  # type: ignore[union-attr]
        assert done.error == f"setup failed: {error}"  # type: ignore[union-attr]
    finally:
        await runner.shutdown()
