"""The page's own API (`/-/api/`) over HTTP: predictions recorded as `web`, validation with the API's messages,
history filters, examples, shares (and what a share opens), schema diffs of pushed versions, loading and
unloading; every bad request a specific 4xx in Replicate's shape."""

from __future__ import annotations

import sqlite3
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cocina.hubctl.client import PushProgress, RemoteHub
from tests.server.conftest import LiveServer
from tests.web.conftest import CSRF, HTML

pytestmark = pytest.mark.timeout(300)


def _wait(srv: LiveServer, body: dict[str, Any], client: httpx.Client | None = None) -> dict[str, Any]:
    client = client or srv.client
    deadline = time.monotonic() + 60
    while body["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        body = client.get(f"/v1/predictions/{body['id']}").json()
    return body


def _run(srv: LiveServer, model: str, input: dict[str, Any], *, web: bool = True) -> dict[str, Any]:
    path = "/-/api/predictions" if web else "/v1/predictions"
    r = srv.client.post(path, json={"version": model, "input": input}, headers={**CSRF, "Prefer": "wait"})
    assert r.status_code == 201, r.text
    return _wait(srv, r.json())


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    return body


def test_web_predictions_are_recorded_as_web_and_checked_as_the_apis(web: LiveServer) -> None:
    done = _run(web, "acme/echo", {"text": "hi", "n": 2})
    assert done["source"] == "web" and done["output"] == ["hi0", "hi1"]
    assert _run(web, "acme/echo", {"text": "api", "n": 1}, web=False)["source"] == "api"
    bad = {"version": "acme/echo", "input": {"n": -1, "mode": "nope"}}
    from_page = _problem(web.client.post("/-/api/predictions", json=bad, headers=CSRF), 422)
    from_api = _problem(web.client.post("/v1/predictions", json=bad), 422)
    assert from_page["invalid_fields"] == from_api["invalid_fields"]  # the same messages, word for word
    assert {f["description"] for f in from_page["invalid_fields"]} == {
        "text: required input is missing",
        "n: must be >= 0, got -1",
        "mode: must be one of 'ok', 'fail', 'crash', 'hang', 'file', got 'nope'",
    }
    _problem(web.client.post("/-/api/predictions", json={"input": {}}, headers=CSRF), 400)
    _problem(web.client.post("/-/api/predictions", content=b"{", headers=CSRF), 422)
    _problem(web.client.post("/-/api/predictions", json={"version": "acme/nope", "input": {}}, headers=CSRF), 404)


def test_changes_need_the_header_and_a_same_origin(web: LiveServer) -> None:
    body = {"version": "acme/echo", "input": {"text": "x"}}
    no_header = _problem(web.client.post("/-/api/predictions", json=body), 403)
    assert "X-Cocina-CSRF" in no_header["detail"]
    foreign = {**CSRF, "Origin": "https://evil.example"}
    assert "Cross-site" in _problem(web.client.post("/-/api/predictions", json=body, headers=foreign), 403)["detail"]
    same = {**CSRF, "Origin": web.url}
    assert web.client.post("/-/api/predictions", json=body, headers=same).status_code == 201
    assert web.client.get("/-/api/models/acme/echo/predictions").status_code == 200  # reads need nothing


def test_validate_answers_with_the_admission_checks(web: LiveServer) -> None:
    ok = web.client.post("/-/api/models/acme/echo/validate", json={"input": {"text": "x", "n": "3"}}, headers=CSRF)
    assert ok.status_code == 200 and ok.json() == {
        "valid": True,
        "input": {"text": "x", "n": 3, "delay": 0.0, "mode": "ok"},
    }
    bad = _problem(web.client.post("/-/api/models/acme/echo/validate", json={"input": {"n": 1.5}}, headers=CSRF), 422)
    assert [f["field"] for f in bad["invalid_fields"]] == ["input.text", "input.n"]
    _problem(web.client.post("/-/api/models/acme/nope/validate", json={}, headers=CSRF), 404)
    _problem(web.client.post("/-/api/models/acme/echo/validate", json={"version": "XYZ"}, headers=CSRF), 400)
    _problem(web.client.post("/-/api/models/acme/echo/validate", json={"extra": 1}, headers=CSRF), 422)
    _problem(web.client.post("/-/api/models/acme/echo/validate", json={"version": "0" * 64}, headers=CSRF), 404)


def test_history_filters_by_version_status_and_source(web: LiveServer) -> None:
    web_ok = _run(web, "acme/plain", {"text": "w"})
    api_ok = _run(web, "acme/plain", {"text": "a"}, web=False)
    url = "/-/api/models/acme/plain/predictions"
    ids = lambda q: [p["id"] for p in web.client.get(f"{url}?{q}").json()["results"]]  # noqa: E731
    assert web_ok["id"] in ids("source=web") and api_ok["id"] not in ids("source=web")
    assert api_ok["id"] in ids("source=api") and web_ok["id"] not in ids("source=api")
    assert ids(f"version={web_ok['version']}")[:2] == [api_ok["id"], web_ok["id"]]
    assert ids("status=failed") == [] and api_ok["id"] in ids("status=succeeded")
    assert ids(f"version={'0' * 64}") == []
    assert all(p["model"] == "acme/plain" for p in web.client.get(url).json()["results"])
    _problem(web.client.get(f"{url}?status=done"), 400)
    _problem(web.client.get(f"{url}?version=Z"), 400)
    _problem(web.client.get(f"{url}?source=WEB!"), 400)
    _problem(web.client.get(f"{url}?cursor=x"), 400)
    _problem(web.client.get("/-/api/models/acme/nope/predictions"), 404)
    for i in range(21):
        _run(web, "acme/plain", {"text": f"p{i}"})
    first = web.client.get(f"{url}?source=web").json()
    assert len(first["results"]) == 20 and "source=web" in first["next"] and "cursor=" in first["next"]
    rest = web.client.get(first["next"].removeprefix(web.url)).json()
    assert rest["results"] and not {p["id"] for p in rest["results"]} & {p["id"] for p in first["results"]}


def test_examples_fill_the_form_and_show_in_the_model(web: LiveServer) -> None:
    done = _run(web, "acme/plain", {"text": "an example"})
    failed = _run(web, "acme/echo", {"text": "x", "mode": "fail"})
    url = "/-/api/models/acme/plain/examples"
    made = web.client.post(url, json={"prediction": done["id"], "default": True}, headers=CSRF)
    assert made.status_code == 201 and made.json()["id"] == done["id"]
    assert "already" in _problem(web.client.post(url, json={"prediction": done["id"]}, headers=CSRF), 409)["detail"]
    wrong = web.client.post("/-/api/models/acme/echo/examples", json={"prediction": done["id"]}, headers=CSRF)
    assert "not acme/echo" in _problem(wrong, 422)["detail"]
    not_ok = web.client.post("/-/api/models/acme/echo/examples", json={"prediction": failed["id"]}, headers=CSRF)
    assert "succeeded" in _problem(not_ok, 422)["detail"]
    _problem(web.client.post(url, json={"prediction": "nope"}, headers=CSRF), 404)
    _problem(web.client.post(url, json={}, headers=CSRF), 422)
    model = web.client.get("/v1/models/acme/plain").json()
    assert model["default_example"]["id"] == done["id"] and model["default_example"]["input"] == {"text": "an example"}
    assert web.client.get("/v1/models/acme/plain/examples").json()["results"][0]["id"] == done["id"]
    page = web.client.get("/acme/plain", headers=HTML).text
    assert ">an example</textarea>" in page  # the default example fills the form
    second = _run(web, "acme/plain", {"text": "second"})
    assert web.client.post(url, json={"prediction": second["id"]}, headers=CSRF).status_code == 201
    made_default = web.client.post(f"{url}/{second['id']}/default", headers=CSRF)
    assert made_default.status_code == 200
    assert web.client.get("/v1/models/acme/plain").json()["default_example"]["id"] == second["id"]
    _problem(web.client.post(f"{url}/nope/default", headers=CSRF), 404)
    assert web.client.delete(f"{url}/{second['id']}", headers=CSRF).status_code == 204
    _problem(web.client.delete(f"{url}/{second['id']}", headers=CSRF), 404)
    assert web.client.get("/v1/models/acme/plain").json()["default_example"] is None


def test_shares_open_one_prediction_until_revoked_or_expired(keyed: LiveServer) -> None:
    done = keyed.client.post("/v1/predictions", json={"version": "acme/echo", "input": {"text": "shared", "n": 1}})
    pred = _wait(keyed, done.json())
    made = keyed.client.post(f"/-/api/predictions/{pred['id']}/shares", json={}, headers=CSRF)
    assert made.status_code == 201
    share = made.json()
    url = share["url"]
    assert url.startswith(f"{keyed.url}/p/") and share["prediction"] == pred["id"] and share["open"]
    anonymous = httpx.Client(base_url=keyed.url, headers=HTML)  # no key at all
    page = anonymous.get(url.removeprefix(keyed.url))
    assert page.status_code == 200 and "shared0" in page.text and "Tweak it" in page.text
    assert "AI model" in page.text  # the disclosure next to the answer
    assert anonymous.get(f"/v1/predictions/{pred['id']}").status_code == 401  # the share opens only the page
    assert anonymous.get("/acme/echo").status_code == 303  # the model's page needs the key
    listed = keyed.client.get(f"/-/api/predictions/{pred['id']}/shares").json()["results"]
    assert [s["id"] for s in listed] == [share["id"]] and listed[0]["url"] is None  # the link is not kept
    revoked = keyed.client.delete(f"/-/api/shares/{share['id']}", headers=CSRF)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] and not revoked.json()["open"]
    gone = anonymous.get(url.removeprefix(keyed.url))
    assert gone.status_code == 404 and "no longer shared" in gone.text
    _problem(keyed.client.delete(f"/-/api/shares/{share['id']}", headers=CSRF), 409)
    _problem(keyed.client.delete("/-/api/shares/nope", headers=CSRF), 404)
    _problem(keyed.client.post("/-/api/predictions/nope/shares", json={}, headers=CSRF), 404)
    short = keyed.client.post(f"/-/api/predictions/{pred['id']}/shares", json={"expires_in_s": 5}, headers=CSRF)
    _problem(short, 422)
    timed = keyed.client.post(f"/-/api/predictions/{pred['id']}/shares", json={"expires_in_s": 60}, headers=CSRF)
    assert timed.status_code == 201 and timed.json()["expires_at"]
    timed_url = timed.json()["url"].removeprefix(keyed.url)
    assert anonymous.get(timed_url).status_code == 200
    with sqlite3.connect(keyed.serving.config.db_path) as db:  # as if the minute had passed
        db.execute("UPDATE shares SET expires_at = ? WHERE id = ?", ("2000-01-01T00:00:00+00:00", timed.json()["id"]))
    assert anonymous.get(timed_url).status_code == 404
    anonymous.close()


def test_a_shared_prediction_masks_its_secret_inputs(web: LiveServer) -> None:
    made = _run(web, "acme/kitchen", {"prompt": "p", "api_key": "sk-very-secret"})
    assert made["status"] == "succeeded" and '"api_key": "set"' in made["output"]
    share = web.client.post(f"/-/api/predictions/{made['id']}/shares", json={}, headers=CSRF).json()
    page = httpx.get(share["url"]).text
    assert "sk-very-secret" not in page and "**********" in page


def test_a_shared_prediction_opens_its_files_and_no_others(keyed: LiveServer) -> None:
    made = keyed.client.post("/v1/predictions", json={"version": "acme/media", "input": {"kind": "big_image"}})
    pred = _wait(keyed, made.json())
    assert pred["status"] == "succeeded", pred
    file_url = pred["output"]
    assert "/v1/files/" in file_url  # past the inlined size: a file of the server
    other = keyed.client.post("/v1/files", files={"content": ("x.txt", b"secret")}).json()
    share = keyed.client.post(f"/-/api/predictions/{pred['id']}/shares", json={}, headers=CSRF).json()
    token = share["url"].rsplit("/", 1)[1]
    anonymous = httpx.Client(base_url=keyed.url)
    file_id = file_url.split("/v1/files/")[1].split("/")[0]
    page = anonymous.get(f"/p/{token}", headers=HTML).text
    assert f"/p/{token}/files/{file_id}" in page and "/v1/files/" not in page
    got = anonymous.get(f"/p/{token}/files/{file_id}")
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG") and len(got.content) > 2**20
    assert got.headers["content-security-policy"] == "sandbox" and "attachment" in got.headers["content-disposition"]
    assert anonymous.get(f"/p/{token}/files/{other['id']}").status_code == 404  # not this prediction's
    assert anonymous.get(f"/p/{'A' * 43}/files/{file_id}").status_code == 404
    assert anonymous.get(f"/v1/files/{file_id}/download").status_code == 401
    anonymous.close()


def _pushable(root: Path, extra: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    source = f"""
        from cog import BasePredictor, Input


        class Predictor(BasePredictor):
            def predict(self, text: str = Input(description="what to echo"){extra}) -> str:
                return text
    """
    (root / "predict.py").write_text(textwrap.dedent(source))
    return root


def test_versions_and_their_schema_diff(web: LiveServer, tmp_path: Path) -> None:
    hub = RemoteHub(web.url)
    try:
        first = hub.push(_pushable(tmp_path / "v1", ""), "acme/pushed", PushProgress(say=lambda _l: None))
        second = hub.push(_pushable(tmp_path / "v2", ", n: int = Input(ge=1)"), "acme/pushed", PushProgress())
    finally:
        hub.close()
    a, b = first.version["id"], second.version["id"]
    diff = web.client.get(f"/-/api/models/acme/pushed/diff?from={a[:8]}&to={b}").json()
    assert diff["from"] == a and diff["to"] == b and diff["breaking"] is True
    assert diff["changes"] == [
        {"kind": "added", "name": "n", "detail": "required: callers must now send it", "breaking": True}
    ]
    page = web.client.get("/acme/pushed", headers=HTML).text
    assert f"/acme/pushed/versions/{a}" in page and f"/acme/pushed/versions/{b}" in page
    assert 'id="diff-form"' in page
    _problem(web.client.get(f"/-/api/models/acme/pushed/diff?from={a}"), 400)
    _problem(web.client.get(f"/-/api/models/acme/pushed/diff?from={a}&to={'f' * 64}"), 404)
    _problem(web.client.get(f"/-/api/models/acme/pushed/diff?from=&to={b}"), 400)


def test_a_model_without_versions_has_a_page_saying_so(web: LiveServer) -> None:
    made = web.client.post("/v1/models", json={"owner": "acme", "name": "empty", "description": "nothing yet"})
    assert made.status_code == 201
    page = web.client.get("/acme/empty", headers=HTML)
    assert page.status_code == 404 and "has no version yet" in page.text
    index = web.client.get("/", headers=HTML).text
    assert 'href="/acme/empty"' in index and "nothing yet" in index


def test_load_and_unload(web: LiveServer) -> None:
    kept = web.client.post("/-/api/models/acme/echo/unload", headers=CSRF)
    assert "kept loaded" in _problem(kept, 409)["detail"]
    loading = web.client.post("/-/api/models/acme/kitchen/load", headers=CSRF)
    assert loading.status_code == 200 and loading.json()["state"] in ("loading", "warm")
    deadline = time.monotonic() + 60
    while web.client.get("/health").json()["models"].get("acme/kitchen") != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert 'data-name="acme/kitchen"' in web.client.get("/", headers=HTML).text
    unloaded = web.client.post("/-/api/models/acme/kitchen/unload", headers=CSRF)
    assert unloaded.status_code == 200 and unloaded.json()["state"] == "cold"
    _problem(web.client.post("/-/api/models/acme/nope/load", headers=CSRF), 404)
    _problem(web.client.post("/-/api/models/acme/kitchen/load?version=Z", headers=CSRF), 400)
    slow = web.client.post("/v1/predictions", json={"version": "acme/plain", "input": {"text": "z", "delay": 2}})
    assert slow.status_code == 201
    deadline = time.monotonic() + 60
    while web.client.get(f"/v1/predictions/{slow.json()['id']}").json()["status"] != "processing":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (
        "running predictions"
        in _problem(web.client.post("/-/api/models/acme/plain/unload", headers=CSRF), 409)["detail"]
    )
    _wait(web, slow.json())
    assert web.client.post("/-/api/models/acme/plain/unload", headers=CSRF).json()["state"] == "cold"
