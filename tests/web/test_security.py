"""With a key configured: pages send a browser to the sign-in form; the key then lives in an HttpOnly SameSite
cookie the auth middleware reads; anything a cookie-authenticated request changes needs the page's CSRF token;
the sign-in form itself is protected, and never redirects off the server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from cocina.server.web.security import CONTENT_SECURITY_POLICY, csrf_token
from tests.server.conftest import LiveServer
from tests.web.conftest import HTML, TOKEN

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def browser_like(keyed: LiveServer) -> Iterator[httpx.Client]:
    """A client with no key, keeping cookies, not following redirects (as a browser's first visit)."""
    client = httpx.Client(base_url=keyed.url, headers=HTML, follow_redirects=False)
    try:
        yield client
    finally:
        client.close()


def _sign_in(client: httpx.Client, key: str, target: str = "/acme/echo") -> httpx.Response:
    form = client.get(f"/-/signin?next={target}")
    assert form.status_code == 200
    token = re.search(r'name="form_token" value="([^"]+)"', form.text)
    assert token is not None
    return client.post("/-/signin", data={"form_token": token.group(1), "next": target, "key": key})


def test_pages_send_a_browser_to_sign_in_and_the_apis_answer_401(keyed: LiveServer, browser_like: httpx.Client) -> None:
    r = browser_like.get("/acme/echo?tab=x")
    assert r.status_code == 303 and r.headers["location"] == "/-/signin?next=%2Facme%2Fecho%3Ftab%3Dx"
    assert browser_like.get("/").headers["location"] == "/-/signin?next=%2F"
    api = httpx.get(f"{keyed.url}/v1/predictions")  # an API client: its 401, not a redirect
    assert api.status_code == 401 and api.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{keyed.url}/-/api/models/acme/echo/predictions").status_code == 401
    assert browser_like.get("/-/static/app.css").status_code == 200  # public: the sign-in page needs it
    assert browser_like.get("/health").status_code == 200


def test_sign_in_sets_an_httponly_samesite_cookie_and_checks_the_key(
    keyed: LiveServer, browser_like: httpx.Client
) -> None:
    form = browser_like.get("/-/signin?next=/acme/echo")
    assert 'type="password"' in form.text and form.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    login_cookie = form.headers["set-cookie"]
    assert "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie and "Path=/-/signin" in login_cookie
    wrong = _sign_in(browser_like, "nope")
    assert (
        wrong.status_code == 401
        and "not valid" in wrong.text
        and "cocina_key" not in wrong.headers.get("set-cookie", "")
    )
    empty = _sign_in(browser_like, "")
    assert empty.status_code == 401 and "Enter your API key" in empty.text
    right = _sign_in(browser_like, TOKEN)
    assert right.status_code == 303 and right.headers["location"] == "/acme/echo"
    cookie = next(c for c in right.headers.get_list("set-cookie") if c.startswith("cocina_key="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    page = browser_like.get("/acme/echo")
    assert page.status_code == 200 and "Sign out" in page.text
    assert f'content="{csrf_token(TOKEN)}"' in page.text  # the page's CSRF token, derived from the key
    assert TOKEN not in page.text  # the key itself never reaches the page
    assert browser_like.get("/v1/predictions").status_code == 200  # the cookie is a key for the API too


def test_the_sign_in_form_needs_its_own_token_and_stays_on_the_server(
    keyed: LiveServer, browser_like: httpx.Client
) -> None:
    forged = browser_like.post("/-/signin", data={"key": TOKEN, "next": "/", "form_token": "guess"})
    assert forged.status_code == 403 and "expired" in forged.text and "cocina_key" not in str(forged.headers)
    cross = browser_like.post("/-/signin", data={"key": TOKEN}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        r = _sign_in(browser_like, TOKEN, target)
        assert r.status_code == 303 and r.headers["location"] == "/", target


def test_cookie_requests_that_change_things_need_the_csrf_token(keyed: LiveServer, browser_like: httpx.Client) -> None:
    assert _sign_in(browser_like, TOKEN).status_code == 303
    body = {"version": "acme/echo", "input": {"text": "x", "n": 1}}
    for path in ("/-/api/predictions", "/v1/predictions"):
        missing = browser_like.post(path, json=body)
        assert missing.status_code == 403 and "CSRF" in missing.json()["detail"], path
        wrong = browser_like.post(path, json=body, headers={"X-Cocina-CSRF": csrf_token("another key")})
        assert wrong.status_code == 403, path
        right = browser_like.post(path, json=body, headers={"X-Cocina-CSRF": csrf_token(TOKEN)})
        assert right.status_code == 201, (path, right.text)
    # A client with the key in its header is no cross-site form: it needs no CSRF token.
    assert keyed.client.post("/v1/predictions", json=body).status_code == 201
    assert keyed.client.post("/-/api/predictions", json=body).status_code == 201
    # A stale or forged cookie is no key.
    stale = httpx.Client(base_url=keyed.url, cookies={"cocina_key": "old"}, headers=HTML, follow_redirects=False)
    assert stale.get("/acme/echo").status_code == 303 and stale.get("/v1/predictions").status_code == 401
    stale.close()


def test_sign_out_needs_the_token_and_forgets_the_key(keyed: LiveServer, browser_like: httpx.Client) -> None:
    assert _sign_in(browser_like, TOKEN).status_code == 303
    forged = browser_like.post("/-/signout", data={"csrf": "guess"})
    assert forged.status_code == 403
    out = browser_like.post("/-/signout", data={"csrf": csrf_token(TOKEN)})
    assert out.status_code == 303 and out.headers["location"] == "/-/signin"
    assert 'cocina_key=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    browser_like.cookies.delete("cocina_key")
    assert browser_like.get("/acme/echo").status_code == 303


def test_without_keys_sign_in_is_not_needed(web: LiveServer) -> None:
    r = httpx.get(f"{web.url}/-/signin?next=/acme/echo", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/acme/echo"
    assert "Sign out" not in web.client.get("/acme/echo", headers=HTML).text
