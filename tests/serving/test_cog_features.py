"""Newer Cog features in serving, without HTTP: metrics as events and in the record, the request context (kept for
a re-run), the streaming opt-in, a late subscriber's history (`COG_STREAM_HISTORY_CAPACITY`), and what a
training needs before it is admitted."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cocina.hub import Hub
from cocina.hub.envs import EnvironmentBuilder
from cocina.serving import AdmissionRequest, ModelState, Serving
from cocina.serving.errors import InvalidRequest, StreamingUnsupported
from cocina.serving.events import Completed, MetricChunk, OutputChunk, PredictionEvent, ReplayTruncated, Started
from cocina.serving.spec import project_spec
from cocina.store import PredictionRecord, PredictionStatus, SQLiteStore
from tests.serving.conftest import PROJECTS, config, plain

FEATURES = PROJECTS / "features"


def features(name: str = "acme/features", capacity: int | None = None, *, warm: bool = True) -> object:
    env = {} if capacity is None else {"COG_STREAM_HISTORY_CAPACITY": str(capacity)}
    return project_spec(FEATURES, name=name).replace(warm=warm, env=env)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Serving]:
    """The features project three times (history kept as Cog's default, 2 events, none) and a plain predictor."""
    specs = [features(), features("acme/cap2", 2), features("acme/cap0", 0), plain()]
    s = Serving(config(tmp_path), specs)  # type: ignore[arg-type]
    await s.start()
    try:
        yield s
    finally:
        await s.drain(1.0)


async def collect(events: AsyncIterator[PredictionEvent]) -> list[PredictionEvent]:
    return [ev async for ev in events]


async def test_metrics_are_events_and_end_in_the_record(served: Serving) -> None:
    admitted = await served.admit(AdmissionRequest(surface="cog", input={"n": 2}))
    events = await collect(served.events(admitted.record.id))
    metrics = [(e.name, e.value, e.mode) for e in events if isinstance(e, MetricChunk)]
    assert metrics == [
        ("temperature", 0.7, "replace"),
        ("tokens", 1, "increment"),
        ("tokens", 1, "increment"),
        ("timing.total", 0.5, "replace"),
    ]
    rec = served.get(admitted.record.id)
    assert rec is not None and rec.status is PredictionStatus.SUCCEEDED
    assert {k: rec.metrics[k] for k in ("temperature", "tokens", "timing")} == {
        "temperature": 0.7,
        "tokens": 2,
        "timing": {"total": 0.5},
    }
    assert rec.metrics["predict_time"] > 0 and rec.metrics["total_time"] >= rec.metrics["predict_time"]


async def test_a_metric_cog_refuses_fails_the_prediction(served: Serving) -> None:
    admitted = await served.admit(AdmissionRequest(surface="cog", input={"mode": "bad_metric"}))
    rec = await served.wait(admitted.record.id, 30)
    assert rec is not None and rec.status is PredictionStatus.FAILED
    assert rec.error is not None and "must start with a letter" in rec.error


async def test_the_request_context_reaches_the_predictor_and_is_kept(served: Serving) -> None:
    context = {"api_token": "secret123", "region": "us-east-1"}
    admitted = await served.admit(AdmissionRequest(surface="cog", input={"mode": "context"}, context=context))
    rec = await served.wait(admitted.record.id, 30)
    assert rec is not None and rec.output == ["api_token=secret123,region=us-east-1"]
    stored = served.store.get(rec.id)
    assert stored is not None and stored.context == context
    empty = await served.admit(AdmissionRequest(surface="cog", input={"mode": "context"}))
    assert (await served.wait(empty.record.id, 30)).output == [""]  # type: ignore[union-attr]


async def test_a_rerun_after_a_crash_keeps_the_context(served: Serving) -> None:
    run = {"mode": "context", "n": 3, "delay": 0.0}
    served.store.insert(
        PredictionRecord(
            id="orphan",
            model="acme/features",
            version=served.models.default.model.version,
            run_input=run,
            context={"who": "me"},
            lease_owner="a-dead-server",
            lease_expires_at=time.time() - 1,
        )
    )
    assert served.leases.reclaim() == 1
    final = await served.wait("orphan", 30)
    assert final is not None and final.status is PredictionStatus.SUCCEEDED and final.output == ["who=me"]
    assert final.attempts == 1


async def test_streaming_is_refused_to_a_predictor_without_the_opt_in(served: Serving) -> None:
    with pytest.raises(StreamingUnsupported) as refused:
        await served.admit(
            AdmissionRequest(surface="cog", input={"text": "x"}, model="acme/plain", require_streaming=True)
        )
    assert "Add @cog.streaming to predict()" in refused.value.message
    assert served.page(None, 10) == []  # nothing was recorded
    # An existing prediction of that model is refused too; one of a streaming model is followed.
    plain_rec = await served.admit(AdmissionRequest(surface="cog", input={"text": "x"}, model="acme/plain"))
    with pytest.raises(StreamingUnsupported):
        await served.admit(
            AdmissionRequest(surface="cog", input={}, prediction_id=plain_rec.record.id, require_streaming=True)
        )
    ok = await served.admit(AdmissionRequest(surface="cog", input={"n": 1}, require_streaming=True))
    assert ok.created


async def _past(served: Serving, model: str, n: int) -> str:
    """A prediction of `model` that has produced `n` outputs (and started) and still runs for a while."""
    admitted = await served.admit(AdmissionRequest(surface="cog", input={"n": n + 1, "delay": 0.6}, model=model))
    pid = admitted.record.id
    async for ev in served.events(pid):
        if isinstance(ev, OutputChunk) and ev.index == n - 1:
            break
    return pid


async def test_a_late_subscriber_is_replayed_what_the_model_keeps(served: Serving) -> None:
    # Default history: everything so far, then the rest live.
    pid = await _past(served, "acme/features", 2)
    events = await collect(served.events(pid, late=True))
    assert isinstance(events[0], Started) and isinstance(events[-1], Completed)
    assert [e.value for e in events if isinstance(e, OutputChunk)] == ["chunk-0", "chunk-1", "chunk-2"]
    # Two events kept of more: one ReplayTruncated saying how many were dropped, and nothing else.
    pid = await _past(served, "acme/cap2", 2)
    events = await collect(served.events(pid, late=True))
    # So far: Started, the metric before the loop, then (metric, output) twice: 6 events, 4 of them dropped.
    assert events == [ReplayTruncated(4)]
    # None kept: only what happens from now on.
    pid = await _past(served, "acme/cap0", 1)
    events = await collect(served.events(pid, late=True))
    assert [e.value for e in events if isinstance(e, OutputChunk)] == ["chunk-1"]
    assert isinstance(events[-1], Completed) and not any(isinstance(e, Started) for e in events)
    # A subscriber to an ended prediction still learns how it ended; a new one sees everything.
    assert [type(e) for e in await collect(served.events(pid, late=True))] == [Completed]
    assert isinstance((await collect(served.events(pid)))[0], Started)


async def test_a_training_needs_a_train_entry_point_and_a_hub(served: Serving) -> None:
    with pytest.raises(InvalidRequest, match="no `train:` entry point"):
        await served.admit(
            AdmissionRequest(surface="replicate", input={}, model="acme/plain", kind="training", destination="a/b")
        )
    with pytest.raises(InvalidRequest, match="no hub"):
        await served.admit(
            AdmissionRequest(
                surface="replicate", input={"prefix": "x"}, model="acme/features", kind="training", destination="a/b"
            )
        )
    with pytest.raises(InvalidRequest, match="destination"):
        await served.admit(AdmissionRequest(surface="replicate", input={}, model="acme/features", kind="training"))
    assert served.page(None, 10, kind=None) == []


async def test_a_training_of_a_served_directory_and_its_process_making_room(tmp_path: Path) -> None:
    """A version served from a directory (not pushed) trains too: its files come from the directory, which the
    training leaves as it was. The training's process is a model like any other: idle, it makes room."""
    store = SQLiteStore(tmp_path / "data" / "predictions.db")
    hub = Hub(store, tmp_path / "data" / "hub", builder=EnvironmentBuilder(tmp_path / "envs", no_index=True))
    hub.create_model("acme/tuned")
    s = Serving(config(tmp_path, max_loaded=1), [features(warm=False), plain()], store=store, catalog=hub)  # type: ignore[list-item]
    await s.start()
    try:
        training = await s.admit(
            AdmissionRequest(
                surface="replicate",
                input={"prefix": "from-a-dir"},
                model="acme/features",
                kind="training",
                destination="acme/tuned",
            )
        )
        done = await s.wait(training.record.id, 60)
        assert done is not None and done.status is PredictionStatus.SUCCEEDED, done.error
        version = done.output["version"].partition(":")[2]
        files = {f["path"] for f in hub.get_version("acme/tuned", version).manifest or []}
        assert files == {"cog.yaml", "predict.py", "train.py", "weights"}
        assert not (FEATURES / "trained.txt").exists() and not (FEATURES / "weights").exists()
        trainer = s.models.trainers[("acme/features", s.models.by_name["acme/features"].model.version)]
        assert trainer.model.state is ModelState.READY
        # --max-loaded 1: a prediction of another model unloads the idle training process first.
        other = await s.admit(AdmissionRequest(surface="replicate", input={"text": "x"}, model="acme/plain"))
        assert (await s.wait(other.record.id, 60)).status is PredictionStatus.SUCCEEDED  # type: ignore[union-attr]
        assert trainer.model.state is ModelState.UNLOADED
    finally:
        await s.drain(1.0)
        store.close()


async def test_a_late_subscriber_to_a_prediction_another_server_runs(tmp_path: Path) -> None:
    """Two servers sharing one store: a late subscriber at the one that does not run the prediction is replayed
    what the model keeps too, then follows the rest through the store (a capacity of 0: only what comes next)."""
    shared = tmp_path / "shared.db"
    runner = Serving(
        config(tmp_path / "a"),
        [features("acme/cap0", 0), features()],  # type: ignore[list-item]
        store=SQLiteStore(shared),
    )
    await runner.start()
    follower: Serving | None = None
    try:
        for name in ("acme/cap0", "acme/features"):  # loaded: their schemas are in the store for the follower
            await runner.models.get(name).model.request_load()
        follower = Serving(
            config(tmp_path / "b"),
            [features("acme/cap0", 0, warm=False), features(warm=False)],  # type: ignore[list-item]
            store=SQLiteStore(shared),
        )
        # Two servers in one process stand for two processes: to the follower, the runner (our pid) must be
        # another live process, not an earlier life of its own whose leases it takes over.
        follower.owner = follower.owner.replace(f":{os.getpid()}:", f":{os.getppid()}:")
        await follower.start()

        async def stored_outputs(pid: str, n: int) -> None:  # the runner's flush reached the store
            deadline = time.monotonic() + 10
            while len((follower.store.get(pid) or PredictionRecord(pid)).output or []) < n:
                assert time.monotonic() < deadline, "the runner never flushed its output"
                await asyncio.sleep(0.05)

        admitted = await runner.admit(AdmissionRequest(surface="cog", input={"n": 6, "delay": 0.4}, model="acme/cap0"))
        pid = admitted.record.id
        await stored_outputs(pid, 1)
        events = await collect(follower.events(pid, late=True))
        got = [e.value for e in events if isinstance(e, OutputChunk)]
        first = int(got[0].removeprefix("chunk-")) if got else 6
        assert 1 <= first < 6 and got == [f"chunk-{i}" for i in range(first, 6)], got  # what came next, only
        assert isinstance(events[-1], Completed) and not any(isinstance(e, Started) for e in events)

        pid = await _past(runner, "acme/features", 2)
        await stored_outputs(pid, 2)
        events = await collect(follower.events(pid, late=True))
        assert isinstance(events[0], Started) and isinstance(events[-1], Completed)
        assert [e.value for e in events if isinstance(e, OutputChunk)] == ["chunk-0", "chunk-1", "chunk-2"]
    finally:
        if follower is not None:
            await follower.drain(1.0)
            follower.store.close()
        await runner.drain(1.0)
        runner.store.close()
