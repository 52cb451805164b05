"""The pages in a real headless Chromium (Debian's, through Playwright): a prediction run from the form with the
keyboard only, tokens that stream, a cancel, Form/JSON, the API's messages under the fields, a copied snippet that
really runs, a share opened without a key and revoked, outputs by type, untrusted text that stays text, a file past
the body limit, examples, history, load and unload, the theme, and the page's weight and time to interactive."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.server.conftest import LiveServer
from tests.web.conftest import TOKEN

pytestmark = pytest.mark.timeout(300)

expect: Any = None


@pytest.fixture(autouse=True)
def _expect(browser: Any) -> None:
    global expect
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=30_000)
    expect = playwright_expect


@pytest.fixture
def page(browser: Any, web: LiveServer) -> Iterator[Any]:
    """A page in a fresh context on the server without keys; a script error on it fails the test."""
    context = browser.new_context(base_url=web.url, viewport={"width": 1200, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    # (A request the server refuses, as a validation's 422, is logged by the browser: not a script error.)
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load" not in m.text else None)
    try:
        yield p
    finally:
        context.close()
    assert errors == [], errors


def _tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab until `selector` has the focus (the keyboard's way there)."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def _wait_for_output(page: Any) -> None:
    """Until the output area has text (polled in the page every 50 ms: the moment matters)."""
    page.wait_for_function("() => document.querySelector('#output').textContent.length > 0", polling=50)


def _sign_in(page: Any, key: str = TOKEN) -> None:
    page.fill("#key", key)
    page.press("#key", "Enter")


def test_run_a_prediction_from_the_form_with_the_keyboard_only(page: Any) -> None:
    page.goto("/acme/echo")
    page.keyboard.press("Tab")
    _tab_to(page, "#in-text")
    page.keyboard.type("teclado")
    _tab_to(page, "#in-n")
    page.keyboard.press("Control+A")
    page.keyboard.type("5")
    _tab_to(page, "#in-delay")
    page.keyboard.press("Control+A")
    page.keyboard.type("0.2")
    _tab_to(page, "#run")
    page.keyboard.press("Enter")
    _wait_for_output(page)
    # The first item is on the page while the prediction still runs: it streamed. (Read in one evaluate: the
    # moment matters, and Playwright's own selector waits can lag by a second.)
    first, status = page.evaluate(
        "() => [document.querySelector('#output .item').textContent, document.querySelector('#status').textContent]"
    )
    assert first == "teclado0" and status in ("starting", "processing")
    expect(page.locator("#status")).to_have_text("succeeded")
    expect(page.locator("#output .item")).to_have_count(5)
    card = page.locator("#output-card")
    assert int(card.get_attribute("data-first-output-ms")) < int(card.get_attribute("data-done-ms"))
    expect(page.locator("#ai-note")).to_be_visible()
    expect(page.locator("#metrics")).to_contain_text("predict time")


def test_tokens_of_a_language_model_appear_as_they_arrive(page: Any) -> None:
    page.goto("/acme/tiny")
    page.fill("#in-prompt", "Hola")
    page.fill("#in-max_new_tokens", "48")
    page.fill("#in-seed", "1")
    # Every change of the output, with the status at that moment.
    page.evaluate(
        """() => {
          window.seen = [];
          new MutationObserver(() => window.seen.push({
            chars: document.querySelector('#output').textContent.length,
            status: document.querySelector('#status').textContent,
          })).observe(document.querySelector('#output'), {childList: true, subtree: true, characterData: true});
        }"""
    )
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_have_text("succeeded")
    seen = page.evaluate("window.seen")
    running = [s for s in seen if s["chars"] > 0 and s["status"] in ("starting", "processing")]
    assert len({s["chars"] for s in running}) >= 2, seen  # text grew while the prediction still ran
    card = page.locator("#output-card")
    first, done = int(card.get_attribute("data-first-output-ms")), int(card.get_attribute("data-done-ms"))
    assert first < done
    print(f"\nweb: first token visible at {first} ms, prediction done at {done} ms (48 tokens, tiny GPT-2)")
    expect(page.locator("#metrics")).to_contain_text("tokens/s")
    expect(page.locator("#ai-note")).to_contain_text("AI model")


def test_cancel_a_running_prediction(page: Any) -> None:
    page.goto("/acme/echo")
    page.fill("#in-text", "cancel me")
    page.fill("#in-n", "200")
    page.fill("#in-delay", "0.1")
    page.click("#run")
    _wait_for_output(page)
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("canceled")
    assert page.locator("#output .item").count() < 200
    expect(page.locator("#cancel")).to_be_hidden()


def test_switch_between_form_and_json(page: Any) -> None:
    page.goto("/acme/kitchen")
    page.fill("#in-prompt", "una sopa")
    page.fill("#in-steps", "9")
    page.check("#in-upscale")
    page.select_option("#in-style", "bold")
    page.select_option("#in-size", "1024")
    page.fill("#in-tags", '["a", "b"]')
    page.check('input[name="input-mode"][value="json"]')
    expect(page.locator("#json-input")).to_be_visible()
    assert json.loads(page.input_value("#json-input")) == {
        "prompt": "una sopa",
        "title": "untitled",
        "steps": 9,
        "scale": 7.5,
        "upscale": True,
        "style": "bold",
        "size": 1024,
        "tags": ["a", "b"],
    }
    page.fill("#json-input", '{"prompt": "un guiso", "steps": 12, "style": "italic", "upscale": false}')
    page.check('input[name="input-mode"][value="form"]')
    expect(page.locator("#in-steps")).to_have_value("12")
    assert page.input_value("#in-prompt") == "un guiso" and page.input_value("#in-style") == "italic"
    assert not page.is_checked("#in-upscale") and page.input_value("#in-size") == ""
    page.check('input[name="input-mode"][value="json"]')
    page.fill("#json-input", "{not json")
    page.click('input[name="input-mode"][value="form"]')  # refused: the page keeps JSON
    expect(page.locator("#err-json")).to_contain_text("must be a JSON object")
    assert page.is_checked('input[name="input-mode"][value="json"]')  # stays in JSON until it parses
    page.fill("#json-input", '{"prompt": "desde JSON", "size": 256}')
    page.click("#run")
    expect(page.locator("#status")).to_have_text("succeeded")
    got = json.loads(page.inner_text("#output"))
    assert got["prompt"] == "desde JSON" and got["size"] == 256 and got["steps"] == 4
    page.check('input[name="input-mode"][value="form"]')
    page.fill("#in-api_key", "sk-not-for-snippets")
    page.click("#tab-api")
    expect(page.locator("#snippet")).to_contain_text('"api_key": "<your api_key>"')
    assert "sk-not-for-snippets" not in page.inner_text("#snippet")  # a Secret is never copied into code


def test_the_apis_messages_appear_under_the_fields(page: Any) -> None:
    page.goto("/acme/echo")
    page.fill("#in-n", "-1")
    expect(page.locator("#err-n")).to_have_text("n: must be >= 0, got -1")
    assert page.get_attribute("#in-n", "aria-invalid") == "true"
    page.fill("#in-n", "3")
    expect(page.locator("#err-n")).to_have_text("")
    page.click("#run")  # the text is required
    expect(page.locator("#err-text")).to_have_text("text: required input is missing")
    expect(page.locator("#status")).to_have_text("idle")


def _clipboard_snippet(page: Any, lang: str) -> str:
    page.click("#tab-api")
    page.click(f'#langs [data-lang="{lang}"]')
    page.click("#copy-snippet")
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    text: str = page.evaluate("navigator.clipboard.readText()")
    assert text == page.inner_text("#snippet")
    return text


def _env(token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COCINA_API_TOKEN"}
    if token is not None:
        env["COCINA_API_TOKEN"] = token
    return env


def test_copy_a_snippet_and_run_it(page: Any, web: LiveServer) -> None:
    page.goto("/acme/echo")
    page.fill("#in-text", "from a 'snippet' \"quoted\"")
    page.fill("#in-n", "2")
    curl = _clipboard_snippet(page, "curl")
    assert "$COCINA_API_TOKEN" in curl and web.url in curl
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60, env=_env("unused"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["output"] == ["from a 'snippet' \"quoted\"0", "from a 'snippet' \"quoted\"1"]
    python = _clipboard_snippet(page, "python")
    assert 'os.environ.get("COCINA_API_TOKEN"' in python
    out = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=60, env=_env(None))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["from a 'snippet' \"quoted\"0", "from a 'snippet' \"quoted\"1"]
    js = _clipboard_snippet(page, "js")
    assert "process.env.COCINA_API_TOKEN" in js
    node = shutil.which("node")
    if node is not None:
        out = subprocess.run([node, "--input-type=module", "-e", js], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "from a" in out.stdout, out.stderr
    # A language model also gets the openai client's snippet.
    page.goto("/acme/tiny")
    page.fill("#in-prompt", "Hola")
    page.fill("#in-max_new_tokens", "8")
    page.fill("#in-seed", "3")
    openai_snippet = _clipboard_snippet(page, "openai")
    assert "OpenAI(base_url=" in openai_snippet and "max_tokens=8" in openai_snippet
    out = subprocess.run(
        [sys.executable, "-c", openai_snippet], capture_output=True, text=True, timeout=60, env=_env(None)
    )
    assert out.returncode == 0 and out.stdout.strip(), out.stderr


def test_share_opens_without_a_key_and_revoking_closes_it(browser: Any, keyed: LiveServer) -> None:
    owner = browser.new_context(base_url=keyed.url)
    page = owner.new_page()
    page.goto("/acme/echo")
    expect(page.locator("h1")).to_have_text("Sign in")
    _sign_in(page)
    expect(page).to_have_url(re.compile(r"/acme/echo$"))
    page.fill("#in-text", "compartido")
    page.fill("#in-n", "2")
    page.click("#run")
    expect(page.locator("#status")).to_have_text("succeeded")
    page.click("#share-open")
    page.select_option("#share-expiry", "86400")
    page.click("#share-create")
    expect(page.locator("#share-url")).to_have_value(re.compile(r"/p/[A-Za-z0-9_-]{43}$"))
    link = page.input_value("#share-url")
    expect(page.locator("#share-list li")).to_have_count(1)
    expect(page.locator("#share-list li")).to_contain_text("expires")

    stranger = browser.new_context()  # a fresh browser: no cookie, no key
    other = stranger.new_page()
    other.goto(link)
    expect(other.locator("#output")).to_contain_text("compartido0")
    expect(other.locator("#ai-note")).to_be_visible()
    expect(other.locator(".inputs")).to_contain_text("compartido")
    assert other.locator("text=Sign out").count() == 0
    other.click("#tweak")  # the model's page needs the key: sign in, then the inputs are in the form
    expect(other.locator("h1")).to_have_text("Sign in")
    _sign_in(other)
    expect(other.locator("#in-text")).to_have_value("compartido")
    expect(other.locator("#in-n")).to_have_value("2")

    page.click("#share-list button:has-text('Revoke')")
    expect(page.locator("#share-list li")).to_contain_text("revoked")
    third = browser.new_context().new_page()
    response = third.goto(link)
    assert response is not None and response.status == 404
    expect(third.locator("h1")).to_have_text("Not found")
    third.context.close()
    stranger.close()
    owner.close()


XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=1"> javascript:window.pwned=1'


def test_untrusted_inputs_and_outputs_stay_text(page: Any, web: LiveServer) -> None:
    page.goto("/acme/echo")
    page.fill("#in-text", XSS)
    page.fill("#in-n", "1")
    page.click("#run")
    expect(page.locator("#status")).to_have_text("succeeded")
    expect(page.locator("#output")).to_contain_text("<script>window.pwned=1</script>")
    assert page.locator("#output img, #output a, #output script").count() == 0
    plain = page.goto("/acme/plain")
    assert plain is not None
    page.fill("#in-text", "javascript:window.pwned=1")
    page.click("#run")
    expect(page.locator("#status")).to_have_text("succeeded")
    assert page.locator("#output a").count() == 0  # a javascript: string is no link
    page.click("#share-open")
    page.click("#share-create")
    expect(page.locator("#share-url")).to_have_value(re.compile(r"/p/"))
    link = page.input_value("#share-url")
    page.click("#tab-history")
    expect(page.locator("#history tr").first).to_contain_text("javascript:window.pwned=1")
    page.goto("/acme/echo")
    page.click("#tab-history")
    expect(page.locator("#history tr").first).to_contain_text("<img src=x")
    page.locator("#history tr a", has_text="Open").first.click()
    expect(page.locator("#in-text")).to_have_value(XSS)
    page.goto(link)
    expect(page.locator(".inputs")).to_contain_text("javascript:window.pwned=1")
    page.goto("/acme/kitchen#readme")
    expect(page.locator(".readme h1")).to_have_text("Kitchen sink")
    assert page.locator(".readme script, .readme [onerror]").count() == 0
    assert page.evaluate("window.pwned === undefined && window.readmeScriptRan === undefined")


def test_a_file_past_the_body_limit_gets_a_clear_message(browser: Any, keyed: LiveServer) -> None:
    context = browser.new_context(base_url=keyed.url)
    page = context.new_page()
    page.goto("/acme/echo")
    _sign_in(page)
    page.fill("#in-text", "x")
    page.select_option("#in-mode", "file")
    page.set_input_files(
        "#in-file", {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"0" * 100_000}
    )
    page.click("#run")
    expect(page.locator("#run-error")).to_contain_text("big.bin is 98 KiB, larger than this server takes")
    expect(page.locator("#status")).to_have_text("idle")
    page.set_input_files(
        "#in-file", {"name": "small.bin", "mimeType": "application/octet-stream", "buffer": b"1" * 1024}
    )
    page.click("#run")
    expect(page.locator("#status")).to_have_text("succeeded")
    expect(page.locator("#output")).to_have_text("1024")  # uploaded, and read by the predictor
    context.close()


@pytest.mark.parametrize(
    ("kind", "selector"),
    [
        ("image", '#output img[src^="data:image/png"]'),
        ("audio", '#output audio[src^="data:audio/"]'),
        ("video", '#output video[src^="data:video/mp4"]'),
        ("file", '#output a[download][href^="data:application/octet-stream"]'),
        ("big_image", '#output img[src^="/v1/files/"]'),
    ],
)
def test_outputs_render_by_type(page: Any, kind: str, selector: str) -> None:
    page.goto("/acme/media")
    page.select_option("#in-kind", kind)
    page.click("#run")
    expect(page.locator("#status")).to_have_text("succeeded")
    expect(page.locator(selector)).to_have_count(1)
    if kind in ("image", "big_image"):  # loaded, within the page's CSP
        page.wait_for_function("() => document.querySelector('#output img').naturalWidth > 0")


def test_examples_history_and_reopening(page: Any) -> None:
    page.goto("/acme/plain")
    page.fill("#in-text", "para el ejemplo")
    page.click("#run")
    expect(page.locator("#status")).to_have_text("succeeded")
    page.click("#example-add")
    expect(page.locator("#example-add")).to_have_text("Added to examples")
    page.fill("#in-text", "something else")
    page.click("#tab-examples")
    expect(page.locator("#examples .example").first).to_contain_text("para el ejemplo")
    page.locator("#examples .example").first.locator("button", has_text="Use").click()
    expect(page.locator("#tab-playground")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#in-text")).to_have_value("para el ejemplo")
    page.click("#tab-history")
    page.select_option("#h-source", "web")
    expect(page.locator("#history tr").first).to_contain_text("para el ejemplo")
    page.select_option("#h-status", "failed")
    expect(page.locator("#history tr").first).to_contain_text("No predictions match")
    page.select_option("#h-status", "")
    page.locator("#history tr a", has_text="Open").first.click()
    expect(page).to_have_url(re.compile(r"/acme/plain/predictions/[a-z0-9]+"))
    expect(page.locator("#output")).to_have_text("para el ejemplo")
    expect(page.locator("#in-text")).to_have_value("para el ejemplo")


def test_versions_tab_and_index_load_buttons(page: Any) -> None:
    page.goto("/acme/echo#versions")
    expect(page.locator("#panel-versions")).to_be_visible()
    expect(page.locator("#panel-versions tbody tr")).to_have_count(1)
    page.keyboard.press("Tab")
    page.goto("/")
    page.fill("#q", "med")
    expect(page.locator(".model-row:visible")).to_have_count(1)
    page.fill("#q", "")
    row = page.locator('.model-row[data-name="acme/media"]')
    button = row.locator("button")
    if button.get_attribute("data-action") == "unload":
        button.click()
        expect(page.locator('.model-row[data-name="acme/media"] .state')).to_have_text("cold")
    page.locator('.model-row[data-name="acme/media"] button[data-action="load"]').click()
    expect(page.locator('.model-row[data-name="acme/media"] .state')).to_have_text("warm")


def test_light_and_dark(page: Any) -> None:
    page.emulate_media(color_scheme="light")
    page.goto("/acme/echo")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"  # kept
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == dark


def test_page_weight_and_time_to_interactive(browser: Any, web: LiveServer) -> None:
    """Each page's transfer (HTML and everything it loads, without outputs) held to the issue's 150 KB, and
    Navigation Timing's domInteractive, in a fresh context (nothing cached) on loopback, printed: after one visit
    that warms the server (its templates), the median of three. The time is a benchmark's figure
    (benchmarks/web.py, docs/benchmarks.md), not asserted here: on a shared 2-core machine a test's timing says
    more about the load than the page; a page that never becomes interactive still fails here."""
    import statistics

    from benchmarks.web import measure_page

    for path in ("/", "/acme/kitchen", "/acme/tiny"):
        measure_page(browser, web.url, path)
        runs = [measure_page(browser, web.url, path) for _ in range(3)]
        kib = max(r["transfer_bytes"] for r in runs) / 1024
        ms = statistics.median(r["interactive_ms"] for r in runs)
        print(f"\nweb: {path} transfer {kib:.1f} KiB, interactive {ms:.0f} ms (median of 3)")
        assert kib <= 150, runs
        assert all(r["interactive_ms"] > 0 for r in runs), runs  # it did become interactive
