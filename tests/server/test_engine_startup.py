"""The engine loads after the server listens: `/health-check` says STARTING while the model loads, READY after,
or SETUP_FAILED with the load error in the setup logs — and the server stays up to say so.

The loads are real (`cocina.server.cli.engine_loader` on a tiny random-weight model); the test only holds one
back on an event, so that the STARTING window is as long as the assertions need.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import replicate
import replicate.exceptions

from cocina.server.adapters import EngineGenerator, EngineHandle, InProcessLLMBackend
from cocina.server.cli import engine_backends, engine_loader
from tests.server.conftest import start_server
from tests.server.test_metrics import scrape, value

pytest.importorskip("torch")

CPU_ENV = {
    "COCINA_DEVICE": "cpu",
    "COCINA_MAX_MODEL_LEN": "256",
    "COCINA_KV_CACHE_BYTES": "8M",
    "COCINA_MAX_NUM_SEQS": "8",
}
VERSION = "a" * 64


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cocina.models.tiny import make_tiny_model

    return Path(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny-gpt2", arch="gpt2"))


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets a held-back load go on; set at the end whatever happened, so no load thread is left waiting."""
    event = threading.Event()
    yield event
    event.set()


def _held_back(real: Any, release: threading.Event) -> Any:
    def load(handle: EngineHandle) -> Any:
        handle.progress("held back by the test")
        if not release.wait(60):
            raise TimeoutError("the test never released the load")
        return real(handle) if real is not None else None

    return load


def test_starting_while_the_engine_loads_then_ready(tiny_model: Path, tmp_path: Path, release: threading.Event) -> None:
    handle = EngineHandle(loader=_held_back(engine_loader(str(tiny_model), CPU_ENV, {}), release))
    # concurrency None: the engine's max_num_seqs, known only once it has loaded.
    srv = start_server(
        tmp_path / "d", InProcessLLMBackend(handle), EngineGenerator(handle, "tiny"), wait_for=None, concurrency=None
    )
    try:
        health = srv.wait_status("STARTING")
        assert health["setup"]["status"] is None and health["setup"]["started_at"]

        # Predictions are refused with 503 + Retry-After in each surface's own error shape (not queued).
        cog = srv.client.post("/predictions", json={"input": {"prompt": "hola"}})
        assert cog.status_code == 503 and cog.headers["retry-after"] == "1"
        assert cog.json() == {"detail": "The model is still setting up."}
        rep = replicate.Client(api_token="x", base_url=srv.url)
        with pytest.raises(replicate.exceptions.ReplicateError) as rerr:
            rep.predictions.create(version=VERSION, input={"prompt": "hola"})
        assert rerr.value.status == 503 and rerr.value.title == "Service unavailable"
        oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as oerr:
            oa.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hola"}], max_tokens=2)
        assert oerr.value.status_code == 503 and oerr.value.code == "service_unavailable"
        assert oerr.value.type == "server_error" and oerr.value.response.headers["retry-after"] == "1"
        assert [m.id for m in oa.models.list()] == ["tiny"]  # the name is known before the weights
        loading = scrape(srv)
        assert not any(name.startswith("vllm:") for name, _ in loading)  # no engine yet: no engine metrics
        assert srv.client.get("/openapi.json").status_code == 200

        release.set()
        ready = srv.wait_status("READY", timeout_s=60)
        logs = ready["setup"]["logs"]
        assert ready["setup"]["status"] == "succeeded"
        assert f"loading model {tiny_model} (dtype auto, device cpu)" in logs and "cocina engine: model on cpu" in logs
        assert logs.index("held back") < logs.index("loading model") < logs.index("model loaded in")

        chat = oa.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "a"}], max_tokens=3)
        assert chat.usage is not None and chat.usage.completion_tokens >= 1
        done = srv.client.post("/predictions", json={"input": {"prompt": "b", "max_new_tokens": 3}})
        assert done.status_code == 200 and done.json()["status"] == "succeeded"
        samples = scrape(srv)
        assert value(samples, "cocina_concurrency") == 8  # COCINA_MAX_NUM_SEQS, read from the loaded engine
        assert value(samples, "vllm:num_requests_running") == 0 and ("vllm:kv_cache_usage_perc", ()) in samples
    finally:
        srv.stop()


def test_a_load_failure_is_setup_failed_and_the_server_stays_up(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    generator, backend = engine_backends(str(missing), "acme/missing", CPU_ENV, {}, None)
    srv = start_server(tmp_path / "d", backend, generator, wait_for="SETUP_FAILED")
    try:
        setup = srv.client.get("/health-check").json()["setup"]
        assert setup["status"] == "failed" and setup["completed_at"]
        assert "the model failed to load: ModelNotFoundError: Model" in setup["logs"] and str(missing) in setup["logs"]
        assert "Traceback" not in setup["logs"]

        cog = srv.client.post("/predictions", json={"input": {"prompt": "x"}})
        assert cog.status_code == 503 and "setup failed: ModelNotFoundError" in cog.json()["detail"]
        oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as oerr:
            oa.completions.create(model="acme/missing", prompt="x", max_tokens=1)
        assert oerr.value.status_code == 503 and "See /health-check" in oerr.value.message
        # Still up and still saying why, for an orchestrator polling it.
        assert srv.client.get("/health-check").json()["status"] == "SETUP_FAILED"
        assert srv.client.get("/metrics").status_code == 200
    finally:
        srv.stop()


def test_stopping_while_the_engine_loads_does_not_wait_for_it(tmp_path: Path, release: threading.Event) -> None:
    handle = EngineHandle(loader=_held_back(None, release))
    backend, generator = InProcessLLMBackend(handle), EngineGenerator(handle, "tiny")
    srv = start_server(tmp_path / "d", backend, generator, wait_for="STARTING")
    srv.stop(timeout_s=10)  # the load thread is still blocked: a joined executor would hang here
    assert not handle.loaded


def test_engine_options_are_checked_before_listening() -> None:
    from cocina.config import ConfigError

    with pytest.raises(ConfigError, match="no_such_option"):
        engine_loader("cocina/demo", {}, {"no_such_option": 1})
    with pytest.raises(ConfigError, match="dtype"):
        engine_loader("cocina/demo", {}, {"dtype": "float8"})
