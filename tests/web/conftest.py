"""The web pages' tests: live servers (tests/server's `start_server`, real worker processes) and one headless
Chromium for the whole session (Debian's `chromium`, driven by Playwright through `executable_path`; never a
browser download). Without chromium or playwright the browser tests are skipped with the reason, the HTTP-level
ones still run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cocina.serving import ModelSpec
from cocina.serving.spec import project_spec
from tests.server.conftest import LiveServer, echo_spec, llm_spec, plain_spec, start_server
from tests.server.conftest import tiny_model as tiny_model  # the session's tiny language model, here too

PROJECTS = Path(__file__).parent / "fixtures" / "projects"
CSRF = {"X-Cocina-CSRF": "test"}  # without keys, the page's API asks only that the header be there
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for every browser test (each test opens its own context)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("no chromium: run scripts/install-browser.sh (Debian's chromium package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def kitchen_spec(name: str = "acme/kitchen") -> ModelSpec:
    """Every kind of input (and a README with traps in it)."""
    return project_spec(PROJECTS / "kitchen", name=name)


def media_spec(name: str = "acme/media") -> ModelSpec:
    """A file output of each kind: image, audio, video, a download, and an image past the inlined size."""
    return project_spec(PROJECTS / "media", name=name)


def web_specs(tiny_model: Path) -> list[ModelSpec]:
    """The echo predictor (warm, Cog's default), a plain one, the kitchen sink, the media maker and a tiny
    language model (warm)."""
    return [
        echo_spec(warm=True),
        plain_spec(),
        kitchen_spec(),
        media_spec(),
        llm_spec(tiny_model, "acme/tiny", warm=True),
    ]


@pytest.fixture(scope="package")
def web(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[LiveServer]:
    """A server without keys, with a hub, serving `web_specs`."""
    srv = start_server(tmp_path_factory.mktemp("web") / "data", web_specs(tiny_model), hub=True)
    try:
        wait_model_ready(srv, "acme/tiny")
        yield srv
    finally:
        srv.stop()


TOKEN = "web-test-token"


@pytest.fixture(scope="package")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that needs a key (its client sends it), with the echo predictor and a small body limit."""
    srv = start_server(
        tmp_path_factory.mktemp("keyed") / "data",
        [echo_spec(warm=True), media_spec()],
        api_token=TOKEN,
        max_body_bytes=64 * 1024,
        hub=True,
    )
    try:
        yield srv
    finally:
        srv.stop()


def wait_model_ready(srv: LiveServer, name: str, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if srv.client.get("/health").json()["models"].get(name) == "ready":
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never became ready")
