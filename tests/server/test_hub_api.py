"""The hub over HTTP with the official `replicate` client: push a project (only what the server lacks is sent),
run a version by id, two versions side by side behind a 90/10 deployment with sticky routing, releases and
rollback, clear 4xx errors, an interrupted upload, and everything still there after a restart."""

from __future__ import annotations

import socket
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import replicate
from replicate.exceptions import ReplicateError

from cocina.hubctl.client import HubClientError, PushProgress, RemoteHub
from tests.server.conftest import LiveServer, start_server

PREDICT = """
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="what to echo")) -> str:
        return "{tag}:" + text
"""


def _project(root: Path, tag: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(PREDICT.replace("{tag}", tag)))
    (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    (root / "weights.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB: something worth not sending twice
    return root


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[LiveServer]:
    srv = start_server(tmp_path / "data", hub=True, wait=None)
    try:
        yield srv
    finally:
        if srv.thread.is_alive():
            srv.stop()


def _push(srv: LiveServer, root: Path, name: str) -> tuple[str, bool, int]:
    client = RemoteHub(srv.url)
    try:
        lines: list[str] = []
        pushed = client.push(root, name, PushProgress(say=lines.append))
        return pushed.version["id"], pushed.created, pushed.uploaded_bytes
    finally:
        client.close()


def test_push_then_run_by_version_and_push_again(hub_server: LiveServer, tmp_path: Path) -> None:
    root = _project(tmp_path / "hello", "v1")
    version, created, sent = _push(hub_server, root, "acme/hello")
    assert created and sent > 2**20
    again, created_again, sent_again = _push(hub_server, root, "acme/hello")
    assert again == version and not created_again and sent_again == 0  # unchanged: nothing uploaded
    rep = replicate.Client(api_token="x", base_url=hub_server.url)
    assert rep.run(f"acme/hello:{version}", input={"text": "hola"}) == "v1:hola"
    assert rep.run("acme/hello", input={"text": "hola"}) == "v1:hola"  # the newest version
    model = rep.models.get("acme/hello")
    assert model.latest_version is not None and model.latest_version.id == version
    schema = model.versions.get(version).openapi_schema
    assert schema["components"]["schemas"]["Input"]["required"] == ["text"]
    assert [m.name for m in rep.models.list()] == ["hello"]
    row = rep.predictions.list().results[0]
    assert row.version == version and row.model == "acme/hello"


def test_a_broken_project_is_refused_with_its_error(hub_server: LiveServer, tmp_path: Path) -> None:
    root = _project(tmp_path / "broken", "x")
    (root / "predict.py").write_text("from cog import BasePredictor\nclass Predictor(BasePredictor)\n")
    with pytest.raises(HubClientError) as err:
        _push(hub_server, root, "acme/broken")
    assert err.value.status == 422 and "predict.py:2" in err.value.message
    assert hub_server.client.get("/v1/models/acme/broken").status_code == 404  # no version, not even the model


def test_an_interrupted_upload_stores_nothing(hub_server: LiveServer, tmp_path: Path) -> None:
    root = _project(tmp_path / "p", "v1")
    from cocina.hub.manifest import build_manifest

    manifest, sources = build_manifest(root)
    big = next(f for f in manifest.files if f.path == "weights.bin")
    port = int(hub_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:  # half the body, then the connection drops
        head = (
            f"PUT /v1/hub/blobs/sha256/{big.sha256} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {big.size}\r\n\r\n"
        )
        sock.sendall(head.encode() + sources[big.sha256].read_bytes()[: big.size // 2])
    time.sleep(0.3)
    assert hub_server.client.head(f"/v1/hub/blobs/sha256/{big.sha256}").status_code == 404
    r = hub_server.client.post("/v1/models/acme/p/versions", json={"manifest": manifest.to_json()})
    assert r.status_code == 409 and "were not uploaded" in r.json()["detail"]
    assert list((tmp_path / "data" / "hub" / "blobs" / "tmp").iterdir()) == []
    version, created, _ = _push(hub_server, root, "acme/p")  # the next push completes it
    assert created and version == manifest.version_id
    bad = hub_server.client.put(f"/v1/hub/blobs/sha256/{'0' * 64}", content=b"not that")
    assert bad.status_code == 422 and "SHA-256" in bad.json()["detail"]
    assert hub_server.client.put("/v1/hub/blobs/sha256/nothex", content=b"x").status_code == 400


def test_a_90_10_deployment_with_sticky_routing(hub_server: LiveServer, tmp_path: Path) -> None:
    a, _, _ = _push(hub_server, _project(tmp_path / "a", "A"), "acme/ab")
    b, _, _ = _push(hub_server, _project(tmp_path / "b", "B"), "acme/ab")
    admin = replicate.Client(api_token="admin", base_url=hub_server.url)
    created = admin.deployments.create(
        name="prod", model="acme/ab", version=a, hardware="cpu", min_instances=1, max_instances=1
    )
    assert created.owner == "acme" and created.current_release is not None and created.current_release.number == 1
    updated = admin.deployments.update(
        "acme", "prod", versions=[{"version": a, "weight": 90}, {"version": b, "weight": 10}]
    )  # type: ignore[call-arg]
    assert updated.current_release is not None and updated.current_release.number == 2
    assert updated.current_release.version == a  # the heaviest, where Replicate's single version goes
    assert [d.name for d in admin.deployments.list().results] == ["prod"]

    def user(i: int) -> tuple[str, list[str]]:
        client = replicate.Client(api_token=f"user-{i}", base_url=hub_server.url)  # the key keeps the user
        seen = []
        for _ in range(2):
            pred = client.deployments.predictions.create("acme/prod", input={"text": "x"})
            pred.wait()
            assert pred.status == "succeeded", pred.error
            seen.append(str(pred.output).split(":")[0])
        return f"user-{i}", seen

    with ThreadPoolExecutor(8) as pool:
        results = dict(pool.map(user, range(120)))
    assert all(len(set(seen)) == 1 for seen in results.values())  # one user, one version
    share_b = Counter(seen[0] for seen in results.values())["B"] / len(results)
    assert 0.02 < share_b < 0.2, share_b
    rows = hub_server.client.get("/v1/predictions").json()["results"]
    assert {r["deployment"] for r in rows} == {"acme/prod"} and {r["version"] for r in rows} == {a, b}
    stored = hub_server.serving.store.get(rows[0]["id"])
    assert stored is not None and stored.release == 2

    rolled = hub_server.client.post("/v1/deployments/acme/prod/rollback", json={}).json()
    assert rolled["current_release"]["number"] == 3
    assert rolled["current_release"]["configuration"]["versions"] == [{"version": a, "weight": 100}]
    releases = hub_server.client.get("/v1/deployments/acme/prod/releases").json()["results"]
    assert [r["number"] for r in releases] == [3, 2, 1]
    one = replicate.Client(api_token="user-1", base_url=hub_server.url).deployments.predictions.create(
        "acme/prod", input={"text": "y"}
    )
    one.wait()
    assert one.output == "A:y"


def test_clear_errors(hub_server: LiveServer, tmp_path: Path) -> None:
    a, _, _ = _push(hub_server, _project(tmp_path / "a", "A"), "acme/m")
    c = hub_server.client
    body = {"name": "d", "model": "acme/m", "versions": [{"version": a, "weight": 90}]}
    r = c.post("/v1/deployments", json=body)
    assert r.status_code == 400 and "sum to 100; they sum to 90" in r.json()["detail"]
    r = c.post("/v1/deployments", json={**body, "versions": [{"version": "f" * 64, "weight": 100}]})
    assert r.status_code == 400 and "not found" in r.json()["detail"]
    assert c.post("/v1/deployments", json={"name": "d", "model": "acme/m", "version": a}).status_code == 201
    assert c.post("/v1/deployments", json={"name": "d", "model": "acme/m", "version": a}).status_code == 409
    r = c.delete(f"/v1/models/acme/m/versions/{a}")
    assert r.status_code == 409 and "in use by deployment acme/d" in r.json()["detail"]
    assert c.delete("/v1/models/acme/m").status_code == 409  # it has versions
    assert c.get("/v1/deployments/acme/nope").status_code == 404
    assert c.patch("/v1/deployments/acme/d", json={"max_instances": 0}).status_code == 200
    r = c.post("/v1/deployments/acme/d/predictions", json={"input": {"text": "x"}})
    assert r.status_code == 503 and "disabled" in r.json()["detail"]
    with pytest.raises(ReplicateError) as err:
        replicate.Client(api_token="x", base_url=hub_server.url).models.get("acme/absent")
    assert err.value.status == 404


def test_everything_is_still_there_after_a_restart(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", hub=True, wait=None)
    try:
        a, _, _ = _push(srv, _project(tmp_path / "a", "A"), "acme/keep")
        srv.client.post("/v1/deployments", json={"name": "keep", "model": "acme/keep", "version": a})
    finally:
        srv.stop()
    srv = start_server(tmp_path / "data", hub=True, wait=None)
    try:
        rep = replicate.Client(api_token="x", base_url=srv.url)
        assert rep.models.get("acme/keep").latest_version.id == a  # type: ignore[union-attr]
        assert rep.deployments.get("acme/keep").current_release.version == a  # type: ignore[union-attr]
        assert rep.run(f"acme/keep:{a}", input={"text": "z"}) == "A:z"
        health = httpx.get(f"{srv.url}/health").json()
        assert health["status"] == "ok"
    finally:
        srv.stop()
