"""What int8 and int4 cost in quality, on the built-in demo model (trained weights: its argmax means something).

    .venv/bin/python benchmarks/quality.py                 # this CPU's kernels; prints JSON
    .venv/bin/python benchmarks/quality.py --write-docs    # ... and the table in docs/benchmarks.md

Two measures, each precision run by cocina's engine (bf16, int8 and int4 on the native path with this CPU's
kernels, fp32 on the PyTorch path as the reference):

- **top-1 agreement with bf16 over 1,000 greedy steps**: bf16 generates greedily (EOS ignored) from 8 questions,
  125 tokens each; every other precision reads the same tokens (teacher forcing) and we count the steps where its
  most likely next token is the one bf16 chose.
- **perplexity on held-out text**: ``benchmarks/data/demo_heldout_es.txt``, Spanish text in the demo model's
  domain written for this measurement (the model never saw it in training), in windows of the model's 512
  positions; exp of the mean negative log-likelihood of each next token. The demo model is small and trained
  to memorize its corpus (final training loss 0.07), so on new text its perplexity is very high (worse than
  uniform over its 3,187 tokens: it is confidently wrong); the perplexity of 1,022 tokens of a training document
  is reported next to it, where the model is sharp and a precision's loss shows plainly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cocina.demo import demo_model_dir, format_prompt  # noqa: E402
from cocina.engine.block_manager import BlockManager  # noqa: E402
from cocina.engine.config import EngineConfig  # noqa: E402
from cocina.engine.llm_engine import LLMEngine  # noqa: E402
from cocina.engine.model_runner import ModelRunner  # noqa: E402
from cocina.engine.scheduler import ScheduledSeq, SchedulerOutput  # noqa: E402
from cocina.engine.sequence import SamplingParams, Sequence  # noqa: E402

HELDOUT = ROOT / "benchmarks" / "data" / "demo_heldout_es.txt"
TRAINING_TEXT = "seed_1_c59dc01f8fdcb576.txt"  # one of the demo corpus's documents
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- engine-quality:start -->", "<!-- engine-quality:end -->"
QUESTIONS = (
    "Dime un producto de limpieza que blanquee la ropa",
    "¿Qué es Replicate?",
    "¿Qué es un despliegue?",
    "¿Cuánto cuesta alojar Llama 3 70b?",
    "¿Qué producto uso para limpiar los cristales?",
    "¿Qué ventajas tiene desplegar en el borde?",
    "¿Qué es la lejía?",
    "¿Cómo se despliega un modelo con Cog?",
)
PRECISIONS = {
    "fp32": {"dtype": "float32"},
    "bf16": {"dtype": "bfloat16"},
    "int8": {"dtype": "bfloat16", "quantize": "int8"},
    "int4": {"dtype": "bfloat16", "quantize": "int4"},
}


def teacher_forced_logprobs(runner: ModelRunner, tokens: list[int], first: int) -> torch.Tensor:
    """log-softmax of the next token after each of tokens[first-1:-1], one decode step per token: [n, V]."""
    bm = BlockManager(runner.num_kv_blocks, runner.block_size, enable_prefix_caching=False)
    seq = Sequence(tokens[:first], SamplingParams())
    bm.allocate(seq)
    rows = [runner.run(SchedulerOutput([ScheduledSeq(seq, first)], [], first))[0]]
    seq.num_computed_tokens = first
    for t in tokens[first:-1]:
        seq.append_token(t)
        bm.may_append(seq)
        rows.append(runner.run(SchedulerOutput([ScheduledSeq(seq, 1)], [], 1))[0])
        seq.num_computed_tokens += 1
    bm.deallocate(seq)
    return torch.log_softmax(torch.stack(rows).float(), dim=-1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps-per-question", type=int, default=125)
    ap.add_argument("--kernels", default=None, help="kernel variant for the native path (default: auto)")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)
    path = demo_model_dir()
    from transformers import AutoTokenizer

    tok: Any = AutoTokenizer.from_pretrained(path)
    from cocina.demo import demo_corpus_dir

    texts = {
        "heldout": tok.encode(HELDOUT.read_text(encoding="utf-8")),
        "training": tok.encode((demo_corpus_dir() / TRAINING_TEXT).read_text(encoding="utf-8"))[:1022],
    }
    engines = {
        name: LLMEngine.from_pretrained(
            path, EngineConfig(device="cpu", kv_cache_bytes=64 << 20, cpu_kernels=args.kernels, **kw)  # type: ignore[arg-type]
        )
        for name, kw in PRECISIONS.items()
    }
    result: dict[str, Any] = {
        "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": platform.processor() or platform.machine(),
        "kernels": {name: e.runner.kernel_report() for name, e in engines.items()},
        "heldout_tokens": len(texts["heldout"]),
        "precisions": {},
    }
    # bf16's greedy trajectories
    prompts = [tok.encode(format_prompt(q)) for q in QUESTIONS]
    outs = engines["bf16"].generate(
        prompts, SamplingParams(max_tokens=args.steps_per_question, temperature=0.0, ignore_eos=True)
    )
    trajectories = [(p, o.token_ids) for p, o in zip(prompts, outs, strict=True)]
    steps = sum(len(o) for _, o in trajectories)
    window = engines["bf16"].max_model_len
    for name, engine in engines.items():
        agree = 0
        for prompt, gen in trajectories:
            lp = teacher_forced_logprobs(engine.runner, prompt + gen, len(prompt))
            agree += int((lp.argmax(dim=-1) == torch.tensor(gen)).sum())
        entry: dict[str, Any] = {
            "weights_MB": round(engine.runner.weight_bytes() / 1e6, 2),
            "top1_agreement_with_bf16": agree / steps,
            "greedy_steps": steps,
        }
        for label, ids in texts.items():
            nll, count = 0.0, 0
            for start in range(0, len(ids) - 1, window - 1):
                chunk = ids[start : start + window]
                if len(chunk) < 2:
                    break
                lp = teacher_forced_logprobs(engine.runner, chunk, 1)
                nll -= float(lp.gather(1, torch.tensor(chunk[1:])[:, None]).sum())
                count += len(chunk) - 1
            entry[f"{label}_perplexity"] = math.exp(nll / count)
            entry[f"{label}_tokens_scored"] = count
        result["precisions"][name] = entry
        print(json.dumps({name: result["precisions"][name]}), file=sys.stderr, flush=True)
    for label in texts:
        base = result["precisions"]["bf16"][f"{label}_perplexity"]
        for entry in result["precisions"].values():
            entry[f"{label}_perplexity_vs_bf16"] = entry[f"{label}_perplexity"] / base
    result["load_average"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(result)
    return result


def write_docs(r: dict[str, Any]) -> None:
    """The quality table, in its own marked block of docs/benchmarks.md (inside the engine section's area)."""
    rows = [
        "### Quality of int8 and int4 (benchmarks/quality.py)",
        "",
        f"Command: `{r['command'].strip()}`, {r['date']}. The built-in demo model (GPT-2, 4 layers, trained "
        f"weights). Top-1 agreement: {r['precisions']['bf16']['greedy_steps']} greedy steps of bf16 from 8 "
        f"questions, every precision teacher-forced on them. Perplexity: {r['heldout_tokens']} tokens of "
        "held-out Spanish text (`benchmarks/data/demo_heldout_es.txt`, never seen in training).",
        "",
        "| precision | weights | top-1 agreement with bf16 | held-out perplexity (vs bf16) "
        "| training-text perplexity (vs bf16) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, p in r["precisions"].items():
        rows.append(
            f"| {name} | {p['weights_MB']:.1f} MB | {100 * p['top1_agreement_with_bf16']:.1f}% | "
            f"{p['heldout_perplexity']:,.0f} ({p['heldout_perplexity_vs_bf16']:.3f}x) | "
            f"{p['training_perplexity']:.3f} ({p['training_perplexity_vs_bf16']:.3f}x) |"
        )
    rows += [
        "",
        "The demo model memorized its small corpus (final training loss 0.07): on new text it is confidently wrong "
        "(perplexity above its vocabulary of 3,187), so the held-out column mostly shows that; the training-text "
        "column (1,022 tokens of one of its corpus documents) shows each precision's loss where the model is sharp.",
    ]
    kernels = r["kernels"]
    rows += ["", "Kernels: " + "; ".join(f"{n}: {k['linear layers']}" for n, k in kernels.items()) + "."]
    section = "\n".join([START, *rows, END])
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOCS.write_text(text)


if __name__ == "__main__":
    main()
