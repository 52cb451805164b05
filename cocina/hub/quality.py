"""A/B measures between versions: latency, errors, throughput, and quality against references (BLEU and chrF,
computed by sacrebleu), each difference with a 95% confidence interval from a paired bootstrap over examples.

`compare` takes what each version answered for the same examples (the caller runs them); `live_stats` reads a
deployment's real traffic from its prediction records.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BOOTSTRAP_SAMPLES = 1000


@dataclass
class Answer:
    """One version's answer to one example."""

    output: str | None
    latency_s: float
    ok: bool
    predict_time_s: float | None = None
    output_tokens: int | None = None


@dataclass
class VersionResults:
    version: str
    weight: int | None
    answers: list[Answer] = field(default_factory=list)
    perplexity: float | None = None  # of the references, for a language model (None: not measured)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _bleu(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def _chrf(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(hyps, [refs]).score)


METRICS: dict[str, Callable[[list[str], list[str]], float]] = {"bleu": _bleu, "chrf": _chrf}


def paired_bootstrap(
    metric: Callable[[list[str], list[str]], float],
    a: list[str],
    b: list[str],
    refs: list[str],
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """`metric(b) - metric(a)` and its 95% interval: examples resampled with replacement, both versions on the
    same resample each time (a paired test)."""
    rng = random.Random(seed)
    n = len(refs)
    diffs = []
    for _ in range(samples):
        idx = [rng.randrange(n) for _ in range(n)]
        ra, rb, rr = ([xs[i] for i in idx] for xs in (a, b, refs))
        diffs.append(metric(rb, rr) - metric(ra, rr))
    diffs.sort()
    return {
        "diff": round(metric(b, refs) - metric(a, refs), 3),
        "ci95": [round(diffs[int(0.025 * samples)], 3), round(diffs[int(0.975 * samples) - 1], 3)],
    }


def summarize(results: VersionResults, references: list[str | None]) -> dict[str, Any]:
    ok = [a for a in results.answers if a.ok]
    latencies = [a.latency_s * 1000 for a in ok]
    tokens = [(a.output_tokens, a.predict_time_s) for a in ok if a.output_tokens and a.predict_time_s]
    out: dict[str, Any] = {
        "weight": results.weight,
        "examples": len(results.answers),
        "errors": len(results.answers) - len(ok),
        "latency_ms": {"p50": _round(percentile(latencies, 0.5)), "p95": _round(percentile(latencies, 0.95))},
        "output_tokens_per_s": _round(sum(t for t, _ in tokens) / sum(s for _, s in tokens)) if tokens else None,
        "perplexity": _round(results.perplexity, 3),
    }
    pairs = _scored(results, references)
    for name, metric in METRICS.items():
        out[name] = round(metric([h for h, _ in pairs], [r for _, r in pairs]), 3) if pairs else None
    return out


def _scored(results: VersionResults, references: list[str | None]) -> list[tuple[str, str]]:
    """(output, reference) for the examples that have a reference (a failed answer counts as empty)."""
    return [
        (a.output or "" if a.ok else "", r) for a, r in zip(results.answers, references, strict=True) if r is not None
    ]


def compare(versions: list[VersionResults], references: list[str | None]) -> dict[str, Any]:
    """Each version's figures, and each other version's difference from the first (the heaviest)."""
    report: dict[str, Any] = {"versions": {v.version: summarize(v, references) for v in versions}, "differences": []}
    base = versions[0]
    with_refs = [i for i, r in enumerate(references) if r is not None]
    refs = [references[i] or "" for i in with_refs]
    for other in versions[1:]:
        entry: dict[str, Any] = {"a": base.version, "b": other.version}
        if refs:
            a = [(base.answers[i].output or "") if base.answers[i].ok else "" for i in with_refs]
            b = [(other.answers[i].output or "") if other.answers[i].ok else "" for i in with_refs]
            for name, metric in METRICS.items():
                entry[name] = paired_bootstrap(metric, a, b, refs)
        la = [x.latency_s * 1000 for x in base.answers if x.ok]
        lb = [x.latency_s * 1000 for x in other.answers if x.ok]
        if la and lb:
            entry["latency_p50_ms"] = {"diff": round(statistics.median(lb) - statistics.median(la), 3)}
        report["differences"].append(entry)
    return report


def reference_perplexity(model: str, examples: list[dict[str, Any]]) -> float | None:
    """Perplexity of the references under a language model: the reference's tokens after the prompt each
    example's input makes (`prompt` or `pregunta`, and `system_prompt`, through the one chat template), with
    transformers on the model's weights. None when no example has a reference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cocina.llm.chat import chat_prompt_ids, messages_for
    from cocina.models.resolve import resolve_model

    path = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    lm.eval()
    nll, count = 0.0, 0
    for ex in examples:
        reference = ex.get("reference")
        if not reference:
            continue
        inp = ex.get("input", {})
        prompt = chat_prompt_ids(
            tokenizer, messages_for(str(inp.get("prompt") or inp.get("pregunta") or ""), inp.get("system_prompt"))
        )
        # The reference as the answer's own text, right after the prompt (the template ends where it begins).
        target = tokenizer.encode(reference, add_special_tokens=False)
        if not target:
            continue
        ids = torch.tensor([prompt + target])
        with torch.no_grad():
            logits = lm(ids).logits[0, len(prompt) - 1 : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        nll -= float(logprobs[torch.arange(len(target)), torch.tensor(target)].sum())
        count += len(target)
    return math.exp(nll / count) if count else None


def live_stats(rows: list[Any]) -> dict[str, Any]:
    """Per version, from a deployment's prediction records: count, failures, latency and tokens/s."""
    by_version: dict[str, list[Any]] = {}
    for rec in rows:
        by_version.setdefault(rec.version or "?", []).append(rec)
    out: dict[str, Any] = {}
    for version, recs in by_version.items():
        done = [r for r in recs if r.status.value == "succeeded"]
        times = [float(r.metrics["predict_time"]) * 1000 for r in done if "predict_time" in r.metrics]
        totals = [float(r.metrics["total_time"]) * 1000 for r in done if "total_time" in r.metrics]
        tokens = [
            (r.metrics["output_token_count"], r.metrics["predict_time"])
            for r in done
            if r.metrics.get("output_token_count") and r.metrics.get("predict_time")
        ]
        out[version] = {
            "predictions": len(recs),
            "succeeded": len(done),
            "failed": sum(r.status.value == "failed" for r in recs),
            "canceled": sum(r.status.value == "canceled" for r in recs),
            "releases": sorted({r.release for r in recs if r.release is not None}),
            "predict_time_ms": {"p50": _round(percentile(times, 0.5)), "p95": _round(percentile(times, 0.95))},
            "total_time_ms": {"p50": _round(percentile(totals, 0.5)), "p95": _round(percentile(totals, 0.95))},
            "output_tokens_per_s": _round(sum(t for t, _ in tokens) / sum(s for _, s in tokens)) if tokens else None,
        }
    return out


def _round(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(float(x), digits)
