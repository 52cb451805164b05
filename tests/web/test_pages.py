"""The pages over HTTP (no browser): the index, a model's page (a version's, a prediction's), shared predictions,
errors as pages, the API paths left as they were, the security headers, the static files and the page's weight."""

from __future__ import annotations

import gzip
import json
import re
import time
from typing import Any

import httpx
import pytest

from tests.server.conftest import LiveServer
from tests.web.conftest import CSRF, HTML

pytestmark = pytest.mark.timeout(300)


def _data(page: str) -> dict[str, Any]:
    """The page's data block."""
    m = re.search(r'<script type="application/json" id="cocina-data">(.*?)</script>', page, re.S)
    assert m is not None
    return dict(json.loads(m.group(1)))


def _run(srv: LiveServer, model: str, input: dict[str, Any], *, web: bool = True) -> dict[str, Any]:
    path = "/-/api/predictions" if web else "/v1/predictions"
    r = srv.client.post(path, json={"version": model, "input": input}, headers={**CSRF, "Prefer": "wait"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    deadline = time.monotonic() + 60
    while body["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        body = srv.client.get(f"/v1/predictions/{body['id']}").json()
    return body


def test_the_index_lists_every_model_and_searches(web: LiveServer) -> None:
    r = web.client.get("/", headers=HTML)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for name in ("acme/echo", "acme/plain", "acme/kitchen", "acme/media", "acme/tiny"):
        assert f'href="/{name}"' in r.text
    assert re.search(r'data-name="acme/echo".*?data-state="warm"', r.text, re.S)  # kept loaded: the default
    assert len(re.findall(r'data-state="(warm|cold|loading)"', r.text)) >= 5
    found = web.client.get("/?q=KITCH", headers=HTML).text
    assert 'href="/acme/kitchen"' in found and 'href="/acme/echo"' not in found
    assert "No model matches" in web.client.get("/?q=zzz", headers=HTML).text
    # An API client still gets Cog's root document at `/`.
    root = web.client.get("/")
    assert root.headers["content-type"] == "application/json" and root.json()["predictions_url"] == "/predictions"


def test_a_model_page_has_its_form_tabs_readme_and_headers(web: LiveServer) -> None:
    r = web.client.get("/acme/kitchen", headers=HTML)
    assert r.status_code == 200
    page = r.text
    # The fields in x-order, each control by kind, descriptions under them.
    names = re.findall(r'<div class="field field-(\w+)" data-name="(\w+)"', page)
    assert names == [
        ("textarea", "prompt"),
        ("text", "title"),
        ("integer", "steps"),
        ("number", "scale"),
        ("boolean", "upscale"),
        ("select", "style"),
        ("select", "size"),
        ("file", "image"),
        ("password", "api_key"),
        ("json", "tags"),
    ]
    assert 'type="number" id="in-steps" name="steps" step="1" min="1" max="50" value="4"' in page
    assert 'role="switch" id="in-upscale"' in page and 'type="password" id="in-api_key"' in page
    assert '<option value="bold">bold</option>' in page and 'type="file" id="in-image"' in page
    assert "A long text: a text area" in page
    for tab in ("Playground", "API", "Versions", "Examples", "History", "README"):
        assert f">{tab}</button>" in page
    # The README, sanitized.
    assert "<h1>Kitchen sink</h1>" in page and "<table>" in page
    assert "readmeScriptRan = true</script>" not in page and "onerror" not in page
    # The page's security headers: no inline script allowed, no referrer elsewhere (a share page's URL is its secret).
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert r.headers["referrer-policy"] == "same-origin" and r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page and " on" + "click=" not in page  # every script is a file
    data = _data(page)
    assert data["model"] == "acme/kitchen" and data["version"] and data["output"]["type"] == "string"
    assert data["max_body_bytes"] == 16 * 2**20 and data["keyed"] is False


def test_version_and_prediction_pages(web: LiveServer) -> None:
    version = web.client.get("/v1/models/acme/echo").json()["latest_version"]["id"]
    page = web.client.get(f"/acme/echo/versions/{version[:10]}", headers=HTML)
    assert page.status_code == 200 and "You're looking at a specific version" in page.text
    assert _data(page.text)["version"] == version
    missing = web.client.get(f"/acme/echo/versions/{'0' * 64}", headers=HTML)
    assert missing.status_code == 404 and "not found" in missing.text and "text/html" in missing.headers["content-type"]
    done = _run(web, "acme/echo", {"text": "reopen me", "n": 2})
    opened = web.client.get(f"/acme/echo/predictions/{done['id']}", headers=HTML)
    assert opened.status_code == 200 and "reopen me" in opened.text  # its input back in the form
    data = _data(opened.text)
    assert data["opened"]["id"] == done["id"] and data["opened"]["output"] == ["reopen me0", "reopen me1"]
    assert done["urls"]["web"] == f"{web.url}/acme/echo/predictions/{done['id']}"  # Replicate's urls.web
    assert web.client.get(f"/acme/plain/predictions/{done['id']}", headers=HTML).status_code == 404  # other model
    assert web.client.get("/acme/echo/predictions/nope", headers=HTML).status_code == 404


def test_errors_are_pages_and_api_paths_keep_their_errors(web: LiveServer) -> None:
    r = web.client.get("/acme/nope", headers=HTML)
    assert r.status_code == 404 and "text/html" in r.headers["content-type"] and "acme/nope not found" in r.text
    assert "Traceback" not in r.text
    # Paths of the APIs are not model pages: their own 404 in their own shape.
    v1 = web.client.get("/v1/nope")
    assert v1.status_code == 404 and v1.headers["content-type"] == "application/problem+json"
    cog = web.client.get("/predictions/nope")
    assert cog.status_code == 404 and cog.json() == {"detail": "Not Found"}
    assert web.client.get("/p/not-a-token", headers=HTML).status_code == 404
    assert web.client.get("/-/static/nope.js").status_code == 404


def test_data_in_the_page_cannot_close_its_script_block(web: LiveServer) -> None:
    nasty = '</script><script>alert(1)</script><img src=x onerror="alert(1)">'
    done = _run(web, "acme/echo", {"text": nasty, "n": 1})
    page = web.client.get(f"/acme/echo/predictions/{done['id']}", headers=HTML).text
    assert nasty not in page and "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x" in page  # text
    block = re.search(r'id="cocina-data">(.*?)</script>', page, re.S)
    assert block is not None and "<" not in block.group(1)  # JSON with < escaped: the block cannot be closed
    assert _data(page)["opened"]["input"]["text"] == nasty


def test_static_files_are_cached_by_hash_and_gzipped(web: LiveServer) -> None:
    page = web.client.get("/acme/echo", headers=HTML).text
    url = re.search(r'src="(/-/static/app\.js\?v=[0-9a-f]+)"', page)
    assert url is not None
    r = web.client.get(url.group(1), headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"].startswith("text/javascript")
    again = web.client.get(url.group(1), headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    stale = web.client.get("/-/static/app.js?v=old", headers={"Accept-Encoding": "identity"})
    assert stale.headers["cache-control"] == "no-cache" and "content-encoding" not in stale.headers


def test_a_model_page_weighs_under_150_kb(web: LiveServer) -> None:
    """What a browser transfers for a model page without outputs: the HTML and every file it loads, gzipped
    where the browser asks for it (the browser test measures the same in Chromium)."""
    raw = httpx.get(f"{web.url}/acme/kitchen", headers={**HTML, "Accept-Encoding": "gzip"})
    total = len(raw.content)  # pages are not compressed (they may carry secrets: no BREACH oracle)
    for asset in re.findall(r'(?:src|href)="(/-/static/[^"]+)"', raw.text):
        with httpx.stream("GET", f"{web.url}{asset}", headers={"Accept-Encoding": "gzip"}) as r:
            total += sum(len(chunk) for chunk in r.iter_raw())
    assert total <= 150 * 1024, total
    assert len(gzip.compress(raw.content)) < total


def test_readme_of_the_api(web: LiveServer) -> None:
    r = web.client.get("/v1/models/acme/kitchen/readme")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
    assert r.text.startswith("# Kitchen sink")
    none = web.client.get("/v1/models/acme/echo/readme")
    assert none.status_code == 404 and none.json()["detail"] == "Model acme/echo has no README."
    assert web.client.get("/v1/models/acme/nope/readme").status_code == 404
