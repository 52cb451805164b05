"""Replicate's trainings API with the official `replicate` client against a live server with a hub: a version's
`train:` entry point runs through the same admission and queue as predictions, and a succeeded training is a new
version of its destination model whose `weights` are what the training wrote."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import replicate
from replicate.exceptions import ReplicateError
from replicate.training import Training

from cocina.hub import Hub
from cocina.hub.envs import EnvironmentBuilder
from cocina.hub.manifest import build_manifest
from cocina.store import PredictionStatus, SQLiteStore
from tests.server.conftest import PROJECTS, LiveServer, echo_spec, start_server

FEATURES = PROJECTS / "features"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Hub, str]]:
    """A server whose hub has the features project pushed as `acme/base` (its version id is the third item),
    and an empty model `acme/tuned` to train into."""
    data = tmp_path_factory.mktemp("trainings") / "data"
    store = SQLiteStore(data / "predictions.db")
    hub = Hub(store, data / "hub", builder=EnvironmentBuilder(data / "hub" / "envs", no_index=True))
    manifest, sources = build_manifest(FEATURES)
    hub.store_files(manifest, sources)
    base = asyncio.run(hub.create_version("acme/base", manifest)).version.id
    hub.create_model("acme/tuned")
    srv = start_server(data, [echo_spec(warm=True)], store=store, hub=hub)
    try:
        yield srv, hub, base
    finally:
        srv.stop()
        store.close()


def client(srv: LiveServer) -> replicate.Client:
    return replicate.Client(api_token="unused", base_url=srv.url)


def wait(training: Training, timeout_s: float = 60.0) -> Training:
    deadline = time.monotonic() + timeout_s
    while training.status not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline, f"training still {training.status}"
        time.sleep(0.1)
        training.reload()
    return training


def test_a_training_becomes_a_version_of_its_destination(trained: tuple[LiveServer, Hub, str]) -> None:
    srv, hub, base = trained
    c = client(srv)
    training = c.trainings.create(
        version=f"acme/base:{base}", input={"prefix": "tuned-once"}, destination="acme/tuned"
    )
    assert training.status == "starting" and training.model == "acme/base" and training.version == base
    assert training.destination == "acme/tuned"
    training = wait(training)
    assert training.status == "succeeded", training.error
    assert "training tuned-once" in (training.logs or "")
    assert isinstance(training.output, dict)
    new_ref = training.output["version"]
    assert new_ref.startswith("acme/tuned:")
    assert training.output["weights"] == "data:text/plain;base64," + "dHVuZWQtb25jZQ=="  # the file it wrote
    # The new version: the trained version's files, and the weights as `weights`, which setup() receives.
    new_id = new_ref.partition(":")[2]
    files = {f["path"] for f in hub.get_version("acme/tuned", new_id).manifest or []}
    assert files == {"cog.yaml", "predict.py", "train.py", "weights"}
    assert list(c.run(new_ref, input={"mode": "weights"})) == ["tuned-once"]
    assert list(c.run(f"acme/base:{base}", input={"mode": "weights"})) == ["untrained"]  # the base is unchanged
    assert not (hub.versions_dir / base / "trained.txt").exists()  # the training ran in a copy
    # Listed with the trainings, not with the predictions; read back by id.
    assert training.id in [t.id for t in c.trainings.list().results]
    assert training.id not in [p.id for p in c.predictions.list().results]
    assert c.trainings.get(training.id).output == training.output
    rec = srv.serving.store.get(training.id)
    assert rec is not None and rec.kind == "training" and rec.destination == "acme/tuned"


def test_a_training_can_be_canceled(trained: tuple[LiveServer, Hub, str]) -> None:
    srv, hub, base = trained
    c = client(srv)
    before = {v.id for v in hub.list_versions("acme/tuned")}
    training = c.trainings.create(
        version=f"acme/base:{base}", input={"prefix": "slow", "sleep": 30}, destination="acme/tuned"
    )
    deadline = time.monotonic() + 30
    while c.trainings.get(training.id).status != "processing":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    training.cancel()
    assert wait(training).status == "canceled"
    assert {v.id for v in hub.list_versions("acme/tuned")} == before


def test_a_failed_training_makes_no_version(trained: tuple[LiveServer, Hub, str]) -> None:
    srv, hub, base = trained
    c = client(srv)
    before = {v.id for v in hub.list_versions("acme/tuned")}
    failed = wait(
        c.trainings.create(
            version=f"acme/base:{base}", input={"prefix": "x", "outcome": "fail"}, destination="acme/tuned"
        )
    )
    assert failed.status == "failed" and "the loss diverged" in (failed.error or "")
    empty = wait(
        c.trainings.create(
            version=f"acme/base:{base}", input={"prefix": "x", "outcome": "no_weights"}, destination="acme/tuned"
        )
    )
    assert empty.status == "failed"
    assert empty.error == (
        "The training returned no weights: train() must return a Path, or an object with a `weights` Path."
    )
    assert {v.id for v in hub.list_versions("acme/tuned")} == before


def test_refused_trainings_are_replicate_errors(trained: tuple[LiveServer, Hub, str]) -> None:
    srv, _hub, base = trained
    c = client(srv)

    def refused(status: int, **kwargs: object) -> str:
        with pytest.raises(ReplicateError) as err:
            c.trainings.create(**kwargs)  # type: ignore[arg-type]
        assert err.value.status == status, err.value
        return str(err.value.detail)

    ref = f"acme/base:{base}"
    assert "acme/nowhere does not exist" in refused(404, version=ref, input={"prefix": "x"}, destination="acme/nowhere")
    assert "destination" in refused(400, version=ref, input={"prefix": "x"}, destination="not a model")
    assert "prefix" in refused(422, version=ref, input={"sleep": "long"}, destination="acme/tuned")
    assert "not found" in refused(404, version="acme/base:" + "0" * 64, input={}, destination="acme/tuned")
    # The served echo project has no `train:` entry point.
    echo = srv.serving.models.by_name["acme/echo"].model.version
    assert "no `train:` entry point" in refused(400, version=f"acme/echo:{echo}", input={}, destination="acme/tuned")
    r = srv.client.post(f"/v1/models/acme/base/versions/{base}/trainings", json={"input": {}})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "destination" in r.json()["detail"]
    # A prediction is not a training, and an unknown id is neither.
    prediction = c.predictions.create(version=f"acme/echo:{echo}", input={"text": "x"})
    for pid in (prediction.id, "nope"):
        assert srv.client.get(f"/v1/trainings/{pid}").status_code == 404
        assert srv.client.post(f"/v1/trainings/{pid}/cancel").status_code == 404
    assert srv.serving.store.get(prediction.id).status is not PredictionStatus.CANCELED  # type: ignore[union-attr]
