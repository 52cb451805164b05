"""The OpenAI API with the official `openai` client against a live server with a character-level generator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import LiveServer, start_server
from tests.server.fixtures.backends import CharGenerator, EchoBackend

MODEL = "tiny-char"


@pytest.fixture
def oa(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0)


def test_models_list(oa: openai.OpenAI) -> None:
    assert [m.id for m in oa.models.list()] == [MODEL]


def test_completion(oa: openai.OpenAI) -> None:
    r = oa.completions.create(model=MODEL, prompt="hello", max_tokens=5, seed=1)
    assert len(r.choices) == 1 and len(r.choices[0].text) == 5
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.prompt_tokens == 5 and r.usage.completion_tokens == 5
    again = oa.completions.create(model=MODEL, prompt="hello", max_tokens=5, seed=1)
    assert again.choices[0].text == r.choices[0].text  # seeded


def test_completion_n_stop_logprobs_and_prompt_list(oa: openai.OpenAI) -> None:
    r = oa.completions.create(model=MODEL, prompt=["ab", "cd"], max_tokens=4, n=2, logprobs=2, temperature=0)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    assert r.choices[0].logprobs is not None and len(r.choices[0].logprobs.tokens or []) == 4
    # temperature 0 writes "abcdefghij ...": stop at "c" leaves "ab".
    s = oa.completions.create(model=MODEL, prompt="x", max_tokens=10, temperature=0, stop=["c"])
    assert s.choices[0].finish_reason == "stop"
    eos = oa.completions.create(model=MODEL, prompt="EOS", max_tokens=10)
    assert eos.choices[0].finish_reason == "stop" and len(eos.choices[0].text) == 3


def test_completion_stream_with_usage(oa: openai.OpenAI) -> None:
    chunks = list(
        oa.completions.create(
            model=MODEL, prompt="hi", max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert len(text) == 6
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6


def test_chat(oa: openai.OpenAI) -> None:
    r = oa.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_completion_tokens=7,
        n=2,
        logprobs=True,
        top_logprobs=2,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.role == "assistant" and len(r.choices[0].message.content or "") == 7
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content is not None and len(lp.content[0].top_logprobs) == 2
    assert r.usage is not None and r.usage.completion_tokens == 14


def test_chat_stream(oa: openai.OpenAI) -> None:
    stream = oa.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) == 5
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 5


def test_errors_in_openai_shape(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oa.completions.create(model="nope", prompt="x")
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as ctx:
        oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 200}])
    assert ctx.value.code == "context_length_exceeded" and ctx.value.param == "messages"
    assert "maximum context length is 128 tokens" in ctx.value.message
    with pytest.raises(openai.BadRequestError) as ctx:
        oa.completions.create(model=MODEL, prompt="x" * 100, max_tokens=100)
    assert ctx.value.code == "context_length_exceeded"
    bads: list[dict[str, Any]] = [
        {"temperature": -1},
        {"top_p": 0},
        {"presence_penalty": 3},
        {"max_tokens": 0},
        {"stop": [""]},
        {"n": 0},
    ]
    for bad in bads:
        with pytest.raises(openai.BadRequestError) as err:
            oa.completions.create(model=MODEL, prompt="x", **bad)
        assert err.value.body is not None and err.value.type == "invalid_request_error", bad
    with pytest.raises(openai.BadRequestError) as err:
        oa.chat.completions.create(model=MODEL, messages=[])
    assert err.value.param == "messages"


def test_max_tokens_limit(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "d", EchoBackend(), CharGenerator(max_model_len=100000), max_tokens_limit=50)
    try:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model=MODEL, prompt="x", max_tokens=51)
        assert err.value.param == "max_tokens"
        chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        assert len(chat.choices[0].message.content or "") == 50  # no max_tokens: the server's limit
    finally:
        srv.stop()


def test_raw_bad_bodies_are_400_not_500(live: LiveServer) -> None:
    for content in [
        b"{",
        b"[]",
        b'{"model": 5}',
        b'{"model": "tiny-char", "prompt": [[]]}',
        b'{"prompt": "x"}',
    ]:
        r = httpx.post(f"{live.url}/v1/completions", content=content)
        assert 400 <= r.status_code < 500, (content, r.status_code)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_stream_disconnect_cancels_generation(tmp_path: Path) -> None:
    gen = CharGenerator(token_delay_s=0.02, max_model_len=10000)
    srv = start_server(tmp_path / "d", EchoBackend(), gen)
    try:
        with httpx.stream(
            "POST",
            f"{srv.url}/v1/chat/completions",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 4000,
                "stream": True,
                "n": 2,
            },
        ) as r:
            lines = r.iter_lines()
            for _ in range(6):
                next(lines)
            assert gen.num_running == 2 and gen.num_blocks_used > 0
        _wait(lambda: gen.num_running == 0)
        assert gen.num_blocks_used == 0 and gen.num_aborted == 2
    finally:
        srv.stop()


def test_non_stream_disconnect_cancels_generation(tmp_path: Path) -> None:
    gen = CharGenerator(token_delay_s=0.02, max_model_len=10000)
    srv = start_server(tmp_path / "d", EchoBackend(), gen)
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{srv.url}/v1/completions",
                json={"model": MODEL, "prompt": "x", "max_tokens": 4000},
                timeout=0.5,
            )
        _wait(lambda: gen.num_running == 0)
        assert gen.num_blocks_used == 0 and gen.num_aborted == 1
    finally:
        srv.stop()


def test_openai_surface_absent_without_generator(live_plain: LiveServer) -> None:
    r = httpx.post(f"{live_plain.url}/v1/completions", json={"model": "x", "prompt": "y"})
    assert r.status_code == 404 and "error" in r.json()


def _wait(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_too_many_choices_is_400(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oa.completions.create(model=MODEL, prompt=["a"] * 10, n=8, max_tokens=1)
    assert err.value.param == "prompt"


# ---- every OpenAI request is in the prediction store (the audit covers this surface) -----------------------


def _stored(srv: LiveServer, rid: str) -> dict[str, Any]:
    """The request's row as the Replicate API shows it (what an auditor reads)."""
    r = srv.client.get(f"/v1/predictions/{rid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_openai_requests_are_stored(live: LiveServer, oa: openai.OpenAI) -> None:
    chat = oa.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "¿qué blanquea?"}], max_tokens=6, seed=2
    )
    row = _stored(live, chat.id)
    assert row["status"] == "succeeded" and row["error"] is None
    assert row["input"]["path"] == "/v1/chat/completions"
    assert row["input"]["messages"] == [{"role": "user", "content": "¿qué blanquea?"}]
    assert row["output"]["choices"][0]["message"]["content"] == chat.choices[0].message.content
    assert row["metrics"]["input_token_count"] == chat.usage.prompt_tokens  # type: ignore[union-attr]
    assert row["metrics"]["output_token_count"] == chat.usage.completion_tokens  # type: ignore[union-attr]

    stream = oa.completions.create(model=MODEL, prompt="hola", max_tokens=7, seed=3, stream=True)
    chunks = list(stream)
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    row = _stored(live, chunks[0].id)
    assert row["status"] == "succeeded" and row["input"]["stream"] is True
    assert row["output"]["choices"][0]["text"] == streamed
    assert row["metrics"]["time_to_first_token"] >= 0
    listed = {p["id"] for p in live.client.get("/v1/predictions").json()["results"]}
    assert {chat.id, chunks[0].id} <= listed
    # Never re-run after a crash: the client that asked is gone.
    assert live.runtime.store.get(chat.id).run_input is None  # type: ignore[union-attr]


def test_failed_and_disconnected_openai_requests_are_stored(tmp_path: Path) -> None:
    gen = CharGenerator(token_delay_s=0.02, max_model_len=10000)
    srv = start_server(tmp_path / "d", EchoBackend(), gen)
    try:
        r = httpx.post(f"{srv.url}/v1/completions", json={"model": MODEL, "prompt": "FAIL", "max_tokens": 9})
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        failed = [p for p in srv.client.get("/v1/predictions").json()["results"] if p["status"] == "failed"]
        assert len(failed) == 1 and failed[0]["error"] == "the engine ran out of memory"
        assert failed[0]["output"]["choices"][0]["text"]  # the 2 tokens made before the failure

        body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 4000, "stream": True}
        with httpx.stream("POST", f"{srv.url}/v1/chat/completions", json=body) as resp:
            lines = resp.iter_lines()
            first = next(lines)
            rid = first.removeprefix("data: ")[:200].split('"id":"')[1].split('"')[0]
            for _ in range(4):
                next(lines)
        _wait(lambda: _stored(srv, rid)["status"] == "canceled")
        assert _stored(srv, rid)["error"] == "The client disconnected."
    finally:
        srv.stop()
