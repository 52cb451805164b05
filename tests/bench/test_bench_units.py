"""Pure parts of `cocina bench`: metric definitions, percentiles, SLOs, arrivals, SSE parsing, workloads."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from cocina.bench.backends import iter_sse, normalize_base_url
from cocina.bench.metrics import (
    SLO,
    RequestResult,
    compute_metrics,
    output_tokens_series,
    parse_slos,
    percentile,
)
from cocina.bench.runner import arrival_offsets
from cocina.bench.workload import WorkloadError, dataset_requests, synthetic_requests


def result(i: int, ttft: float, itl: list[float], tokens: int, start: float = 0.0) -> RequestResult:
    r = RequestResult(i, prompt_len=10, expected_output_len=tokens, start=start, success=True, ttft=ttft)
    r.itl = list(itl)
    r.latency = ttft + sum(itl)
    t = start + ttft
    r.chunks = [(t, "a")]
    for g in itl:
        t += g
        r.chunks.append((t, "b"))
    r.output_tokens = tokens
    return r


@pytest.mark.parametrize("q", [0, 10, 50, 90, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    xs = [5.0, 1.0, 9.0, 3.0, 7.5, 2.0, 8.0]
    assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_definitions_on_known_requests() -> None:
    a = result(0, 0.1, [0.02, 0.02, 0.02], tokens=4)  # E2E 0.16, TPOT 0.02
    b = result(1, 0.3, [0.05], tokens=2, start=0.1)  # E2E 0.35, TPOT 0.05
    c = result(2, 0.2, [], tokens=1)  # one token: no TPOT
    failed = RequestResult(3, 10, 4, start=0.05, error="HTTP 500: x", status_code=500)
    m = compute_metrics([a, b, c, failed], duration_s=2.0, slo=SLO(ttft_ms=250))
    assert m["completed"] == 3 and m["failed"] == 1
    assert m["ttft_ms"]["mean"] == pytest.approx(200)
    assert m["tpot_ms"]["mean"] == pytest.approx(35)  # (20 + 50) / 2; c has none
    assert m["itl_ms"]["mean"] == pytest.approx((0.02 * 3 + 0.05) / 4 * 1000)
    assert m["e2el_ms"]["median"] == pytest.approx(200)
    assert m["e2el_ms"]["std"] == pytest.approx(float(np.std([160, 350, 200])))
    assert m["output_token_throughput_tok_s"] == pytest.approx(7 / 2)
    assert m["request_throughput_req_s"] == pytest.approx(3 / 2)
    assert m["total_token_throughput_tok_s"] == pytest.approx((30 + 7) / 2)
    assert m["goodput_req_s"] == pytest.approx(2 / 2)  # b's TTFT of 300 ms misses the 250 ms SLO
    assert m["errors_by_status"] == {"HTTP 500": 1}
    assert m["first_errors"] == ["request 3: HTTP 500: x"]


def test_tokens_series_sums_to_total_even_when_usage_differs_from_chunks() -> None:
    r = result(0, 0.5, [0.5, 0.5], tokens=6)  # 3 chunks, 6 tokens: 2 per chunk
    series = output_tokens_series([r], bucket_s=0.5)
    assert sum(v * 0.5 for _, v in series) == pytest.approx(6)
    assert series[1] == (0.5, 4.0)


def test_parse_slos() -> None:
    assert parse_slos(["ttft:500", "tpot:50 e2el:3000"]) == SLO(500, 50, 3000)
    for bad in (["ttft"], ["foo:1"], ["ttft:-1"], ["ttft:abc"]):
        with pytest.raises(ValueError, match="--goodput"):
            parse_slos(bad)


def test_poisson_offsets_have_the_mean_rate_and_exponential_gaps() -> None:
    rate = 50.0
    t = arrival_offsets(5000, rate, seed=1)
    gaps = [b - a for a, b in itertools.pairwise(t)]
    assert t[0] == 0.0
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=0.05)
    # Exponential: the standard deviation equals the mean, and P(gap > mean) = 1/e.
    assert statistics.pstdev(gaps) == pytest.approx(1 / rate, rel=0.07)
    assert sum(g > 1 / rate for g in gaps) / len(gaps) == pytest.approx(math.exp(-1), abs=0.03)
    assert arrival_offsets(5, math.inf) == [0.0] * 5
    assert arrival_offsets(10, 5.0, seed=2) == arrival_offsets(10, 5.0, seed=2)


async def test_sse_parser_follows_the_spec() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [
            ": keep-alive",
            "event: output",
            "id: 1",
            "data: a",
            "data: b",
            "",
            'data: {"x":1}',
            "",
            "event: done",
            "data:",
            "",
        ]:
            yield line

    evs = [e async for e in iter_sse(lines())]
    assert [(e.event, e.data, e.id) for e in evs] == [
        ("output", "a\nb", "1"),
        ("message", '{"x":1}', "1"),
        ("done", "", "1"),
    ]


def test_base_url_normalization() -> None:
    assert normalize_base_url("http://h:1/v1/") == "http://h:1"
    assert normalize_base_url("h:1") == "http://h:1"


def test_synthetic_prompts_have_the_word_length_and_differ() -> None:
    reqs = synthetic_requests(3, 20, 7, seed=0)
    assert all(len(r.prompt.split()) == 20 and r.prompt_len == 20 and r.output_len == 7 for r in reqs)
    assert len({r.prompt for r in reqs}) == 3


def test_synthetic_prompts_exact_with_a_tokenizer() -> None:
    # A toy tokenizer that splits every word into 2-character pieces, so word count != token count.
    vocab: dict[int, str] = {}

    def enc(text: str) -> list[int]:
        out = []
        for w in text.split():
            for i in range(0, len(w), 2):
                piece = w[i : i + 2]
                vocab[hash(piece) % 1000] = piece
                out.append(hash(piece) % 1000)
        return out

    def dec(ids: list[int]) -> str:
        return " ".join(vocab[i] for i in ids)

    reqs = synthetic_requests(4, 33, 5, tokenizer=(enc, dec))
    assert all(len(enc(r.prompt)) == 33 == r.prompt_len for r in reqs)


def test_dataset_lines_cycle_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(
        json.dumps({"prompt": "a b c", "output_len": 4}) + "\n\n" + json.dumps({"prompt": "d"}) + "\n"
    )
    with pytest.raises(WorkloadError, match=r"d.jsonl:3: output_len"):
        dataset_requests(f, 5)
    reqs = dataset_requests(f, 5, default_output_len=9)
    assert [r.output_len for r in reqs] == [4, 9, 4, 9, 4]
    assert reqs[0].prompt_len == 3
    f.write_text("not json\n")
    with pytest.raises(WorkloadError, match="not JSON"):
        dataset_requests(f, None)


def test_exact_prompt_lengths_with_a_real_tokenizer(tmp_path: Path) -> None:
    from cocina.bench.workload import load_tokenizer
    from cocina.models.tiny import sample_corpus, train_tokenizer

    train_tokenizer(sample_corpus(), 400, tmp_path / "tok")
    enc, dec = load_tokenizer(str(tmp_path / "tok"))
    reqs = synthetic_requests(3, 48, 8, tokenizer=(enc, dec))
    assert [r.prompt_len for r in reqs] == [48, 48, 48]
    assert [len(enc(r.prompt)) for r in reqs] == [48, 48, 48]
    with pytest.raises(WorkloadError, match="cannot load tokenizer"):
        load_tokenizer(str(tmp_path / "missing"))
