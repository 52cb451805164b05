"""The hub on PostgreSQL, end to end: two `cocina serve` processes (replicas) share one PostgreSQL store and one
data directory, and neither serves anything at start. A version pushed to one and a deployment created there
are predicted through on the other, over HTTP on 127.0.0.1 with the official `replicate` client; a second push
and a new release made on the other replica route the first one's next prediction. The store then holds the
models, versions, releases and the deployment's traffic with the release that routed each prediction."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import replicate

from cocina.hubctl.client import PushProgress, RemoteHub
from cocina.store.postgres import PostgresStore
from tests.server.test_hub_api import _project
from tests.server.test_replicas import Replica


@pytest.fixture
def hub_replicas(postgres_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    data = tmp_path / "data"  # shared: a version's files are where both replicas look for them
    (data / "wheels").mkdir(parents=True)
    offline = ("--no-index", "--find-links", str(data / "wheels"))
    pair = (Replica(postgres_url, data, *offline, targets=()), Replica(postgres_url, data, *offline, targets=()))
    try:
        for r in pair:
            r.wait_ready()
        yield pair
    finally:
        for r in pair:
            r.close()


def _push(url: str, root: Path, name: str) -> str:
    client = RemoteHub(url)
    try:
        return str(client.push(root, name, PushProgress(say=lambda _line: None)).version["id"])
    finally:
        client.close()


def _predict(url: str, text: str) -> replicate.prediction.Prediction:
    pred = replicate.Client(api_token="x", base_url=url).deployments.predictions.create(
        "acme/prod", input={"text": text}
    )
    pred.wait()
    assert pred.status == "succeeded", pred.error
    return pred


def test_push_deploy_and_predict_across_replicas_on_postgres(
    hub_replicas: tuple[Replica, Replica], postgres_url: str, tmp_path: Path
) -> None:
    a, b = hub_replicas
    v1 = _push(a.url, _project(tmp_path / "one", "v1"), "acme/hello")
    created = a.client.post("/v1/deployments", json={"name": "prod", "model": "acme/hello", "version": v1})
    assert created.status_code == 201, created.text
    first = _predict(b.url, "hola")  # B learns of the version and the deployment from the store
    assert first.output == "v1:hola"

    v2 = _push(b.url, _project(tmp_path / "two", "v2"), "acme/hello")
    patched = b.client.patch("/v1/deployments/acme/prod", json={"version": v2})
    assert patched.status_code == 200, patched.text
    assert patched.json()["current_release"]["number"] == 2
    second = _predict(a.url, "adios")  # A routes by release 2, made on B
    assert second.output == "v2:adios"
    assert a.client.get(f"/v1/predictions/{first.id}").json()["output"] == "v1:hola"  # B's run, read on A
    models = [m["name"] for m in a.client.get("/v1/models").json()["results"]]
    assert models == ["hello"]
    versions = b.client.get("/v1/models/acme/hello/versions").json()["results"]
    assert [v["id"] for v in versions] == [v2, v1]  # newest first

    store = PostgresStore(postgres_url)
    try:
        traffic = store.of_deployment("acme/prod")
        assert [(r.id, r.version, r.release) for r in traffic] == [(second.id, v2, 2), (first.id, v1, 1)]
        assert [r.number for r in store.list_releases("acme/prod")] == [2, 1]
        assert [v.id for v in store.list_versions("acme/hello", pushed_only=True)] == [v2, v1]
        assert store.count_unfinished("acme/hello") == 0
    finally:
        store.close()
