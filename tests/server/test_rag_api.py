"""Retrieval-augmented generation and embeddings over HTTP, with the official `openai` and `replicate` clients
against a live server: a tiny random-weight GPT-2 answering from an index (the default embedding model, real
FAISS), sources in every API's answer, and a missing index as a 404 in each API's own format."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import replicate

from cocina.models.tiny import make_tiny_model
from cocina.rag import IndexStore, load_embedder
from cocina.rag.prompt import REWRITE_PROMPT, RagConfig, first_line
from tests.server.conftest import LiveServer, echo_spec, llm_spec, start_server

pytest.importorskip("torch")

DOCS = {
    "limpieza.md": "# Limpieza\n\n## Blanquear\n\nLa lejía blanquea la ropa blanca.\n",
    "garden.md": "# Garden\n\nTomatoes need six hours of sun a day.\n",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("rag") / "data"
    # The tiny GPT-2 answers the rewriting prompt with newlines only (so its rewriting falls back to the
    # question); this tiny llama writes words there, so what it rewrites can be told from the question.
    writer = make_tiny_model(data.parent / "tiny-llama", arch="llama")
    docs = data.parent / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    IndexStore(data / "indexes").create("kb", [docs], load_embedder())
    specs = [
        echo_spec(warm=True),
        llm_spec(tiny_model, "acme/tiny", warm=True),
        llm_spec(tiny_model, "acme/grounded").replace(rag=RagConfig("kb", top_k=1)),
        llm_spec(tiny_model, "acme/lost").replace(rag=RagConfig("missing")),
        llm_spec(writer, "acme/writer"),
        llm_spec(writer, "acme/rewriting").replace(rag=RagConfig("kb", top_k=1, rewrite=True)),
    ]
    server = start_server(data, specs)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def oa(srv: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)


def test_embeddings_with_the_openai_client(oa: openai.OpenAI) -> None:
    out = oa.embeddings.create(model="multilingual-e5-small", input=["la lejía blanquea", "tomatoes need sun"])
    assert [d.index for d in out.data] == [0, 1] and len(out.data[0].embedding) == 384
    assert out.usage.prompt_tokens > 0
    v = np.array(out.data[0].embedding)
    assert abs(np.linalg.norm(v) - 1) < 1e-3
    expected = load_embedder().embed(["la lejía blanquea"])[0]
    assert np.allclose(v, expected, atol=1e-5)
    floats = oa.embeddings.create(model="multilingual-e5-small", input="hola", encoding_format="float")
    assert len(floats.data[0].embedding) == 384


def test_embeddings_faults(srv: LiveServer, oa: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        oa.embeddings.create(model="nope", input="x")
    assert exc.value.body["code"] == "model_not_found"  # type: ignore[index]
    r = srv.client.post("/v1/embeddings", json={"model": "multilingual-e5-small", "input": [""]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = srv.client.post("/v1/embeddings", json={"model": "multilingual-e5-small", "input": [[1, 2]]})
    assert r.status_code == 400 and "Token ids" in r.json()["error"]["message"]
    r = srv.client.post("/v1/embeddings", json={"input": "x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_concurrent_embedding_requests_share_batches(srv: LiveServer) -> None:
    async def many() -> list[int]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
            import asyncio

            rs = await asyncio.gather(
                *(
                    c.post("/v1/embeddings", json={"model": "multilingual-e5-small", "input": f"t{i}"})
                    for i in range(16)
                )
            )
            return [r.status_code for r in rs]

    before = srv.serving.rag._batchers["multilingual-e5-small"].batches
    assert srv.run(many()) == [200] * 16
    assert srv.serving.rag._batchers["multilingual-e5-small"].batches - before < 16


def test_chat_with_rag_per_request_carries_sources(srv: LiveServer, oa: openai.OpenAI) -> None:
    out = oa.chat.completions.create(
        model="acme/tiny",
        messages=[{"role": "user", "content": "How much sun do tomatoes need?"}],
        max_tokens=4,
        extra_body={"rag": {"index": "kb", "top_k": 1}},
    )
    sources = out.model_extra["sources"]  # type: ignore[index]
    assert sources[0]["document"] == "docs/garden.md" and sources[0]["chunk"] == 0
    assert {"index", "version", "score", "text"} <= set(sources[0])
    rec = srv.serving.get(out.id)
    assert rec is not None and rec.sources == sources
    retrieval = out.model_extra["retrieval"]  # type: ignore[index]
    assert retrieval == rec.retrieval
    assert retrieval["query"] == "How much sun do tomatoes need?" and retrieval["rewritten"] is False
    assert retrieval["index"] == "kb" and retrieval["version"] == sources[0]["version"] and retrieval["top_k"] == 1
    stream = oa.chat.completions.create(
        model="acme/tiny",
        messages=[{"role": "user", "content": "bleach"}],
        max_tokens=2,
        stream=True,
        extra_body={"rag": {"index": "kb", "top_k": 1}},
    )
    first = next(iter(stream))
    assert first.model_extra["sources"][0]["document"] == "docs/limpieza.md"  # type: ignore[index]
    completion = oa.completions.create(
        model="acme/tiny", prompt="tomatoes", max_tokens=2, extra_body={"rag": {"index": "kb", "top_k": 1}}
    )
    assert completion.model_extra["sources"]  # type: ignore[index]


def test_rewrite_searches_what_the_model_wrote(srv: LiveServer, oa: openai.OpenAI) -> None:
    """`rewrite: true`: the model first turns the question into a search query (greedy, at most 32 tokens, its
    first line with words), and that query, not the question, is what the index is searched for; the
    prediction records it."""
    question = "How much sun do tomatoes need?"
    out = oa.chat.completions.create(
        model="acme/writer",
        messages=[{"role": "user", "content": question}],
        max_tokens=2,
        extra_body={"rag": {"index": "kb", "top_k": 2, "rewrite": True}},
    )
    # What the same model writes for the rewriting prompt when asked directly, with the same sampling.
    direct = oa.chat.completions.create(
        model="acme/writer",
        messages=[{"role": "user", "content": REWRITE_PROMPT.format(question=question)}],
        max_tokens=32,
        temperature=0.0,
    )
    written = first_line(direct.choices[0].message.content or "")
    assert len(written) >= 3 and written != question  # else the model's words could not be told apart
    retrieval = out.model_extra["retrieval"]  # type: ignore[index]
    assert retrieval["query"] == written and retrieval["rewritten"] is True
    rec = srv.serving.get(out.id)
    assert rec is not None and rec.retrieval == retrieval and rec.input["rag"]["rewrite"] is True
    # The passages are the index's answer to the written query (scores included), not to the question.
    searched = srv.client.post("/v1/indexes/kb/query", json={"query": written, "top_k": 2}).json()["results"]
    asked = srv.client.post("/v1/indexes/kb/query", json={"query": question, "top_k": 2}).json()["results"]
    assert out.model_extra["sources"] == rec.sources == searched  # type: ignore[index]
    assert [s["score"] for s in searched] != [s["score"] for s in asked]
    # Over the Replicate API, on a model configured to rewrite: the prediction says what was searched.
    client = replicate.Client(base_url=srv.url, api_token="unused")
    pred = client.predictions.create(model="acme/rewriting", input={"prompt": question, "max_new_tokens": 1})
    pred.wait()
    body = srv.client.get(f"/v1/predictions/{pred.id}").json()
    assert pred.status == "succeeded" and body["retrieval"] == {**retrieval, "top_k": 1}
    assert len(body["sources"]) == 1 and body["sources"][0] == searched[0]


def test_a_rewrite_with_no_words_searches_the_question(srv: LiveServer, oa: openai.OpenAI) -> None:
    """A model that writes nothing usable for the rewriting prompt (the tiny GPT-2: newlines only): the
    question itself is searched, and the record says it was not rewritten."""
    question = "How much sun do tomatoes need?"
    out = oa.chat.completions.create(
        model="acme/tiny",
        messages=[{"role": "user", "content": question}],
        max_tokens=1,
        extra_body={"rag": {"index": "kb", "top_k": 1, "rewrite": True}},
    )
    retrieval = out.model_extra["retrieval"]  # type: ignore[index]
    assert retrieval["query"] == question and retrieval["rewritten"] is False
    assert out.model_extra["sources"][0]["document"] == "docs/garden.md"  # type: ignore[index]


def test_the_prompt_holds_the_passages(srv: LiveServer) -> None:
    r = srv.client.post(
        "/v1/completions",
        json={"model": "acme/tiny", "prompt": "sun?", "max_tokens": 1, "rag": {"index": "kb", "top_k": 1}},
    )
    assert r.status_code == 200
    rec = srv.serving.get(r.json()["id"])
    assert rec is not None and rec.input["rag"] == {"index": "kb", "top_k": 1}
    usage = r.json()["usage"]["prompt_tokens"]
    plain = srv.client.post("/v1/completions", json={"model": "acme/tiny", "prompt": "sun?", "max_tokens": 1})
    assert usage > plain.json()["usage"]["prompt_tokens"] + 20  # the template and the passage went in


def test_rag_configured_on_the_model_over_replicate_and_cog(srv: LiveServer) -> None:
    client = replicate.Client(base_url=srv.url, api_token="unused")
    pred = client.predictions.create(
        model="acme/grounded", input={"prompt": "¿Qué blanquea la ropa?", "max_new_tokens": 2}
    )
    pred.wait()
    assert pred.status == "succeeded"
    body = srv.client.get(f"/v1/predictions/{pred.id}").json()
    assert body["sources"][0]["document"] == "docs/limpieza.md" and len(body["sources"]) == 1
    plain = client.predictions.create(model="acme/tiny", input={"prompt": "hola", "max_new_tokens": 1})
    plain.wait()
    assert "sources" not in srv.client.get(f"/v1/predictions/{plain.id}").json()


def test_a_missing_index_is_a_404_in_each_api(srv: LiveServer, oa: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        oa.chat.completions.create(
            model="acme/tiny", messages=[{"role": "user", "content": "x"}], max_tokens=1, extra_body={"rag": "nope"}
        )
    assert exc.value.body["code"] == "index_not_found" and exc.value.body["param"] == "rag.index"  # type: ignore[index]
    r = srv.client.post("/v1/models/acme/lost/predictions", json={"input": {"prompt": "x"}})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert "no index named 'missing'" in r.json()["detail"]
    r = srv.client.post("/v1/indexes/nope/query", json={"query": "x"})
    assert r.status_code == 404 and r.json()["title"] == "Not found"
    r = srv.client.post(
        "/v1/chat/completions",
        json={
            "model": "acme/tiny",
            "messages": [{"role": "user", "content": "x"}],
            "rag": {"index": "kb", "top_k": 99},
        },
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "rag"
    r = srv.client.post(
        "/v1/chat/completions",
        json={"model": "acme/echo", "messages": [{"role": "user", "content": "x"}], "rag": "kb"},
    )
    assert r.status_code in (400, 404)


def test_indexes_over_http(srv: LiveServer) -> None:
    listed = srv.client.get("/v1/indexes").json()["results"]
    assert [i["name"] for i in listed] == ["kb"]
    shown = srv.client.get("/v1/indexes/kb").json()
    assert shown["num_documents"] == 2 and shown["embedder"]["name"] == "multilingual-e5-small"
    found = srv.client.post("/v1/indexes/kb/query", json={"query": "tomatoes", "top_k": 1}).json()["results"]
    assert found[0]["document"] == "docs/garden.md"
    assert srv.client.post("/v1/indexes/kb/query", json={"query": ""}).status_code == 422


def test_base64_embeddings_decode_to_the_floats(srv: LiveServer) -> None:
    r = srv.client.post(
        "/v1/embeddings", json={"model": "multilingual-e5-small", "input": "x", "encoding_format": "base64"}
    )
    v = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert v.shape == (384,)
