"""A model's runtime and the model set, without HTTP: loading on demand, reloading after a crash, cancel and
deadlines, `--max-loaded` and the memory budget unloading the least recently used idle model."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from cocina.serving import AdmissionRequest, CancelReason, ModelState, Serving
from cocina.serving.errors import ModelUnavailable
from cocina.store import PredictionStatus
from tests.serving.conftest import config, echo, plain


def req(model: str, **inputs: object) -> AdmissionRequest:
    return AdmissionRequest(surface="replicate", input=dict(inputs), model=model)


async def until(predicate: object, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_models_load_on_first_use_and_after_their_process_dies(serving: Serving) -> None:
    plain_rt = serving.models.get("acme/plain")
    assert plain_rt.model.state is ModelState.UNLOADED  # not warm: nothing loaded at start
    rec = (await serving.admit(req("acme/plain", text="a"))).record
    assert (await serving.wait(rec.id, 30)).output == "a"  # type: ignore[union-attr]
    pid = plain_rt.model.pid
    assert pid is not None and plain_rt.model.load_count == 1
    os.kill(pid, signal.SIGKILL)
    await until(lambda: plain_rt.model.state is ModelState.UNLOADED)
    assert "SIGKILL" in (plain_rt.model.last_exit or "")
    # Not warm: it stays unloaded until it is used again.
    await asyncio.sleep(0.3)
    assert plain_rt.model.state is ModelState.UNLOADED
    rec = (await serving.admit(req("acme/plain", text="b"))).record
    assert (await serving.wait(rec.id, 30)).output == "b"  # type: ignore[union-attr]
    assert plain_rt.model.load_count == 2 and plain_rt.model.pid != pid


async def test_cancel_queued_and_running(tmp_path: Path) -> None:
    s = Serving(config(tmp_path, concurrency=1), [echo(warm=True)])
    await s.start()
    try:
        slow = {"text": "s", "n": 50, "delay": 0.05}
        running = (await s.admit(req("acme/echo", **slow))).record
        queued = (await s.admit(req("acme/echo", **slow))).record
        await until(lambda: len(s.get(running.id).output or []) >= 2)  # type: ignore[union-attr]
        s.cancel(queued.id)
        assert s.get(queued.id).status is PredictionStatus.CANCELED  # type: ignore[union-attr]
        s.cancel(running.id, CancelReason.USER)
        final = await s.wait(running.id, 30)
        assert final is not None and final.status is PredictionStatus.CANCELED and 0 < len(final.output) < 50
        assert s.cancel("no-such-id") is None
    finally:
        await s.drain(1.0)


async def test_deadlines(tmp_path: Path) -> None:
    import time

    s = Serving(config(tmp_path, prediction_timeout_s=0.3), [echo(warm=True)])
    await s.start()
    try:
        slow = {"text": "t", "n": 50, "delay": 0.05}
        timed_out = (await s.admit(req("acme/echo", **slow))).record
        final = await s.wait(timed_out.id, 30)
        assert final is not None and final.status is PredictionStatus.FAILED and "timed out" in (final.error or "")
        # Cancel-After (a deadline of the request's own, shorter): canceled, not failed.
        early = AdmissionRequest(surface="replicate", input=slow, model="acme/echo", deadline=time.time() + 0.1)
        final = await s.wait((await s.admit(early)).record.id, 30)
        assert final is not None and final.status is PredictionStatus.CANCELED
    finally:
        await s.drain(1.0)


async def test_max_loaded_unloads_the_least_recently_used_idle_model(tmp_path: Path) -> None:
    s = Serving(config(tmp_path, max_loaded=2), [echo("acme/a", warm=True), echo("acme/b"), plain("acme/c")])
    await s.start()
    try:
        a, b, c = (s.models.get(n).model for n in ("acme/a", "acme/b", "acme/c"))
        await a.wait_loaded(30)
        for name in ("acme/b", "acme/c"):
            rec = (await s.admit(req(name, text="x", n=1))).record
            assert (await s.wait(rec.id, 30)).status is PredictionStatus.SUCCEEDED  # type: ignore[union-attr]
        # Two at most: b (idle, least recently used, not warm) made room for c; a is kept warm.
        assert (a.state, b.state, c.state) == (ModelState.READY, ModelState.UNLOADED, ModelState.READY)
        rec = (await s.admit(req("acme/b", text="y", n=1))).record
        assert (await s.wait(rec.id, 30)).output == ["y0"]  # type: ignore[union-attr]
        assert (b.state, c.state) == (ModelState.READY, ModelState.UNLOADED)
    finally:
        await s.drain(1.0)


async def test_a_busy_model_is_not_unloaded_and_the_wait_is_bounded(tmp_path: Path) -> None:
    s = Serving(config(tmp_path, max_loaded=1, load_timeout_s=0.5), [echo("acme/a"), plain("acme/b")])
    await s.start()
    try:
        b = s.models.get("acme/b").model
        first = (await s.admit(req("acme/b", text="x"))).record
        await s.wait(first.id, 30)
        busy = (await s.admit(req("acme/a", text="s", n=40, delay=0.05))).record  # b, idle, makes room
        await until(lambda: s.get(busy.id).status is PredictionStatus.PROCESSING)  # type: ignore[union-attr]
        assert b.state is ModelState.UNLOADED
        waiting = (await s.admit(req("acme/b", text="x"))).record  # its schema is known: admitted
        final = await s.wait(waiting.id, 30)
        assert final is not None and final.status is PredictionStatus.FAILED
        assert "No room to load acme/b: --max-loaded 1 models are loaded" in (final.error or "")
        assert s.get(busy.id).status is PredictionStatus.PROCESSING  # type: ignore[union-attr]
    finally:
        await s.drain(1.0)


async def test_the_memory_budget_unloads_before_loading(tmp_path: Path) -> None:
    s = Serving(config(tmp_path, memory_budget_bytes=1), [echo("acme/a"), plain("acme/b")])
    await s.start()
    try:
        a, b = s.models.get("acme/a").model, s.models.get("acme/b").model
        rec = (await s.admit(req("acme/a", text="x", n=1))).record
        await s.wait(rec.id, 30)
        assert a.state is ModelState.READY and (a.rss_bytes or 0) > 2**20  # a Python process: megabytes
        rec = (await s.admit(req("acme/b", text="x"))).record
        assert (await s.wait(rec.id, 30)).output == "x"  # type: ignore[union-attr]
        assert (a.state, b.state) == (ModelState.UNLOADED, ModelState.READY)  # a went to make room
    finally:
        await s.drain(1.0)


async def test_wait_loaded_reports_a_failed_setup(tmp_path: Path) -> None:
    s = Serving(config(tmp_path), [echo(env={"ECHO_SETUP_FAIL": "1"})])
    await s.start()
    try:
        model = s.models.get("acme/echo").model
        with pytest.raises(ModelUnavailable) as err:
            await model.wait_loaded(30)
        assert "no weights" in err.value.message and model.state is ModelState.FAILED
        assert model.setup is not None and "loading weights" in model.setup.logs
    finally:
        await s.drain(1.0)
