"""Retrieval on the pages, in a real headless Chromium (Debian's, through Playwright) against a live server on
127.0.0.1: documents indexed with the default embedding model, a question asked from the playground with an index
picked, and the answer's sources (document, section, chunk, score, the passage as text) on the page, on the
reopened prediction and on its shared link; a model with its own `rag` says so; a document's markup stays text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cocina.rag import IndexStore, load_embedder
from cocina.rag.prompt import RagConfig
from tests.server.conftest import LiveServer, echo_spec, llm_spec, start_server
from tests.web.conftest import CSRF, wait_model_ready

pytestmark = pytest.mark.timeout(300)

TRAP = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
DOCS = {
    "garden.md": "# Garden\n\n## Tomatoes\n\nTomatoes need six hours of sun a day.\n",
    "limpieza.md": "# Limpieza\n\nLa lejía blanquea la ropa blanca.\n",
    "trap.txt": f"Sun facts {TRAP}\n",
}


@pytest.fixture(scope="module")
def rag_web(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[LiveServer]:
    """A server without keys whose data directory holds the index `kb` of `DOCS`: the tiny language model
    `acme/tiny` (the playground picks the index), `acme/grounded` (its own `rag`) and the echo predictor."""
    data = tmp_path_factory.mktemp("ragweb") / "data"
    docs = data.parent / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    IndexStore(data / "indexes").create("kb", [docs], load_embedder())
    specs = [
        echo_spec(warm=True),
        llm_spec(tiny_model, "acme/tiny", warm=True, max_model_len=512),  # room for three passages
        llm_spec(tiny_model, "acme/grounded", max_model_len=512).replace(rag=RagConfig("kb", top_k=1)),
    ]
    srv = start_server(data, specs)
    try:
        wait_model_ready(srv, "acme/tiny")
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def page(browser: Any, rag_web: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(base_url=rag_web.url, viewport={"width": 1200, "height": 900})
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load" not in m.text else None)
    try:
        yield p
    finally:
        context.close()
    assert errors == [], errors


def test_ask_from_the_page_and_see_the_sources(page: Any, browser: Any, rag_web: LiveServer) -> None:
    from playwright.sync_api import expect

    page.goto("/acme/tiny")
    expect(page.locator("#rag-box")).to_be_visible()
    expect(page.locator("#sources")).to_be_hidden()
    page.select_option("#rag-index", "kb")
    page.fill("#rag-top-k", "3")
    page.fill("#in-prompt", "How much sun do tomatoes need?")
    page.fill("#in-max_new_tokens", "4")
    page.fill("#in-seed", "1")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("() => ['succeeded', 'failed'].includes(document.querySelector('#status').textContent)")
    assert page.text_content("#status") == "succeeded", page.text_content("#run-error")
    sources = page.locator("#sources-list .source")
    expect(sources).to_have_count(3)
    first = sources.first
    expect(first.locator(".source-n")).to_have_text("[1]")
    expect(first.locator(".source-doc")).to_have_text(re.compile(r"garden\.md$"))
    expect(first.locator(".source-where")).to_contain_text("Garden > Tomatoes")
    expect(first.locator(".source-where")).to_contain_text("chunk 0")
    expect(first.locator(".source-score")).to_have_text(re.compile(r"^score 0\.\d{3}$"))
    expect(page.locator("#sources-query")).to_contain_text("Searched kb")
    expect(page.locator("#sources-query")).to_contain_text("How much sun do tomatoes need?")
    first.locator("summary").click()
    expect(first.locator(".source-text")).to_contain_text("Tomatoes need six hours of sun a day.")
    # The record holds what the page shows.
    prediction_id = page.locator("#output-card").get_attribute("data-prediction-id")
    rec = rag_web.serving.get(prediction_id)
    assert rec is not None and rec.source == "web" and rec.sources is not None and len(rec.sources) == 3
    assert rec.retrieval is not None and rec.retrieval["index"] == "kb" and rec.retrieval["top_k"] == 3
    # A document's markup is text: the trap document is among the three, shown as it is, and nothing ran.
    trap = sources.filter(has_text="trap.txt")
    expect(trap).to_have_count(1)
    trap.locator("summary").click()
    expect(trap.locator(".source-text")).to_have_text(f"Sun facts {TRAP}")
    assert page.locator("#sources img, #sources script, #sources a").count() == 0
    assert page.evaluate("window.pwned === undefined")

    # The OpenAI snippet carries the choice; the others say where retrieval comes from instead.
    page.click("#tab-api")
    page.click('#langs [data-lang="openai"]')
    expect(page.locator("#snippet")).to_contain_text('extra_body={"rag": {')
    expect(page.locator("#snippet")).to_contain_text('"index": "kb"')
    page.click('#langs [data-lang="curl"]')
    expect(page.locator("#snippet-note")).to_contain_text("not in this call")

    # Reopened (the permalink) and shared: the same sources, and on the shared link without anything else.
    page.click("#tab-playground")
    page.click("#permalink")
    expect(page).to_have_url(re.compile(rf"/acme/tiny/predictions/{prediction_id}"))
    expect(page.locator("#sources-list .source")).to_have_count(3)
    expect(page.locator("#rag-index")).to_have_value("kb")
    page.click("#share-open")
    page.click("#share-create")
    expect(page.locator("#share-url")).to_have_value(re.compile(r"/p/[A-Za-z0-9_-]{43}$"))
    link = page.input_value("#share-url")
    stranger = browser.new_context()
    other = stranger.new_page()
    other.goto(link)
    expect(other.locator("#sources-list .source")).to_have_count(3)
    expect(other.locator("#sources-list .source").first.locator(".source-doc")).to_have_text(re.compile(r"garden\.md$"))
    assert other.locator("#sources img, #sources script").count() == 0
    assert other.evaluate("window.pwned === undefined")
    stranger.close()


def test_retrieval_off_shows_no_sources_and_a_models_own_index_is_named(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto("/acme/tiny")
    page.fill("#in-prompt", "Hola")
    page.fill("#in-max_new_tokens", "2")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_have_text("succeeded")
    expect(page.locator("#sources")).to_be_hidden()
    # A model with its own rag: the page names its index and offers no choice; its answers carry sources.
    page.goto("/acme/grounded")
    expect(page.locator(".facts")).to_contain_text("answers from the index kb")
    assert page.locator("#rag-box").count() == 0
    page.fill("#in-prompt", "¿Cómo blanqueo la ropa?")
    page.fill("#in-max_new_tokens", "2")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#sources-list .source")).to_have_count(1)
    expect(page.locator("#sources-list .source-doc")).to_have_text(re.compile(r"limpieza\.md$"))
    # A Cog predictor: no retrieval offered.
    page.goto("/acme/echo")
    assert page.locator("#rag-box").count() == 0


def test_the_pages_api_checks_rag(rag_web: LiveServer) -> None:
    c = rag_web.client
    r = c.post("/-/api/predictions", json={"version": "acme/echo", "input": {"text": "x"}, "rag": "kb"}, headers=CSRF)
    assert r.status_code == 400 and "not a language model" in r.json()["detail"]
    r = c.post(
        "/-/api/predictions",
        json={
            "version": "acme/tiny",
            "input": {"prompt": "x", "max_new_tokens": 1},
            "rag": {"index": "kb", "top_k": 99},
        },
        headers=CSRF,
    )
    assert r.status_code == 400 and "top_k" in r.json()["detail"]
    r = c.post(
        "/-/api/predictions",
        json={"version": "acme/tiny", "input": {"prompt": "x", "max_new_tokens": 1}, "rag": "missing"},
        headers=CSRF,
    )
    assert r.status_code == 404 and "missing" in r.json()["detail"]
    # The Replicate API itself takes no per-request rag (cocina's `rag` is the page's and the OpenAI API's).
    r = c.post(
        "/v1/predictions",
        json={"version": "acme/tiny", "input": {"prompt": "x", "max_new_tokens": 1}, "rag": "kb"},
        headers={"Prefer": "wait"},
    )
    assert r.status_code == 201 and "sources" not in r.json()
