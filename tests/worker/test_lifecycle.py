"""Property test of the runner's lifecycle: any mix of queued predictions, failures and crashes.

Each prediction must end with exactly one `Done`, with the status its mode implies, in submission order for a
sync predictor, and the runner must serve again afterwards, whatever crashed in between.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cocina.worker import Done, PredictionEvent, PredictionStatus, RunnerState

from .support import make_runner

EXPECTED = {
    "ok": PredictionStatus.SUCCEEDED,
    "raise": PredictionStatus.FAILED,
    "exit": PredictionStatus.FAILED,
    "kill": PredictionStatus.FAILED,
}


async def _scenario(modes: list[str]) -> None:
    runner = make_runner("predict_failures")
    try:
        await runner.start()
        finished: list[int] = []

        async def one(index: int, mode: str) -> list[PredictionEvent]:
            events = [e async for e in runner.predict(runner.validator.validate({"mode": mode}))]
            finished.append(index)
            return events

        # All submitted at once: the first runs, the rest wait in the parent's queue (sync predictor).
        results = await asyncio.wait_for(asyncio.gather(*(one(i, m) for i, m in enumerate(modes))), 60)
        for mode, events in zip(modes, results, strict=True):
            dones = [e for e in events if isinstance(e, Done)]
            assert len(dones) == 1 and events[-1] is dones[0]
            assert dones[0].status is EXPECTED[mode], (mode, dones[0])
        assert finished == sorted(finished)
        assert runner.queued == 0
        # After a crash a fresh child may still be in setup; the next prediction waits for it and works.
        events = [e async for e in runner.predict(runner.validator.validate({"mode": "ok"}))]
        assert isinstance(events[-1], Done) and events[-1].status is PredictionStatus.SUCCEEDED
        assert runner.state is RunnerState.READY
    finally:
        await runner.shutdown()


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(EXPECTED)), min_size=1, max_size=6))
def test_any_sequence_of_predictions_ends_cleanly(modes: list[str]) -> None:
    asyncio.run(_scenario(modes))
