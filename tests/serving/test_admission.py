"""The one admission function, without HTTP: every outcome, and nothing running before its row exists."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cocina.serving import AdmissionRequest, ModelState, Serving
from cocina.serving.errors import (
    InvalidInput,
    InvalidModelName,
    ModelNotFound,
    QueueFull,
    ShuttingDown,
    StoreUnavailable,
)
from cocina.store import PredictionRecord, PredictionStatus, SQLiteStore, StoreError
from tests.serving.conftest import config, echo, plain


def req(model: str | None = None, **inputs: object) -> AdmissionRequest:
    return AdmissionRequest(surface="replicate", input=dict(inputs), model=model)


async def test_admits_to_the_named_model_with_its_row_first(serving: Serving) -> None:
    admitted = await serving.admit(req("acme/plain", text="hola"))
    rec = admitted.record
    assert (
        admitted.created and rec.model == "acme/plain" and rec.version == serving.models.get("acme/plain").model.version
    )
    stored = serving.store.get(rec.id)
    # The row exists, leased to this server, before the model has even loaded (loading starts with the work).
    assert stored is not None and stored.status is PredictionStatus.STARTING and stored.lease_owner == serving.owner
    assert stored.run_input == {"text": "hola", "delay": 0.0}  # validated and normalized: defaults filled
    final = await serving.wait(rec.id, 30)
    assert final is not None and final.status is PredictionStatus.SUCCEEDED and final.output == "hola"
    assert serving.models.get("acme/plain").model.state is ModelState.READY


async def test_the_default_model_and_every_reference_form(serving: Serving) -> None:
    version = serving.models.get("acme/echo").model.version
    for ref in (None, "acme/echo", f"acme/echo:{version}", version):
        rec = (await serving.admit(req(ref, text="x", n=1))).record
        assert rec.model == "acme/echo", ref
        assert (await serving.wait(rec.id, 30)).output == ["x0"]  # type: ignore[union-attr]


async def test_refusals_write_no_row(serving: Serving) -> None:
    with pytest.raises(ModelNotFound):
        await serving.admit(req("acme/nope", text="x"))
    with pytest.raises(ModelNotFound):
        await serving.admit(req("acme/echo:" + "f" * 64, text="x"))
    with pytest.raises(InvalidModelName) as bad:
        await serving.admit(req("nope", text="x"))
    assert bad.value.param == "version"
    with pytest.raises(InvalidInput) as invalid:
        await serving.admit(req("acme/echo", n="three"))
    assert {tuple(e["loc"]) for e in invalid.value.errors} == {("body", "input", "text"), ("body", "input", "n")}
    assert serving.page(None, 10) == []


async def test_an_existing_id_answers_with_its_prediction(serving: Serving) -> None:
    first = await serving.admit(AdmissionRequest(surface="cog", input={"text": "a", "n": 1}, prediction_id="p1"))
    again = await serving.admit(AdmissionRequest(surface="cog", input={"text": "other"}, prediction_id="p1"))
    assert first.created and not again.created and again.record.id == "p1"
    assert (await serving.wait("p1", 30)).output == ["a0"]  # type: ignore[union-attr]
    assert len(serving.page(None, 10)) == 1


async def test_a_full_queue_refuses_with_a_retry_time(tmp_path: Path) -> None:
    s = Serving(config(tmp_path, concurrency=1, max_queue=1), [echo()])
    await s.start()
    try:
        slow = {"text": "s", "n": 1, "delay": 0.5}
        await s.admit(AdmissionRequest(surface="cog", input=slow))
        await s.admit(AdmissionRequest(surface="cog", input=slow))
        with pytest.raises(QueueFull) as full:
            await s.admit(AdmissionRequest(surface="cog", input=slow))
        assert full.value.retry_after_s is not None and full.value.retry_after_s >= 1
        assert len(s.page(None, 10)) == 2
    finally:
        await s.drain(2.0)


class FlakyStore(SQLiteStore):
    """A real store whose inserts fail while `failing`."""

    failing = False

    def insert(self, rec: PredictionRecord) -> bool:
        if self.failing:
            raise StoreError("disk I/O error")
        return super().insert(rec)


async def test_a_store_failure_refuses_and_starts_nothing(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "p.db")
    s = Serving(config(tmp_path), [echo(warm=True)], store=store)
    await s.start()
    try:
        await s.models.get("acme/echo").model.wait_loaded(30)
        store.failing = True
        with pytest.raises(StoreUnavailable) as err:
            await s.admit(req("acme/echo", text="x"))
        assert err.value.retry_after_s == 1
        runtime = s.models.get("acme/echo")
        assert runtime.num_queued == runtime.num_running == 0 and s.book.active == {}
        store.failing = False
        rec = (await s.admit(req("acme/echo", text="y", n=1))).record
        assert (await s.wait(rec.id, 30)).output == ["y0"]  # type: ignore[union-attr]
    finally:
        await s.drain(1.0)
        store.close()


async def test_a_failed_setup_refuses_new_predictions(tmp_path: Path) -> None:
    s = Serving(config(tmp_path), [echo(env={"ECHO_SETUP_FAIL": "1"}, warm=True)])
    await s.start()
    try:
        model = s.models.get("acme/echo").model
        for _ in range(300):
            if model.state is ModelState.FAILED:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(Exception) as err:
            await s.admit(req("acme/echo", text="x"))
        assert "failed to set up: ValueError: no weights" in str(err.value)
    finally:
        await s.drain(1.0)


async def test_nothing_is_admitted_while_draining(serving: Serving) -> None:
    await serving.drain(0.1)
    with pytest.raises(ShuttingDown):
        await serving.admit(req("acme/echo", text="x"))


async def test_plain_and_iterator_outputs_are_kept_apart(serving: Serving) -> None:
    a = (await serving.admit(req("acme/plain", text="p"))).record
    b = (await serving.admit(req("acme/echo", text="e", n=2))).record
    assert (await serving.wait(a.id, 30)).output == "p"  # type: ignore[union-attr]
    assert (await serving.wait(b.id, 30)).output == ["e0", "e1"]  # type: ignore[union-attr]
    assert serving.run_counts() == {"acme/plain": 1, "acme/echo": 1}


def test_specs_for_the_fixture_projects_differ() -> None:
    assert echo().version != plain().version
