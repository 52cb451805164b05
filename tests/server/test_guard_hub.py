"""The guard over the hub's routes, on a real server on 127.0.0.1 with a hub and the guard: every hub route needs
a key with its scope (`push` for models, versions and blobs, `deploy` for deployments, `predict` for deployment
predictions, `deploy` and `predict` for compare); a key's `--models` patterns hide other models' hub objects
(lists, reads and writes); deployment predictions go through the same gate as model predictions (limits with
their headers, input scanners, AI disclosure, the audit log, the key recorded); releases record the key that
made them; routing stays sticky to a key across its rotation."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocina.guard import Guard, parse_guard_config
from cocina.hubctl.client import HubClientError, PushProgress, RemoteHub
from cocina.server.middleware.auth import required_scopes
from tests.server.conftest import LiveServer, start_server
from tests.server.test_auth import _routes

PREDICT = """
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="what to echo")) -> str:
        return "{tag}:" + text
"""

GUARD = {"scanners": {"input": [{"type": "banned_substrings", "action": "block", "words": ["forbidden"]}]}}

# Every hub route and the scopes a key needs for it (() for any valid key). A hub route missing here fails
# `test_every_hub_route_is_in_the_table`, so a new one cannot be left open by accident.
HUB_ROUTES: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/v1/models"): (),
    ("POST", "/v1/models"): ("push",),
    ("GET", "/v1/models/acme/echo"): (),
    ("DELETE", "/v1/models/acme/echo"): ("push",),
    ("GET", "/v1/models/acme/echo/versions"): (),
    ("POST", "/v1/models/acme/echo/versions"): ("push",),
    ("GET", "/v1/models/acme/echo/versions/x"): (),
    ("DELETE", "/v1/models/acme/echo/versions/x"): ("push",),
    ("POST", "/v1/models/acme/echo/predictions"): ("predict",),
    ("GET", "/v1/models/acme/echo/examples"): (),
    ("GET", "/v1/models/acme/echo/readme"): (),
    ("POST", "/v1/models/acme/echo/versions/x/trainings"): ("predict", "push"),
    ("GET", "/v1/indexes"): (),
    ("POST", "/v1/indexes"): ("push",),
    ("GET", "/v1/indexes/echo"): (),
    ("POST", "/v1/indexes/echo/query"): ("predict",),
    ("POST", "/v1/hub/blobs/missing"): ("push",),
    ("PUT", "/v1/hub/blobs/sha256/{digest}"): ("push",),
    ("GET", "/v1/deployments"): (),
    ("POST", "/v1/deployments"): ("deploy",),
    ("GET", "/v1/deployments/acme/echo"): (),
    ("PATCH", "/v1/deployments/acme/echo"): ("deploy",),
    ("DELETE", "/v1/deployments/acme/echo"): ("deploy",),
    ("GET", "/v1/deployments/acme/echo/releases"): (),
    ("GET", "/v1/deployments/acme/echo/stats"): (),
    ("POST", "/v1/deployments/acme/echo/rollback"): ("deploy",),
    ("POST", "/v1/deployments/acme/echo/compare"): ("deploy", "predict"),
    ("POST", "/v1/deployments/acme/echo/predictions"): ("predict",),
}
SCOPES = ("predict", "push", "deploy")


def _project(root: Path, tag: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(PREDICT.replace("{tag}", tag)))
    (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    return root


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _guard(srv: LiveServer) -> Guard:
    gate = srv.serving.gate
    assert isinstance(gate, Guard)
    return gate


def _key(srv: LiveServer, name: str, **options: Any) -> tuple[str, str]:
    rec, text = _guard(srv).keys.create(name, **options)
    _guard(srv)._keyed_at = 0.0  # the server re-reads whether keys exist at once
    return rec.id, text


def _push(srv: LiveServer, root: Path, name: str, key: str) -> str:
    client = RemoteHub(srv.url, key)
    try:
        return str(client.push(root, name, PushProgress()).version["id"])
    finally:
        client.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A server with a hub and the guard; `acme/ab` has versions A and B; keys by role."""
    root = tmp_path_factory.mktemp("guard-hub")
    srv = start_server(root / "data", hub=True, wait=None, guard=parse_guard_config(GUARD))
    try:
        keys = {
            "admin": _key(srv, "admin", scopes=["admin"])[1],
            "pusher": _key(srv, "pusher", scopes=["push"], models=["acme/*"])[1],
            "deployer": _key(srv, "deployer", scopes=["deploy"], models=["acme/*"])[1],
            "predictor": _key(srv, "predictor", scopes=["predict"], models=["acme/*"])[1],
            "other": _key(srv, "other", scopes=["predict", "push", "deploy"], models=["other/*"])[1],
        }
        keys["a"] = _push(srv, _project(root / "a", "A"), "acme/ab", keys["pusher"])
        keys["b"] = _push(srv, _project(root / "b", "B"), "acme/ab", keys["pusher"])
        yield srv, keys
    finally:
        srv.stop()


def test_every_hub_route_is_in_the_table(hub: tuple[LiveServer, dict[str, str]]) -> None:
    srv, _ = hub
    prefixes = ("/v1/models", "/v1/deployments", "/v1/hub/", "/v1/indexes")
    served = {(m, p) for m, p in _routes(srv) if p.startswith(prefixes)}
    assert served == set(HUB_ROUTES)
    for (method, path), needed in HUB_ROUTES.items():
        assert required_scopes(method, path) == needed, (method, path)
    assert required_scopes("HEAD", "/v1/hub/blobs/sha256/x") == ("push",)  # which blobs exist is a pusher's


def test_each_hub_route_refuses_a_key_without_its_scope(hub: tuple[LiveServer, dict[str, str]]) -> None:
    srv, _ = hub
    without = {s: _key(srv, f"all-but-{s}", scopes=[o for o in SCOPES if o != s])[1] for s in SCOPES}
    everything = _key(srv, "everything", scopes=list(SCOPES))[1]
    for (method, path), needed in HUB_ROUTES.items():
        for scope in SCOPES:
            r = httpx.request(method, f"{srv.url}{path}", json={}, headers=_auth(without[scope]))
            if scope in needed:
                assert r.status_code == 403, (method, path, scope, r.status_code)
                body = r.json()  # /v1/models answers in OpenAI's shape too (both clients call it)
                message = body["error"]["message"] if path == "/v1/models" else body["detail"]
                assert message == f"This API key lacks the `{scope}` scope this route needs."
            else:
                assert r.status_code not in (401, 403), (method, path, scope, r.status_code, r.text)
        r = httpx.request(method, f"{srv.url}{path}", json={}, headers=_auth(everything))
        assert r.status_code not in (401, 403), (method, path, r.status_code)
        assert httpx.request(method, f"{srv.url}{path}", json={}).status_code == 401, (method, path)
    digest = "0" * 64
    assert httpx.head(f"{srv.url}/v1/hub/blobs/sha256/{digest}", headers=_auth(without["push"])).status_code == 403
    assert httpx.head(f"{srv.url}/v1/hub/blobs/sha256/{digest}", headers=_auth(everything)).status_code == 404


def test_pushing_needs_push_and_deploying_needs_deploy(hub: tuple[LiveServer, dict[str, str]], tmp_path: Path) -> None:
    srv, keys = hub
    for role in ("predictor", "deployer"):
        with pytest.raises(HubClientError) as err:
            _push(srv, _project(tmp_path / role, role), "acme/ab", keys[role])
        assert err.value.status == 403 and "`push`" in err.value.message
    body = {"name": "scoped", "model": "acme/ab", "version": keys["a"]}
    for role in ("predictor", "pusher"):
        r = httpx.post(f"{srv.url}/v1/deployments", json=body, headers=_auth(keys[role]))
        assert r.status_code == 403 and "`deploy`" in r.json()["detail"]
    made = httpx.post(f"{srv.url}/v1/deployments", json=body, headers=_auth(keys["deployer"]))
    assert made.status_code == 201, made.text
    changed = httpx.patch(
        f"{srv.url}/v1/deployments/acme/scoped", json={"version": keys["b"]}, headers=_auth(keys["deployer"])
    )
    assert changed.status_code == 200 and changed.json()["current_release"]["number"] == 2
    back = httpx.post(f"{srv.url}/v1/deployments/acme/scoped/rollback", json={}, headers=_auth(keys["deployer"]))
    assert back.status_code == 200 and back.json()["current_release"]["number"] == 3
    # Each release records the key that made it (its stable id, not the key).
    deployer_id = _guard(srv).authenticate(keys["deployer"]).id  # type: ignore[union-attr]
    releases = srv.serving.store.list_releases("acme/scoped")
    assert [r.created_by for r in releases] == [deployer_id] * 3
    for role in ("predictor", "pusher"):
        r = httpx.delete(f"{srv.url}/v1/deployments/acme/scoped", headers=_auth(keys[role]))
        assert r.status_code == 403
    assert httpx.delete(f"{srv.url}/v1/deployments/acme/scoped", headers=_auth(keys["deployer"])).status_code == 204


def test_a_key_does_not_see_the_hub_objects_of_models_outside_its_patterns(
    hub: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    srv, keys = hub
    made = httpx.post(
        f"{srv.url}/v1/deployments",
        json={"name": "hidden", "model": "acme/ab", "version": keys["a"]},
        headers=_auth(keys["admin"]),
    )
    assert made.status_code == 201, made.text
    other = _auth(keys["other"])
    listed = httpx.get(f"{srv.url}/v1/models", headers=other).json()
    assert [m["name"] for m in listed["results"]] == []
    assert "hidden" not in [d["name"] for d in httpx.get(f"{srv.url}/v1/deployments", headers=other).json()["results"]]
    assert "hidden" in [
        d["name"] for d in httpx.get(f"{srv.url}/v1/deployments", headers=_auth(keys["predictor"])).json()["results"]
    ]
    missing = httpx.get(f"{srv.url}/v1/deployments/acme/nothing-here", headers=other)
    assert missing.status_code == 404 and missing.json()["detail"] == "Deployment acme/nothing-here not found."
    for method, path, body in [
        ("GET", "/v1/models/acme/ab", None),
        ("GET", "/v1/models/acme/ab/versions", None),
        ("GET", f"/v1/models/acme/ab/versions/{keys['a']}", None),
        ("DELETE", f"/v1/models/acme/ab/versions/{keys['a']}", None),
        ("DELETE", "/v1/models/acme/ab", None),
        ("POST", "/v1/models", {"owner": "acme", "name": "new"}),
        ("POST", "/v1/models/acme/ab/versions", {"manifest": []}),
        ("POST", "/v1/models/acme/ab/predictions", {"input": {"text": "x"}}),
        ("POST", "/v1/deployments", {"name": "mine", "model": "acme/ab", "version": keys["a"]}),
        ("GET", "/v1/deployments/acme/hidden", None),
        ("GET", "/v1/deployments/acme/hidden/releases", None),
        ("GET", "/v1/deployments/acme/hidden/stats", None),
        ("PATCH", "/v1/deployments/acme/hidden", {"version": keys["b"]}),
        ("POST", "/v1/deployments/acme/hidden/rollback", {}),
        ("POST", "/v1/deployments/acme/hidden/compare", {"examples": [{"text": "x"}]}),
        ("POST", "/v1/deployments/acme/hidden/predictions", {"input": {"text": "x"}}),
        ("DELETE", "/v1/deployments/acme/hidden", None),
    ]:
        r = httpx.request(method, f"{srv.url}{path}", json=body, headers=other)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        if path.startswith("/v1/deployments/acme/hidden"):
            assert r.json() == {**missing.json(), "detail": "Deployment acme/hidden not found."}  # as if absent
    # Nothing was changed by the refused writes.
    assert [v.id for v in srv.serving.store.list_versions("acme/ab", pushed_only=True)] == [keys["b"], keys["a"]]
    assert len(srv.serving.store.list_releases("acme/hidden")) == 1
    assert srv.serving.store.get_deployment("acme/mine") is None and srv.serving.store.get_model("acme/new") is None
    assert httpx.delete(f"{srv.url}/v1/deployments/acme/hidden", headers=_auth(keys["admin"])).status_code == 204


def test_deployment_predictions_go_through_the_gate(hub: tuple[LiveServer, dict[str, str]]) -> None:
    srv, keys = hub
    made = httpx.post(
        f"{srv.url}/v1/deployments",
        json={"name": "gated", "model": "acme/ab", "version": keys["a"]},
        headers=_auth(keys["admin"]),
    )
    assert made.status_code == 201, made.text
    key_id, key = _key(srv, "limited", scopes=["predict"], models=["acme/*"], rpm=2)
    url = f"{srv.url}/v1/deployments/acme/gated/predictions"
    ok = httpx.post(url, json={"input": {"text": "hola"}}, headers={**_auth(key), "Prefer": "wait"})
    assert ok.status_code == 201, ok.text
    pred = ok.json()
    assert pred["status"] == "succeeded" and pred["output"] == "A:hola"
    assert ok.headers["x-ratelimit-limit-requests"] == "2" and ok.headers["x-ratelimit-remaining-requests"] == "1"
    assert ok.headers["ai-disclosure"] == 'mode=machine-generated, model="acme/ab", provider="cocina"'
    rec = srv.serving.get(pred["id"])
    assert rec is not None and rec.principal == key_id and rec.deployment == "acme/gated" and rec.release == 1
    assert rec.guard["ai_disclosure"]["model"] == "acme/ab"
    # The audit log has it, and the key that made it can prove it.
    deadline = time.monotonic() + 10
    while (proof := httpx.get(f"{srv.url}/v1/audit/proof/{pred['id']}", headers=_auth(key))).status_code != 200:
        assert time.monotonic() < deadline, proof.text  # the first checkpoint is signed within a second
        time.sleep(0.1)
    entry = proof.json()["entry"]
    assert entry["prediction"] == pred["id"] and entry["key"] == key_id and entry["model"] == "acme/ab"
    # Input scanners: blocked, recorded as failed, counted against the key.
    blocked = httpx.post(url, json={"input": {"text": "this is forbidden"}}, headers=_auth(key))
    assert blocked.status_code == 400 and blocked.json()["scanner"] == "banned_substrings"
    failed = srv.serving.get(blocked.headers["x-cocina-prediction-id"])
    assert failed is not None and failed.status.value == "failed" and failed.deployment == "acme/gated"
    assert [v["flagged"] for v in failed.guard["input_verdicts"] if v["scanner"] == "banned_substrings"] == [True]
    # Requests per minute: the third request of this minute is refused.
    limited = httpx.post(url, json={"input": {"text": "again"}}, headers=_auth(key))
    assert limited.status_code == 429 and limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert "retry-after" in limited.headers
    # A deployment's predictions are the key's own: another key does not see them.
    _, stranger = _key(srv, "stranger", scopes=["predict"])
    assert httpx.get(f"{srv.url}/v1/predictions/{pred['id']}", headers=_auth(stranger)).status_code == 404
    assert httpx.delete(f"{srv.url}/v1/deployments/acme/gated", headers=_auth(keys["admin"])).status_code == 204


def test_compare_runs_as_the_keys_predictions(hub: tuple[LiveServer, dict[str, str]]) -> None:
    srv, keys = hub
    made = httpx.post(
        f"{srv.url}/v1/deployments",
        json={
            "name": "versus",
            "model": "acme/ab",
            "versions": [{"version": keys["a"], "weight": 50}, {"version": keys["b"], "weight": 50}],
        },
        headers=_auth(keys["admin"]),
    )
    assert made.status_code == 201, made.text
    key_id, key = _key(srv, "comparer", scopes=["deploy", "predict"], models=["acme/*"])
    examples = {"examples": [{"text": "uno"}, {"text": "forbidden dos"}], "timeout": 60}
    r = httpx.post(f"{srv.url}/v1/deployments/acme/versus/compare", json=examples, headers=_auth(key), timeout=120)
    assert r.status_code == 200, r.text
    rows = [p for p in srv.serving.store.page(None, 100, principal=key_id) if p.source == "compare"]
    assert len(rows) == 4 and {p.version for p in rows} == {keys["a"], keys["b"]}  # two examples, two versions
    assert sorted(p.status.value for p in rows) == ["failed", "failed", "succeeded", "succeeded"]  # one blocked
    assert all(p.guard.get("input_verdicts") for p in rows)
    assert httpx.delete(f"{srv.url}/v1/deployments/acme/versus", headers=_auth(keys["admin"])).status_code == 204


def test_routing_stays_with_a_key_across_its_rotation(hub: tuple[LiveServer, dict[str, str]]) -> None:
    srv, keys = hub
    made = httpx.post(
        f"{srv.url}/v1/deployments",
        json={
            "name": "sticky",
            "model": "acme/ab",
            "versions": [{"version": keys["a"], "weight": 50}, {"version": keys["b"], "weight": 50}],
        },
        headers=_auth(keys["admin"]),
    )
    assert made.status_code == 201, made.text

    def tag(key: str) -> str:
        r = httpx.post(
            f"{srv.url}/v1/deployments/acme/sticky/predictions",
            json={"input": {"text": "x"}},
            headers={**_auth(key), "Prefer": "wait"},
        )
        assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text
        return str(r.json()["output"]).split(":")[0]

    before, after = [], []
    for i in range(12):
        key_id, key = _key(srv, f"user-{i}", scopes=["predict"])
        before.append(tag(key))
        _, rotated = _guard(srv).keys.rotate(key_id)
        after.append(tag(rotated))
    assert set(before) == {"A", "B"}  # both versions get users
    assert after == before  # each key's id, not its secret, keeps it on its version
    assert httpx.delete(f"{srv.url}/v1/deployments/acme/sticky", headers=_auth(keys["admin"])).status_code == 204
