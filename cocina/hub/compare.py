"""`compare`: the same examples through each version of a deployment's current release, measured side by side.

Examples run one at a time (c=1, so latencies are not each other's queueing), and for each example the versions
take turns going first, so a slow start or a warming cache does not favour one version. Each answer is a real
prediction through serving's one admission (recorded with `source="compare"`, outside the deployment's live
stats). Quality is scored in `cocina.hub.quality`; a language-model version on cocina's engine also gets the
perplexity of the references, computed beside the server's loop with transformers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cocina.hub.deployments import Split
from cocina.hub.quality import Answer, VersionResults, compare, reference_perplexity
from cocina.serving.errors import InvalidRequest, ServingError

if TYPE_CHECKING:
    from cocina.hub.hub import Hub
    from cocina.serving import Serving
    from cocina.serving.gate import Principal

MAX_EXAMPLES = 10_000
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Example:
    input: dict[str, Any]
    reference: str | None = None


def parse_examples(lines: Iterable[str], where: str = "the data") -> list[Example]:
    """JSON Lines: each line `{"input": {...}, "reference": "..."}` (reference optional), or the input's fields
    themselves beside an optional `reference`. Blank lines are skipped; a bad line raises `ValueError` naming it."""
    examples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}, line {number}: not JSON ({exc.msg})") from None
        examples.append(example_of(item, f"{where}, line {number}"))
    if not examples:
        raise ValueError(f"{where} has no examples")
    return examples


def example_of(item: Any, where: str) -> Example:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: an example is a JSON object, not {type(item).__name__}")
    reference = item.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise ValueError(f"{where}: `reference` must be a string")
    if "input" in item:
        if not isinstance(item["input"], dict):
            raise ValueError(f"{where}: `input` must be an object of the model's inputs")
        return Example(item["input"], reference)
    inputs = {k: v for k, v in item.items() if k != "reference"}
    if not inputs:
        raise ValueError(f"{where}: the example has no input")
    return Example(inputs, reference)


def _text(output: Any) -> str:
    """An output as text: an iterator's pieces joined, anything else as JSON unless already a string."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(isinstance(x, str) for x in output):
        return "".join(output)
    return json.dumps(output)


async def _answer(
    serving: Serving, ref: str, inp: dict[str, Any], timeout_s: float, principal: Principal | None = None
) -> tuple[Answer, str | None]:
    from cocina.serving.admission import AdmissionRequest

    started = time.perf_counter()
    try:
        req = AdmissionRequest(surface="replicate", input=dict(inp), model=ref, principal=principal, source="compare")
        admitted = await serving.admit(req)
    except ServingError as exc:
        return Answer(None, time.perf_counter() - started, ok=False), f"refused: {exc}"
    rec = await serving.wait(admitted.record.id, timeout_s) or admitted.record
    latency = time.perf_counter() - started
    if not rec.status.is_terminal:
        serving.cancel(rec.id)
        return Answer(None, latency, ok=False), f"no answer within {timeout_s:g} s"
    if rec.status.value != "succeeded":
        return Answer(None, latency, ok=False), rec.error or rec.status.value
    metrics = rec.metrics or {}
    tokens = metrics.get("output_token_count")
    return (
        Answer(
            _text(rec.output),
            latency,
            ok=True,
            predict_time_s=metrics.get("predict_time"),
            output_tokens=int(tokens) if tokens else None,
        ),
        None,
    )


async def run_compare(
    hub: Hub,
    serving: Serving,
    name: str,
    examples: list[Example],
    *,
    timeout_s: float = 300.0,
    perplexity: bool = True,
    progress: Progress | None = None,
    principal: Principal | None = None,
) -> dict[str, Any]:
    """The report of `cocina deployments compare` (see the module's docstring). `principal` (an API key's) is
    whom the predictions are admitted for: the guard checks, limits and audits them as that key's."""
    if not examples:
        raise InvalidRequest("give at least one example", param="examples")
    if len(examples) > MAX_EXAMPLES:
        raise InvalidRequest(f"at most {MAX_EXAMPLES} examples per comparison", param="examples")
    record = hub.get_deployment(name)
    release = record.current_release
    assert release is not None  # a deployment always has a release
    split = sorted(
        (Split(v["version"], int(v["weight"])) for v in release.configuration["versions"]), key=lambda s: -s.weight
    )
    results = [VersionResults(s.version, s.weight) for s in split]
    errors: dict[str, list[str]] = {s.version: [] for s in split}
    say = progress or (lambda _item: None)
    total = len(examples) * len(split)
    done = 0
    for i, ex in enumerate(examples):
        for k in range(len(split)):
            j = (i + k) % len(split)  # each version goes first in turn
            answer, error = await _answer(serving, f"{record.model}:{split[j].version}", ex.input, timeout_s, principal)
            results[j].answers.append(answer)
            if error is not None and len(errors[split[j].version]) < 5:
                errors[split[j].version].append(f"example {i + 1}: {error}")
            done += 1
            say({"done": done, "total": total})
    if perplexity and any(ex.reference for ex in examples):
        for res in results:
            spec = hub.spec(hub.get_version(record.model, res.version))
            if spec.language_model and spec.engine is not None and spec.engine.model:
                say({"progress": f"perplexity of the references under {res.version[:12]}"})
                rows = [{"input": ex.input, "reference": ex.reference} for ex in examples]
                res.perplexity = await asyncio.to_thread(reference_perplexity, spec.engine.model, rows)
    report = compare(results, [ex.reference for ex in examples])
    for version, messages in errors.items():
        report["versions"][version]["first_errors"] = messages
    return {"deployment": name, "model": record.model, "release": release.number, **report}
