"""Canceling: sync predictors get CancelationException, async ones CancelledError, queued ones never run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cocina.worker import Done, Log, PredictionStatus, Runner

from .support import make_runner, run


async def _start_and_wait_for(
    runner: Runner, inputs: dict[str, object], prediction_id: str, marker: str
) -> tuple[asyncio.Future[None], list[object]]:
    """Start a prediction in the background; once `marker` is logged, return (its task, its events so far)."""
    events: list[object] = []
    seen = asyncio.Event()

    async def consume() -> None:
        async for event in runner.predict(runner.validator.validate(inputs), prediction_id=prediction_id):
            events.append(event)
            if isinstance(event, Log) and marker in event.data:
                seen.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(seen.wait(), timeout=20)
    return task, events


async def test_cancel_sync_predictor_raises_cancelation_exception_inside_predict() -> None:
    runner = make_runner("cancel_sync")
    try:
        await runner.start()
        task, events = await _start_and_wait_for(runner, {"seconds": 60}, "long", "sleeping")
        # A second prediction waits in the parent's queue; canceling it means it never runs.
        queued = asyncio.ensure_future(run(runner, {"seconds": 0}, prediction_id="queued"))
        await asyncio.sleep(0.05)
        assert runner.queued == 1
        assert await runner.cancel("queued")
        queued_result = await asyncio.wait_for(queued, timeout=5)
        assert queued_result.done is not None and queued_result.done.status is PredictionStatus.CANCELED
        assert queued_result.logs == []

        assert await runner.cancel("long")
        await asyncio.wait_for(task, timeout=10)
        done = events[-1]
        assert isinstance(done, Done) and done.status is PredictionStatus.CANCELED
        assert any(isinstance(e, Log) and "got CancelationException" in e.data for e in events)
        after = await run(runner, {"seconds": 0})
        assert after.outputs == ["woke up"]
        assert not await runner.cancel("long")  # finished predictions are unknown
    finally:
        await runner.shutdown()


async def test_cancel_async_predictor_cancels_its_task() -> None:
    runner = make_runner("async_predictor")
    try:
        await runner.start()
        task, events = await _start_and_wait_for(runner, {"delay": 60, "text": "slow"}, "slow", "start slow")
        other = asyncio.ensure_future(run(runner, {"delay": 0.2, "text": "fast"}))
        assert await runner.cancel("slow")
        await asyncio.wait_for(task, timeout=10)
        done = events[-1]
        assert isinstance(done, Done) and done.status is PredictionStatus.CANCELED
        # The concurrent prediction is unaffected.
        fast = await asyncio.wait_for(other, timeout=10)
        assert fast.done is not None and fast.done.status is PredictionStatus.SUCCEEDED
    finally:
        await runner.shutdown()


async def test_a_predictor_that_ignores_cancel_is_killed_and_replaced(tmp_path: Path) -> None:
    project = tmp_path / "stubborn"
    project.mkdir()
    (project / "cocina.yaml").write_text('predict: "predict.py:Predictor"\n')
    (project / "predict.py").write_text(
        "import time\n"
        "from cog import BasePredictor, CancelationException\n\n"
        "class Predictor(BasePredictor):\n"
        "    def predict(self, seconds: float = 60.0) -> str:\n"
        "        print('sleeping', flush=True)\n"
        "        deadline = time.monotonic() + seconds\n"
        "        while time.monotonic() < deadline:\n"
        "            try:\n"
        "                time.sleep(0.05)\n"
        "            except CancelationException:\n"
        "                pass  # refuses to stop\n"
        "        return 'done'\n"
    )
    from cocina.config import load_project

    runner = Runner(load_project(project), cancel_timeout_s=0.5)
    try:
        await runner.start()
        task, events = await _start_and_wait_for(runner, {"seconds": 60}, "stubborn", "sleeping")
        await runner.cancel("stubborn")
        await asyncio.wait_for(task, timeout=10)
        done = events[-1]
        assert isinstance(done, Done) and done.status is PredictionStatus.CANCELED
        after = await run(runner, {"seconds": 0})
        assert after.outputs == ["done"]
    finally:
        await runner.shutdown()


async def test_stopping_iteration_early_cancels_the_prediction() -> None:
    runner = make_runner("cancel_sync")
    try:
        await runner.start()
        stream = runner.predict(runner.validator.validate({"seconds": 60}), prediction_id="abandoned")
        async for event in stream:
            if isinstance(event, Log) and "sleeping" in event.data:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        # The slot comes back once the child has canceled it: the next prediction runs.
        after = await asyncio.wait_for(run(runner, {"seconds": 0}), timeout=10)
        assert after.outputs == ["woke up"]
    finally:
        await runner.shutdown()
