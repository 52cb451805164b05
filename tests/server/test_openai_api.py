"""The OpenAI API with the official `openai` client against a live server whose language model is a tiny
random-weight GPT-2 on cocina's engine, in its own process (beside the echo predictor, Cog's default model)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import replicate

from tests.server.conftest import LiveServer, echo_spec, llm_spec, start_server

pytest.importorskip("torch")

MODEL = "acme/tiny"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("openai") / "data",
        [echo_spec(warm=True), llm_spec(tiny_model, MODEL, warm=True)],
    )
    try:
        _wait(lambda: server.client.get("/health").status_code == 200, 60)
        yield server
    finally:
        server.stop()


@pytest.fixture
def oa(srv: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)


def _wait(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def _engine(srv: LiveServer, name: str = MODEL) -> dict[str, Any]:
    """The engine's statistics, asked of the model's process."""
    stats: dict[str, Any] = srv.run(srv.runtime(name).model.engine_stats()) or {}
    return stats


EOS = {"ignore_eos": True}  # vLLM's extension: exactly max_tokens, whatever a random model samples


def test_models_list_has_the_language_models_only(oa: openai.OpenAI, tiny_model: Path) -> None:
    ids = [m.id for m in oa.models.list()]
    assert ids == [MODEL, str(tiny_model)]  # the name, and the path it was given as (vLLM accepts it)


def test_completion_by_name_or_path(oa: openai.OpenAI, tiny_model: Path) -> None:
    r = oa.completions.create(model=MODEL, prompt="hello", max_tokens=5, seed=1, extra_body=EOS)
    assert len(r.choices) == 1 and r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 5 and r.usage.prompt_tokens > 0
    again = oa.completions.create(model=str(tiny_model), prompt="hello", max_tokens=5, seed=1, extra_body=EOS)
    assert again.choices[0].text == r.choices[0].text  # seeded: the same text, through the path alias
    assert again.model == str(tiny_model)


def test_completion_n_stop_logprobs_and_prompt_list(oa: openai.OpenAI) -> None:
    r = oa.completions.create(
        model=MODEL, prompt=["ab", "cd"], max_tokens=4, n=2, logprobs=2, temperature=0, extra_body=EOS
    )
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    lp = r.choices[0].logprobs
    assert lp is not None and len(lp.tokens or []) == 4 and len((lp.top_logprobs or [{}])[0]) == 2
    # A seeded sample, then the same with one of its later tokens as a stop string: cut right before it.
    sample = dict(model=MODEL, prompt="hello", max_tokens=16, temperature=1.0, seed=7, extra_body=EOS)
    full = oa.completions.create(**sample, logprobs=0)  # type: ignore[call-overload]
    text = full.choices[0].text
    tokens = [t for t in (full.choices[0].logprobs.tokens or []) if t.strip()]
    assert len(tokens) >= 4, text
    stop = tokens[len(tokens) // 2]
    cut = oa.completions.create(**sample, stop=[stop])  # type: ignore[call-overload]
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].text == text[: text.index(stop)]


def test_completion_stream_with_usage(oa: openai.OpenAI) -> None:
    chunks = list(
        oa.completions.create(
            model=MODEL,
            prompt="hi",
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=EOS,
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
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
        extra_body=EOS,
    )
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].message.role == "assistant"
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content is not None and len(lp.content) == 7
    assert len(lp.content[0].top_logprobs) == 2
    assert r.usage is not None and r.usage.completion_tokens == 14


def test_chat_stream(oa: openai.OpenAI) -> None:
    chunks = list(
        oa.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=EOS,
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_one_chat_template_for_every_api(srv: LiveServer, oa: openai.OpenAI) -> None:
    """The same conversation reads the same prompt through Replicate (prompt + system_prompt, the
    `LLMPredictor`'s inputs) and OpenAI chat: greedy answers are identical."""
    rep = replicate.Client(api_token="x", base_url=srv.url)
    via_replicate = "".join(
        rep.run(
            MODEL,
            input={"prompt": "¿qué blanquea?", "system_prompt": "sé breve", "max_new_tokens": 8, "temperature": 0},
        )
    )
    chat = oa.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "sé breve"}, {"role": "user", "content": "¿qué blanquea?"}],
        max_tokens=8,
        temperature=0,
    )
    assert via_replicate == chat.choices[0].message.content


def test_errors_in_openai_shape(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        oa.completions.create(model="nope", prompt="x")
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        oa.completions.create(model="acme/echo", prompt="x")  # a predictor, not a language model
    with pytest.raises(openai.BadRequestError) as ctx:
        oa.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hola " * 300}])
    assert ctx.value.code == "context_length_exceeded" and ctx.value.param == "messages"
    assert "maximum context length is 256 tokens" in ctx.value.message
    with pytest.raises(openai.BadRequestError) as ctx:
        oa.completions.create(model=MODEL, prompt=[1] * 200, max_tokens=100)
    assert ctx.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as ctx:
        oa.completions.create(model=MODEL, prompt=[1, 99999])
    assert ctx.value.param == "prompt" and "vocabulary" in ctx.value.message
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
    with pytest.raises(openai.BadRequestError) as err:
        oa.chat.completions.create(model="", messages=[{"role": "user", "content": "x"}])
    assert err.value.param == "model"


def test_too_many_choices_is_400(oa: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oa.completions.create(model=MODEL, prompt=["a"] * 10, n=8, max_tokens=1)
    assert err.value.param == "prompt"


def test_raw_bad_bodies_are_400_not_500(srv: LiveServer) -> None:
    for content in [
        b"{",
        b"[]",
        b'{"model": 5}',
        b'{"model": "acme/tiny", "prompt": [[]]}',
        b'{"prompt": "x"}',
    ]:
        r = httpx.post(f"{srv.url}/v1/completions", content=content)
        assert 400 <= r.status_code < 500, (content, r.status_code)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_max_tokens_limit(tmp_path: Path, tiny_model: Path) -> None:
    server = start_server(tmp_path / "d", [llm_spec(tiny_model, MODEL)], max_tokens_limit=50)
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model=MODEL, prompt="x", max_tokens=51)
        assert err.value.param == "max_tokens"
        chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], extra_body=EOS)
        assert chat.usage is not None and chat.usage.completion_tokens == 50  # no max_tokens: the server's limit
    finally:
        server.stop()


# ---- the queue, disconnects and the engine's slots ---------------------------------------------------------


def _idle(srv: LiveServer) -> bool:
    stats = _engine(srv)
    return stats.get("num_running") == 0 and stats.get("num_kv_blocks_used") == 0


def _stored(srv: LiveServer, rid: str) -> dict[str, Any]:
    """The request's row as the Replicate API shows it (what an auditor reads)."""
    r = srv.client.get(f"/v1/predictions/{rid}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_stream_disconnect_frees_engine_slots_and_blocks(srv: LiveServer) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 200,
        "stream": True,
        "n": 2,
        "ignore_eos": True,
    }
    with httpx.stream("POST", f"{srv.url}/v1/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        first = next(lines)
        rid = json.loads(first.removeprefix("data: "))["id"]
        for _ in range(6):
            next(lines)
        stats = _engine(srv)
        assert stats["num_running"] + stats["num_waiting"] >= 1 and stats["num_kv_blocks_used"] > 0
    _wait(lambda: _idle(srv))
    _wait(lambda: _stored(srv, rid)["status"] == "canceled")
    assert _stored(srv, rid)["error"] == "The client disconnected."


def test_non_stream_disconnect_frees_the_engine(srv: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    """A client that goes away while its (non-streaming) completion generates: the generation is aborted. The
    client leaves only once the engine is running its request (a fixed client timeout raced the request's
    admission on a loaded machine), by closing its socket."""
    import socket
    from urllib.parse import urlsplit

    before = _engine(srv)["requests_by_finish_reason"]["abort"]
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 240, "ignore_eos": True, "n": 4}).encode()
    url = urlsplit(srv.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (url.netloc.encode(), len(body), body)
        )
        _wait(lambda: _engine(srv).get("num_running", 0) > 0)
    _wait(lambda: _idle(srv))
    assert _engine(srv)["requests_by_finish_reason"]["abort"] >= before + 1
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # the handler ended quietly, no 500 logged


def test_openai_requests_are_bounded_by_the_models_queue(tmp_path: Path, tiny_model: Path) -> None:
    server = start_server(tmp_path / "d", [llm_spec(tiny_model, MODEL)], concurrency=1, max_queue=0)
    try:
        long = {"model": MODEL, "prompt": "hello", "max_tokens": 240, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=long, timeout=30) as r:
            lines = r.iter_lines()  # kept: a dropped iterator closes the stream, and the server cancels it
            next(lines)  # running: the one slot is taken
            refused = httpx.post(f"{server.url}/v1/completions", json={**long, "stream": False}, timeout=30)
            assert refused.status_code == 429 and refused.headers["retry-after"]
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    finally:
        server.stop()


# ---- every OpenAI request is in the prediction store (the audit covers this surface) -----------------------


def test_openai_requests_are_stored(srv: LiveServer, oa: openai.OpenAI) -> None:
    chat = oa.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "¿qué blanquea?"}], max_tokens=6, seed=2, extra_body=EOS
    )
    row = _stored(srv, chat.id)
    assert row["status"] == "succeeded" and row["error"] is None
    assert row["model"] == MODEL and row["version"] == srv.runtime(MODEL).model.version
    assert row["input"]["path"] == "/v1/chat/completions"
    assert row["input"]["messages"] == [{"role": "user", "content": "¿qué blanquea?"}]
    assert row["output"]["choices"][0]["message"]["content"] == chat.choices[0].message.content
    assert row["metrics"]["input_token_count"] == chat.usage.prompt_tokens  # type: ignore[union-attr]
    assert row["metrics"]["output_token_count"] == chat.usage.completion_tokens  # type: ignore[union-attr]

    chunks = list(oa.completions.create(model=MODEL, prompt="hola", max_tokens=7, seed=3, stream=True))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    row = _stored(srv, chunks[0].id)
    assert row["status"] == "succeeded" and row["input"]["stream"] is True
    assert row["output"]["choices"][0]["text"] == streamed
    assert row["metrics"]["time_to_first_token"] >= 0
    listed = {p["id"] for p in srv.client.get("/v1/predictions").json()["results"]}
    assert {chat.id, chunks[0].id} <= listed
    stored = srv.serving.store.get(chat.id)
    assert stored is not None and stored.run_input is None  # never re-run after a crash: its client is gone


def test_a_dying_model_process_ends_the_stream_with_an_error_and_reloads(tmp_path: Path, tiny_model: Path) -> None:
    server = start_server(tmp_path / "d", [llm_spec(tiny_model, MODEL, warm=True)])
    try:
        pid = server.runtime(MODEL).model.pid
        assert pid is not None
        body = {"model": MODEL, "prompt": "hello", "max_tokens": 240, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            rid = json.loads(next(lines).removeprefix("data: "))["id"]
            os.kill(pid, signal.SIGKILL)
            rest = [x for x in lines if x]
        errors = [json.loads(x.removeprefix("data: ")) for x in rest if x.startswith('data: {"error"')]
        assert len(errors) == 1 and "SIGKILL" in errors[0]["error"]["message"]
        assert rest[-1] == "data: [DONE]"
        row = _stored(server, rid)
        assert row["status"] == "failed" and "SIGKILL" in row["error"]
        # Kept warm: loaded again at once, and answering.
        _wait(lambda: server.runtime(MODEL).model.pid not in (None, pid), 60)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        again = client.completions.create(model=MODEL, prompt="x", max_tokens=3, extra_body=EOS)
        assert again.usage is not None and again.usage.completion_tokens == 3
    finally:
        server.stop()
