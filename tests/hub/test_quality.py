"""The A/B measures without a server: percentiles, the paired bootstrap, summaries, examples files, live stats
from records, and the perplexity of references under a real (tiny, random-weight) language model."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from cocina.hub.compare import parse_examples
from cocina.hub.quality import (
    Answer,
    VersionResults,
    compare,
    live_stats,
    paired_bootstrap,
    percentile,
    reference_perplexity,
    summarize,
)
from cocina.store import PredictionRecord, PredictionStatus


def test_percentile_interpolates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile(list(map(float, range(101))), 0.95) == pytest.approx(95.0)


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(["sol", "luna", "mar", "pan", "sal", "rio", "flor", "cielo"]) for _ in range(n))


def test_paired_bootstrap_sees_a_real_difference_and_no_difference() -> None:
    rng = random.Random(1)
    refs = [_words(rng, 8) for _ in range(40)]
    noisy = [" ".join([*r.split()[:5], "x", "y", "z"]) for r in refs]  # the first five words right
    same = paired_bootstrap(lambda h, r: 0.0 + sum(a == b for a, b in zip(h, r, strict=True)), noisy, noisy, refs)
    assert same == {"diff": 0.0, "ci95": [0.0, 0.0]}
    from cocina.hub.quality import METRICS

    better = paired_bootstrap(METRICS["chrf"], noisy, refs, refs, samples=200)
    assert better["diff"] > 20 and better["ci95"][0] > 0 and better["ci95"][0] <= better["diff"] <= better["ci95"][1]
    worse = paired_bootstrap(METRICS["bleu"], refs, noisy, refs, samples=200)
    assert worse["diff"] < 0 and worse["ci95"][1] < 0


def test_summaries_count_failures_as_empty_answers_and_skip_examples_without_references() -> None:
    a = VersionResults("a", 60, [Answer("hola mundo de los modelos", 0.010, True, 0.5, 10), Answer(None, 0.020, False)])
    b = VersionResults("b", 40, [Answer("hola mundo de los modelos", 0.030, True), Answer("adios", 0.040, True)])
    refs: list[str | None] = ["hola mundo de los modelos", None]
    sa = summarize(a, refs)
    assert sa["errors"] == 1 and sa["examples"] == 2 and sa["bleu"] == 100.0
    assert sa["latency_ms"] == {"p50": 10.0, "p95": 10.0}  # successful answers only
    assert sa["output_tokens_per_s"] == 20.0
    report = compare([a, b], refs)
    assert report["differences"][0]["bleu"]["diff"] == 0.0  # the one scored example is the same answer
    assert report["differences"][0]["latency_p50_ms"]["diff"] == pytest.approx(25.0)
    ok = VersionResults("y", 50, [Answer("adios a todos mis amigos", 0.1, True)])
    failing = compare([VersionResults("x", 50, [Answer(None, 0.1, False)]), ok], ["adios a todos mis amigos"])
    assert failing["versions"]["x"]["bleu"] == 0.0  # a failure scores as an empty answer, not as a skip


def test_examples_files() -> None:
    got = parse_examples(['{"input": {"text": "a"}, "reference": "A"}', "", '{"text": "b", "n": 2}'])
    assert [(e.input, e.reference) for e in got] == [({"text": "a"}, "A"), ({"text": "b", "n": 2}, None)]
    for lines, message in [
        (['{"text": "a"}', "{nope"], "f.jsonl, line 2: not JSON"),
        (["[1, 2]"], "f.jsonl, line 1: an example is a JSON object"),
        (['{"input": 3}'], "`input` must be an object"),
        (['{"reference": "only"}'], "the example has no input"),
        (['{"text": "a", "reference": 1}'], "`reference` must be a string"),
        (["", "  "], "f.jsonl has no examples"),
    ]:
        with pytest.raises(ValueError) as info:
            parse_examples(lines, "f.jsonl")
        assert message in str(info.value)


def test_live_stats_from_records() -> None:
    def rec(
        version: str, status: PredictionStatus, predict: float, tokens: int | None, release: int
    ) -> PredictionRecord:
        r = PredictionRecord(id=f"p{random.random()}", model="acme/m", version=version, input={}, status=status)
        r.metrics = {"predict_time": predict, "total_time": predict + 0.01}
        if tokens:
            r.metrics["output_token_count"] = tokens
        r.release = release
        return r

    rows = [
        rec("a", PredictionStatus.SUCCEEDED, 0.1, 10, 1),
        rec("a", PredictionStatus.SUCCEEDED, 0.3, 30, 2),
        rec("a", PredictionStatus.FAILED, 0.2, None, 2),
        rec("b", PredictionStatus.CANCELED, 0.2, None, 2),
    ]
    stats = live_stats(rows)
    assert stats["a"]["predictions"] == 3 and stats["a"]["succeeded"] == 2 and stats["a"]["failed"] == 1
    assert stats["a"]["releases"] == [1, 2]
    assert stats["a"]["predict_time_ms"]["p50"] == 200.0 and stats["a"]["output_tokens_per_s"] == 100.0
    assert stats["b"]["canceled"] == 1 and stats["b"]["predict_time_ms"]["p50"] is None


def test_reference_perplexity_is_the_models_own_loss_on_the_references(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cocina.llm.chat import chat_prompt_ids, messages_for
    from cocina.models.tiny import make_tiny_model

    path = make_tiny_model(tmp_path / "tiny", arch="gpt2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    examples = [
        {"input": {"prompt": "hola", "system_prompt": "breve"}, "reference": "una respuesta corta"},
        {"input": {"pregunta": "que tal"}, "reference": "muy bien, gracias"},
        {"input": {"prompt": "sin referencia"}},
    ]
    # The same figure by another road: transformers' own shifted cross-entropy over the reference tokens.
    nll, count = 0.0, 0
    for ex, system in ((examples[0], "breve"), (examples[1], None)):
        question = ex["input"].get("prompt") or ex["input"].get("pregunta")
        prompt = chat_prompt_ids(tokenizer, messages_for(question, system))
        target = tokenizer.encode(ex["reference"], add_special_tokens=False)
        labels = torch.tensor([[-100] * len(prompt) + target])
        with torch.no_grad():
            loss = lm(torch.tensor([prompt + target]), labels=labels).loss
        nll += float(loss) * len(target)
        count += len(target)
    got = reference_perplexity(str(path), examples)
    assert got is not None and got == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert got > 1
    assert reference_perplexity(str(path), examples[2:]) is None  # nothing to score
