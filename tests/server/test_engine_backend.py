"""The server on cocina's real engine (a tiny random-weight model): OpenAI and Replicate surfaces share one
engine; a client that disconnects mid-stream gives back its engine slot and KV blocks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import replicate

from tests.server.conftest import LiveServer, start_server

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def engine_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from cocina.engine.config import EngineConfig
    from cocina.engine.llm_engine import AsyncLLMEngine, LLMEngine
    from cocina.models.tiny import make_tiny_model
    from cocina.server.adapters import EngineGenerator, InProcessLLMBackend

    root = tmp_path_factory.mktemp("engine")
    model_dir = make_tiny_model(root / "gpt2", arch="gpt2")
    aengine = AsyncLLMEngine(LLMEngine.from_pretrained(model_dir, EngineConfig(device="cpu", max_model_len=256)))
    generator = EngineGenerator(aengine, "tiny-gpt2")
    srv = start_server(root / "data", InProcessLLMBackend(aengine, concurrency=8), generator)
    try:
        yield srv
    finally:
        srv.stop()


def _stats(srv: LiveServer) -> Any:
    return srv.generator.aengine.stats()


def test_openai_chat_and_completion_on_engine(engine_server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{engine_server.url}/v1", api_key="x", max_retries=0)
    chat = client.chat.completions.create(
        model="tiny-gpt2",
        messages=[{"role": "user", "content": "hola"}],
        max_tokens=8,
        seed=3,
        temperature=0.8,
    )
    assert chat.usage is not None and chat.usage.completion_tokens <= 8
    assert chat.choices[0].finish_reason in ("stop", "length")
    comp = client.completions.create(model="tiny-gpt2", prompt="the", max_tokens=5, logprobs=2, temperature=0)
    assert comp.choices[0].logprobs is not None
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny-gpt2", prompt="word " * 400, max_tokens=5)
    assert err.value.code == "context_length_exceeded"


def test_replicate_run_on_engine(engine_server: LiveServer) -> None:
    client = replicate.Client(api_token="x", base_url=engine_server.url)
    out = client.run(f"acme/echo:{'a' * 64}", input={"prompt": "hola", "max_new_tokens": 6, "seed": 1})
    assert isinstance("".join(out), str)


def test_stream_disconnect_frees_engine_slot_and_blocks(engine_server: LiveServer) -> None:
    with httpx.stream(
        "POST",
        f"{engine_server.url}/v1/completions",
        json={
            "model": "tiny-gpt2",
            "prompt": "a",
            "max_tokens": 200,
            "stream": True,
            "n": 2,
            "temperature": 1.0,
        },
        timeout=30,
    ) as r:
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
        busy = _stats(engine_server)
        assert busy.num_running + busy.num_waiting >= 1 and busy.num_kv_blocks_used > 0
    deadline = time.monotonic() + 10
    while True:
        stats = _stats(engine_server)
        if stats.num_running == 0 and stats.num_waiting == 0 and stats.num_kv_blocks_used == 0:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.05)
    assert stats.num_requests_aborted >= 1


def test_engine_metrics_under_vllm_names(engine_server: LiveServer) -> None:
    from tests.server.test_metrics import scrape, value

    before = scrape(engine_server)
    client = openai.OpenAI(base_url=f"{engine_server.url}/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="tiny-gpt2", messages=[{"role": "user", "content": "hola"}], max_tokens=6, stream=True, seed=1
    )
    assert list(stream)
    after = scrape(engine_server)
    stats = _stats(engine_server)
    for prefix in ("vllm:", "cocina_engine_"):
        assert value(after, f"{prefix}prompt_tokens_total") > value(before, f"{prefix}prompt_tokens_total")
        assert value(after, f"{prefix}generation_tokens_total") > value(before, f"{prefix}generation_tokens_total")
        ttft = f"{prefix}time_to_first_token_seconds_count"
        assert value(after, ttft) > value(before, ttft)
        assert value(after, f"{prefix}time_to_first_token_seconds_bucket", le="+Inf") == value(after, ttft)
        assert value(after, f"{prefix}num_requests_running") == 0
        assert value(after, f"{prefix}num_requests_waiting") == 0
    assert value(after, "vllm:generation_tokens_total") == stats.generated_tokens
    assert 0 <= value(after, "vllm:kv_cache_usage_perc") <= 1
    assert value(after, "cocina_engine_kv_blocks_total") == stats.num_kv_blocks_total > 0
    assert value(after, "cocina_engine_requests_total", outcome="finished") >= 1
