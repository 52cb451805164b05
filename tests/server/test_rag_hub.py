"""Retrieval-augmented generation configured on the hub, against a live server with a hub: a deployment's release
carrying `rag` (created, changed, dropped, rolled back; clear 400s), a pushed project's `rag:` in cocina.yaml, and
`cocina index push` (the real CLI over HTTP: only missing files sent, versions pinned as NAME@VERSION and kept,
faults refused with their reason). The language model is a tiny random-weight GPT-2 pushed as a project; the
indexes use the default embedding model and real FAISS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import replicate

from cocina.hubctl.client import HubClientError, PushProgress, RemoteHub
from cocina.rag import IndexStore, load_embedder
from tests.server.conftest import LiveServer, start_server

pytest.importorskip("torch")

DOCS = {
    "limpieza.md": "# Limpieza\n\n## Blanquear\n\nLa lejía blanquea la ropa blanca.\n",
    "garden.md": "# Garden\n\nTomatoes need six hours of sun a day.\n",
    "office.txt": "The office opens at nine. The printer is on the second floor.\n",
}
QUESTION = "How much sun do tomatoes need?"
ECHO = """
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, prompt: str = Input(description="what to echo")) -> str:
        return prompt
"""


def _write(root: Path, predict: str, config: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(predict))
    (root / "cocina.yaml").write_text(config)
    return root


def _lm(root: Path, model: Path, rag: str = "") -> Path:
    predict = f'from cocina.llm import LLMPredictor\n\n\nclass Predictor(LLMPredictor):\n    model = "{model}"\n'
    return _write(root, predict, 'predict: "predict.py:Predictor"\n' + rag)


def _push(srv: LiveServer, root: Path, name: str) -> str:
    client = RemoteHub(srv.url)
    try:
        return str(client.push(root, name, PushProgress()).version["id"])
    finally:
        client.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("rag-hub")
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    IndexStore(root / "data" / "indexes").create("kb", [docs], load_embedder())
    srv = start_server(root / "data", hub=True, wait=None)
    try:
        ids = {
            "lm": _push(srv, _lm(root / "lm", tiny_model), "acme/lm"),
            "echo": _push(srv, _write(root / "echo", ECHO, 'predict: "predict.py:Predictor"\n'), "acme/echo"),
        }
        yield srv, {"root": root, "docs": docs, "model": tiny_model, **ids}
    finally:
        srv.stop()


def _run(srv: LiveServer, deployment: str, question: str = QUESTION) -> dict[str, Any]:
    client = replicate.Client(api_token="x", base_url=srv.url)
    pred = client.deployments.predictions.create(deployment, input={"prompt": question, "max_new_tokens": 1})
    pred.wait()
    assert pred.status == "succeeded", pred.error
    body: dict[str, Any] = srv.client.get(f"/v1/predictions/{pred.id}").json()
    return body


def test_a_deployment_release_carries_rag(hub: tuple[LiveServer, dict[str, Any]]) -> None:
    srv, ids = hub
    c = srv.client
    made = c.post(
        "/v1/deployments",
        json={"name": "grounded", "model": "acme/lm", "version": ids["lm"], "rag": {"index": "kb", "top_k": 1}},
    )
    assert made.status_code == 201, made.text
    rag = made.json()["current_release"]["configuration"]["rag"]
    assert rag == {"index": "kb", "top_k": 1, "min_score": 0.0, "rewrite": False}
    first = _run(srv, "acme/grounded")
    assert [s["document"] for s in first["sources"]] == ["docs/garden.md"]
    assert first["retrieval"]["index"] == "kb" and first["retrieval"]["query"] == QUESTION
    stored = srv.serving.store.get(first["id"])
    assert stored is not None and stored.release == 1 and stored.sources == first["sources"]

    assert c.patch("/v1/deployments/acme/grounded", json={"rag": {"index": "kb", "top_k": 2}}).status_code == 200
    assert len(_run(srv, "acme/grounded")["sources"]) == 2
    kept = c.patch("/v1/deployments/acme/grounded", json={"min_instances": 0}).json()  # rag not given: kept
    assert kept["current_release"]["number"] == 3 and kept["current_release"]["configuration"]["rag"]["top_k"] == 2
    dropped = c.patch("/v1/deployments/acme/grounded", json={"rag": None}).json()
    assert "rag" not in dropped["current_release"]["configuration"]
    plain = _run(srv, "acme/grounded")
    assert "sources" not in plain and "retrieval" not in plain
    rolled = c.post("/v1/deployments/acme/grounded/rollback", json={}).json()
    assert rolled["current_release"]["number"] == 5 and rolled["current_release"]["configuration"]["rag"]["top_k"] == 2
    assert len(_run(srv, "acme/grounded")["sources"]) == 2
    releases = c.get("/v1/deployments/acme/grounded/releases").json()["results"]
    assert [bool(r["configuration"].get("rag")) for r in releases] == [True, False, True, True, True]
    # The model itself has no rag: its own predictions have no sources.
    direct = replicate.Client(api_token="x", base_url=srv.url).predictions.create(
        version=ids["lm"], input={"prompt": QUESTION, "max_new_tokens": 1}
    )
    direct.wait()
    assert "sources" not in c.get(f"/v1/predictions/{direct.id}").json()


def test_bad_rag_on_a_deployment_is_a_clear_400(hub: tuple[LiveServer, dict[str, Any]]) -> None:
    srv, ids = hub
    c = srv.client
    base = {"name": "bad", "model": "acme/lm", "version": ids["lm"]}
    cases = [
        ({"rag": {"index": "nope"}}, "no index named 'nope'"),
        ({"rag": {"index": "kb", "top_k": 99}}, "top_k must be an integer from 1 to 20"),
        ({"rag": True}, "rag must be an object"),
        ({"rag": {"index": "kb", "k": 1}}, "unknown fields: k"),
        ({"rag": {"index": "kb@" + "0" * 12}}, "has no version '000000000000'"),
        ({"rag": {"index": "../etc"}}, "invalid index name"),
        ({"model": "acme/echo", "version": ids["echo"], "rag": "kb"}, "not a language model"),
    ]
    for extra, message in cases:
        r = c.post("/v1/deployments", json={**base, **extra})
        assert r.status_code == 400, (extra, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert message in r.json()["detail"], (extra, r.json())
    assert c.get("/v1/deployments/acme/bad").status_code == 404  # nothing was created
    assert c.post("/v1/deployments", json=base).status_code == 201
    r = c.patch("/v1/deployments/acme/bad", json={"rag": {"index": "kb", "min_score": 2}})
    assert r.status_code == 400 and "min_score must be a number from -1 to 1" in r.json()["detail"]
    assert len(c.get("/v1/deployments/acme/bad/releases").json()["results"]) == 1


def test_cocina_yaml_rag_applies_to_the_pushed_model(hub: tuple[LiveServer, dict[str, Any]]) -> None:
    srv, ids = hub
    root: Path = ids["root"]
    version = _push(srv, _lm(root / "lmrag", ids["model"], "rag:\n  index: kb\n  top_k: 1\n"), "acme/lmrag")
    client = replicate.Client(api_token="x", base_url=srv.url)
    pred = client.models.predictions.create("acme/lmrag", input={"prompt": QUESTION, "max_new_tokens": 1})
    pred.wait()
    body = srv.client.get(f"/v1/predictions/{pred.id}").json()
    assert pred.status == "succeeded" and body["version"] == version
    assert [s["document"] for s in body["sources"]] == ["docs/garden.md"]
    # Refused at push time, with the reason: an index the server lacks, and rag on a predictor of its own.
    with pytest.raises(HubClientError) as err:
        _push(srv, _lm(root / "lost", ids["model"], "rag: missing\n"), "acme/lost")
    assert err.value.status == 422 and "the project's rag: no index named 'missing'" in err.value.message
    with pytest.raises(HubClientError) as err:
        _push(srv, _write(root / "echorag", ECHO, 'predict: "predict.py:Predictor"\nrag: kb\n'), "acme/echorag")
    assert err.value.status == 422 and "rag: applies to language models" in err.value.message
    with pytest.raises(HubClientError) as err:
        _push(srv, _lm(root / "badrag", ids["model"], "rag:\n  index: kb\n  top_k: 0\n"), "acme/badrag")
    assert err.value.status == 422 and "cocina.yaml:4: rag.top_k: top_k must be an integer" in err.value.message


@pytest.fixture
def cocina(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "COCINA_HOME": str(tmp_path / "home")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cocina.cli", *args], capture_output=True, text=True, timeout=120, env=env
        )

    return run


def test_index_push_pins_versions_that_deployments_name(
    hub: tuple[LiveServer, dict[str, Any]], cocina: Any, tmp_path: Path
) -> None:
    srv, ids = hub
    docs = tmp_path / "manuals"
    shutil.copytree(ids["docs"], docs)
    assert cocina("index", "create", "manuals", str(docs)).returncode == 0
    pushed = cocina("index", "push", "manuals", srv.url, "--json")
    assert pushed.returncode == 0, pushed.stderr
    first = json.loads(pushed.stdout)
    assert first["created"] is True and first["uploaded_bytes"] > 0 and first["num_documents"] == 3
    v1 = first["version"]
    again = json.loads(cocina("index", "push", f"manuals@{v1[:10]}", srv.url, "--json").stdout)
    assert again["created"] is False and again["uploaded_bytes"] == 0  # the server has every file already
    # A new version here, pushed but not made current there: `manuals` still means v1 on the server.
    (docs / "boiler.md").write_text("# Boiler\n\nThe boiler pressure must stay between one and two bar.\n")
    assert cocina("index", "update", "manuals").returncode == 0
    second = cocina("index", "push", "manuals", "--url", srv.url, "--no-current")
    assert second.returncode == 0 and "new there" in second.stdout and "Name it as manuals@" in second.stdout
    shown = srv.client.get("/v1/indexes/manuals").json()
    v2 = next(v["version"] for v in shown["versions"] if v["version"] != v1)
    assert shown["version"] == v1 and {v["pushed"] for v in shown["versions"]} == {True}
    assert srv.client.get(f"/v1/indexes/manuals@{v2[:12]}").json()["num_documents"] == 4
    # A deployment pinned to v2 answers from it, while the index's current version stays v1.
    made = srv.client.post(
        "/v1/deployments",
        json={
            "name": "pinned",
            "model": "acme/lm",
            "version": ids["lm"],
            "rag": {"index": f"manuals@{v2[:12]}", "top_k": 1},
        },
    )
    assert made.status_code == 201, made.text
    body = _run(srv, "acme/pinned", "What pressure should the boiler have?")
    assert body["retrieval"]["version"] == v2 and body["retrieval"]["index"] == f"manuals@{v2[:12]}"
    assert [(s["document"], s["version"]) for s in body["sources"]] == [("manuals/boiler.md", v2)]
    # The CLI's own faults: one line, exit 1.
    missing = cocina("index", "push", "nope", srv.url)
    assert missing.returncode == 1 and "no index named 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    nowhere = cocina("index", "push", "manuals")
    assert nowhere.returncode == 1 and "give the server" in nowhere.stderr


def test_a_pushed_index_is_checked_before_it_is_kept(hub: tuple[LiveServer, dict[str, Any]], tmp_path: Path) -> None:
    srv, ids = hub
    store = IndexStore(tmp_path / "indexes")
    store.create("other", [ids["docs"]], load_embedder())
    built = store.open("other")
    client = RemoteHub(srv.url)
    try:
        # Files that are not what they claim: another version id, an embedding model the server cannot load.
        with pytest.raises(HubClientError) as err:
            client.push_index(built.directory, "other", "ab" * 32, PushProgress())
        assert err.value.status == 422 and "not abababababab" in err.value.message
        tampered = tmp_path / "tampered"
        shutil.copytree(built.directory, tampered)
        manifest = json.loads((tampered / "manifest.json").read_text())
        manifest["embedder"]["name"] = "/nowhere/model"
        (tampered / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(HubClientError) as err:
            client.push_index(tampered, "other", built.version, PushProgress())
        assert err.value.status == 422 and "cannot load" in err.value.message
        assert srv.client.get("/v1/indexes/other").status_code == 404  # nothing of either was kept
    finally:
        client.close()
    files = [{"path": "index.faiss", "size": 1, "sha256": "c" * 64}]
    r = srv.client.post("/v1/indexes", json={"name": "other", "version": built.version, "files": files})
    assert r.status_code == 409 and "were not uploaded" in r.json()["detail"]
    r = srv.client.post("/v1/indexes", json={"name": "../x", "version": built.version, "files": files})
    assert r.status_code == 400 and "invalid index name" in r.json()["detail"]
    r = srv.client.post("/v1/indexes", json={"name": "x", "version": "short", "files": files})
    assert r.status_code == 422


def test_deployments_cli_sets_and_drops_rag(hub: tuple[LiveServer, dict[str, Any]], cocina: Any) -> None:
    srv, ids = hub
    made = cocina(
        "deployments", "create", "acme/clirag", "--model", "acme/lm", "--versions", ids["lm"][:12],
        "--rag", "kb:top_k=1,min_score=0.1", "--url", srv.url,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "rag: kb (top_k 1, min_score 0.1)" in made.stdout
    assert _run(srv, "acme/clirag")["retrieval"]["min_score"] == 0.1
    dropped = cocina("deployments", "update", "acme/clirag", "--no-rag", "--url", srv.url, "--json")
    assert dropped.returncode == 0 and "rag" not in json.loads(dropped.stdout)["current_release"]["configuration"]
    for args, message in (
        (["--rag", "kb:top_k=x"], "--rag.top_k must be an integer from 1 to 20"),
        (["--rag", "kb:top_k"], "options are key=value"),
        (["--rag", "kb", "--no-rag"], "give --rag or --no-rag, not both"),
        (["--rag", "nope"], "no index named 'nope'"),
    ):
        bad = cocina("deployments", "update", "acme/clirag", *args, "--url", srv.url)
        assert bad.returncode == 1 and message in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)


def test_cocina_push_takes_the_index_its_project_names(
    hub: tuple[LiveServer, dict[str, Any]], cocina: Any, tmp_path: Path
) -> None:
    """A project whose cocina.yaml names NAME@VERSION is pushed with that index when the server lacks it, so every
    replica behind the server answers from the same one."""
    srv, ids = hub
    assert cocina("index", "create", "recipes", str(ids["docs"])).returncode == 0
    version = json.loads(cocina("index", "show", "recipes", "--json").stdout)["version"]
    project = _lm(tmp_path / "withindex", ids["model"], f"rag:\n  index: recipes@{version[:12]}\n  top_k: 1\n")
    pushed = cocina("push", f"{srv.url}/acme/withindex", "--dir", str(project))
    assert pushed.returncode == 0, pushed.stderr
    assert f"pushing index recipes@{version[:12]}" in pushed.stderr
    assert srv.client.get("/v1/indexes/recipes").json()["version"] == version  # its first version: current
    client = replicate.Client(api_token="x", base_url=srv.url)
    pred = client.models.predictions.create("acme/withindex", input={"prompt": QUESTION, "max_new_tokens": 1})
    pred.wait()
    body = srv.client.get(f"/v1/predictions/{pred.id}").json()
    assert [(s["document"], s["version"]) for s in body["sources"]] == [("docs/garden.md", version)]
    again = cocina("push", f"{srv.url}/acme/withindex", "--dir", str(project))
    assert again.returncode == 0 and "pushing index" not in again.stderr  # the server has it now
    ghost = _lm(tmp_path / "ghost", ids["model"], "rag: ghost\n")
    refused = cocina("push", f"{srv.url}/acme/ghost", "--dir", str(ghost))
    assert refused.returncode == 1 and "names ghost, which neither the server nor this machine has" in refused.stderr
