"""Engine benchmark: sequential ``model.generate`` vs transformers ``generate_batch`` vs the cocina engine.

One process, one run, the same random-weight model and the same requests for every system::

    .venv/bin/python benchmarks/engine.py                       # CPU, GPT-2-small shape, bf16, 32 requests
    .venv/bin/python benchmarks/engine.py --write-docs          # ... and the table in docs/benchmarks.md
    .venv/bin/python benchmarks/engine.py --device cuda --arch falcon-rw-1b-shape --concurrency 64

Loads (EOS ignored everywhere, greedy):

- ``uniform``: N requests of 32 prompt tokens and 64 output tokens, all submitted at once;
- ``mixed``: N requests, prompts of 16-512 tokens and outputs of 16-256 (seeded);
- ``prefix``: N requests sharing a 256-token system prefix (plus 16 own tokens, 64 outputs);
- ``arrival``: N-1 requests decoding, then one more arrives: its time to first token against the time
  its prefill takes alone;
- ``single``: one request alone (32 prompt, 128 output): decode speed as a fraction of the limit set by
  the memory bandwidth (weight bytes read per token / bandwidth measured here with a large tensor read).

Sequential ``generate`` is timed on the first ``--sequential-requests`` requests of each load (its rate
does not depend on how many requests follow). Prints one JSON object with every figure and ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cocina.engine.config import EngineConfig  # noqa: E402
from cocina.engine.llm_engine import AsyncLLMEngine, LLMEngine, TokenEvent  # noqa: E402
from cocina.engine.sequence import SamplingParams  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- engine-benchmark:start -->", "<!-- engine-benchmark:end -->"


# -- set-up ------------------------------------------------------------------------------------------------
def make_model(arch: str, cache: Path) -> Path:
    """A random-weight model of the requested shape, saved once (fp32) and reused."""
    from cocina.models.tiny import falcon_rw_1b_config, gpt2_small_config, make_model_from_config

    out = cache / arch
    if not (out / "config.json").exists():
        cfg = gpt2_small_config() if arch == "gpt2-small" else falcon_rw_1b_config()
        make_model_from_config(cfg, out, seed=0, dtype=torch.float32)
    return out


def measure_bandwidth(device: torch.device, nbytes: int = 1 << 30) -> float:
    """Memory read bandwidth in bytes/s: the best of several full reads (sums) of a large tensor."""
    x = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        t = time.perf_counter()
        x.sum()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    del x
    return nbytes / best


def weight_bytes_per_token(model: Any) -> int:
    """Bytes of weights read to decode one token: the whole model (packed int8 weights included, a tied
    LM head once) except the embedding tables that are only looked up (token and position rows)."""
    from cocina.engine.quantize import model_memory_bytes

    head = model.get_output_embeddings()
    head_w = getattr(head, "weight", None)
    if head_w is None:
        head_w = getattr(head, "weight_t", None)
    head_ptr = head_w.data_ptr() if isinstance(head_w, torch.Tensor) else None
    lookups = sum(
        m.weight.numel() * m.weight.element_size()
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and m.weight.data_ptr() != head_ptr
    )
    return model_memory_bytes(model) - lookups


def _layer_kinds(engine: LLMEngine) -> str:
    """Which classes run the model's linear layers and attention (cocina's kernels or PyTorch's)."""
    kinds = sorted({type(m).__name__ for m in engine.runner.model.modules() if "Linear" in type(m).__name__})
    attention = "cocina kernel" if engine.runner.paged.kernels is not None else "PyTorch"
    return f"linear layers: {', '.join(kinds)}; decode attention: {attention}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_loads(n: int, vocab: int, seed: int = 0) -> dict[str, list[tuple[list[int], int]]]:
    """Each load: a list of (prompt token ids, output tokens)."""
    g = torch.Generator().manual_seed(seed)

    def ids(k: int) -> list[int]:
        return torch.randint(3, vocab, (k,), generator=g).tolist()

    uniform = [(ids(32), 64) for _ in range(n)]
    mixed = [
        (ids(int(torch.randint(16, 513, (1,), generator=g))), int(torch.randint(16, 257, (1,), generator=g)))
        for _ in range(n)
    ]
    system = ids(256)
    prefix = [(system + ids(16), 64) for _ in range(n)]
    return {"uniform": uniform, "mixed": mixed, "prefix": prefix}


# -- the three systems ---------------------------------------------------------------------------------------
def run_sequential(model: Any, load: list[tuple[list[int], int]], device: torch.device) -> dict[str, Any]:
    """The seed's way: ``model.generate`` one request at a time."""
    total = 0
    t = time.perf_counter()
    for prompt, out in load:
        ids = torch.tensor([prompt], device=device)
        with torch.inference_mode():
            gen = model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=out, do_sample=False, pad_token_id=1
            )
        total += gen.shape[1] - ids.shape[1]
    _sync(device)
    dt = time.perf_counter() - t
    return {"requests": len(load), "output_tokens": total, "seconds": dt, "tok_s": total / dt}


def run_generate_batch(
    model: Any, load: list[tuple[list[int], int]], num_blocks: int, max_batch_tokens: int
) -> dict[str, Any]:
    """transformers' continuous batching, with an explicit cache size (else it sizes it from host RAM).

    ``generate_batch`` takes one ``max_new_tokens`` for all requests; a load with different output lengths
    goes through the same manager ``generate_batch`` uses, with each request's own ``max_new_tokens``.
    """
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    lengths = {out for _, out in load}
    gc = GenerationConfig(max_new_tokens=max(lengths), do_sample=False, eos_token_id=None, pad_token_id=1)
    cb = ContinuousBatchingConfig(num_blocks=num_blocks, max_batch_tokens=max_batch_tokens)
    t = time.perf_counter()
    if len(lengths) == 1:
        res = model.generate_batch([p for p, _ in load], generation_config=gc, continuous_batching_config=cb)
        total = sum(len(r.generated_tokens) for r in res.values())
    else:
        total = 0
        with model.continuous_batching_context_manager(
            generation_config=gc, continuous_batching_config=cb, block=True, timeout=5
        ) as manager:
            for i, (prompt, out) in enumerate(load):
                manager.add_request(prompt, request_id=f"r{i}", max_new_tokens=out)
            done = 0
            while done < len(load):
                r = manager.get_result(timeout=1)
                if r is not None and r.is_finished():
                    done += 1
                    total += len(r.generated_tokens)
    dt = time.perf_counter() - t
    return {
        "requests": len(load),
        "output_tokens": total,
        "seconds": dt,
        "tok_s": total / dt,
        "num_blocks": num_blocks,
        "api": "generate_batch" if len(lengths) == 1 else "continuous_batching_context_manager",
    }


def _guard(fn: Any, *args: Any) -> dict[str, Any]:
    """Run one baseline; a failure is recorded in the results instead of ending the whole run."""
    try:
        result: dict[str, Any] = fn(*args)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return result


def run_cocina(engine: LLMEngine, load: list[tuple[list[int], int]]) -> dict[str, Any]:
    """All requests submitted at once to the synchronous engine, stepped to completion."""
    before = engine.stats()
    t = time.perf_counter()
    outs = engine.generate(
        [p for p, _ in load],
        [SamplingParams(max_tokens=o, temperature=0.0, ignore_eos=True) for _, o in load],
    )
    dt = time.perf_counter() - t
    after = engine.stats()
    total = sum(len(o.token_ids) for o in outs)
    prompt = after.prompt_tokens - before.prompt_tokens
    computed = after.computed_prompt_tokens - before.computed_prompt_tokens
    queries = after.prefix_cache_queries - before.prefix_cache_queries
    hits = after.prefix_cache_hits - before.prefix_cache_hits
    return {
        "requests": len(load),
        "output_tokens": total,
        "seconds": dt,
        "tok_s": total / dt,
        "steps": after.num_steps - before.num_steps,
        "prompt_tokens": prompt,
        "computed_prompt_tokens": computed,
        "prompt_compute_saved": 1 - computed / prompt if prompt else 0.0,
        "prefix_cache_hit_rate": hits / queries if queries else 0.0,
        "preemptions": after.num_preemptions - before.num_preemptions,
    }


def run_single(engine: LLMEngine, prompt: list[int], out: int) -> dict[str, Any]:
    """One request alone; decode rate measured between its first and last token (prefill excluded)."""
    engine.add_request(prompt, SamplingParams(max_tokens=out, temperature=0.0, ignore_eos=True), "single")
    times: list[float] = []
    t0 = time.perf_counter()
    while engine.has_unfinished():
        for o in engine.step():
            times.extend(time.perf_counter() for _ in o.token_ids)
    decode_s = times[-1] - times[0]
    return {
        "output_tokens": len(times),
        "ttft_s": times[0] - t0,
        "decode_tok_s": (len(times) - 1) / decode_s,
    }


async def run_arrival(
    engine: LLMEngine, background: int, prompt_len: int, bg_prompts: list[list[int]], vocab: int
) -> dict[str, Any]:
    """TTFT of a request arriving while ``background`` others decode, against its prefill alone.

    Every timed request has a fresh random prompt, so the prefix cache never shortens its prefill.
    """
    g = torch.Generator().manual_seed(1234 + prompt_len)

    def fresh() -> list[int]:
        return torch.randint(3, vocab, (prompt_len,), generator=g).tolist()

    aengine = AsyncLLMEngine(engine)

    async def first_token(p: list[int], max_tokens: int) -> float:
        t = time.perf_counter()
        async for ev in aengine.generate(p, SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)):
            if isinstance(ev, TokenEvent):
                dt = time.perf_counter() - t
                break
        return dt

    async def drained() -> None:
        # Cancelled streams abort before the engine's next step; wait for that so later loads start clean.
        while engine.has_unfinished():
            await asyncio.sleep(0.01)

    try:
        alone = [await first_token(fresh(), 1) for _ in range(3)]
        started = asyncio.Event()
        counts = [0] * background

        async def decode(i: int) -> None:
            params = SamplingParams(max_tokens=10_000, temperature=0.0, ignore_eos=True)
            async for ev in aengine.generate(bg_prompts[i], params):
                if isinstance(ev, TokenEvent):
                    counts[i] += 1
                    if min(counts) >= 3:
                        started.set()

        tasks = [asyncio.ensure_future(decode(i)) for i in range(background)]
        await started.wait()
        loaded = []
        for _ in range(3):
            loaded.append(await first_token(fresh(), 1))
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await drained()
    finally:
        aengine.shutdown()
    a, b = statistics.median(alone), statistics.median(loaded)
    return {
        "prompt_tokens": prompt_len,
        "background_decoding": background,
        "prefill_alone_s": a,
        "ttft_while_decoding_s": b,
        "ratio": b / a,
    }


# -- main --
def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["gpt2-small", "falcon-rw-1b-shape"], default="gpt2-small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default: bfloat16")
    ap.add_argument("--quantize", default=None, help="also run cocina with this quantization (int8 on CPU)")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--loads", default="uniform,mixed,prefix,arrival,single")
    ap.add_argument("--sequential-requests", type=int, default=8)
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers baselines")
    ap.add_argument("--kv-cache-mb", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/cocina-bench"))
    ap.add_argument("--write-docs", action="store_true", help="write the table to docs/benchmarks.md")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype_name = args.dtype or "bfloat16"
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype_name]
    loads_wanted = args.loads.split(",")
    n = args.concurrency
    path = make_model(args.arch, Path(args.cache_dir))
    from transformers import AutoModelForCausalLM

    hf: Any = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    hf = hf.to(device).eval()
    hf.generation_config.eos_token_id = None  # EOS ignored, as in the engine runs
    vocab = int(hf.config.vocab_size)
    loads = make_loads(n, min(vocab, 1000))

    # Enough KV cache for the mixed load without preemption (GPT-2-small: 37 KB/token in bf16).
    kv_bytes = (args.kv_cache_mb or (16384 if device.type == "cuda" else 1024)) * 2**20
    max_batched = 4096 if device.type == "cuda" else 1024
    cfg = EngineConfig(
        dtype=dtype_name,
        device=args.device,
        kv_cache_bytes=kv_bytes,
        max_num_seqs=max(64, n),
        max_num_batched_tokens=max_batched,
    )
    engine = LLMEngine.from_pretrained(path, cfg)
    engine.generate([[5, 6, 7]], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))  # warm up

    result: dict[str, Any] = {
        "command": "python benchmarks/engine.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "arch": args.arch,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cpu_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "dtype": dtype_name,
        "concurrency": n,
        "cocina_memory": engine.memory_report().describe(),
        "cocina_layers": _layer_kinds(engine),
        "loads": {},
    }
    bw = measure_bandwidth(device)
    wbytes = weight_bytes_per_token(engine.runner.model)
    result["bandwidth_GBps"] = bw / 1e9
    result["weight_bytes_per_token"] = wbytes
    result["bandwidth_limit_tok_s"] = bw / wbytes

    num_blocks_hf = 64 if device.type == "cpu" else 512
    for name in ("uniform", "mixed", "prefix"):
        if name not in loads_wanted:
            continue
        load = loads[name]
        entry: dict[str, Any] = {}
        if not args.no_hf:
            entry["sequential_generate"] = _guard(run_sequential, hf, load[: args.sequential_requests], device)
            entry["generate_batch"] = _guard(run_generate_batch, hf, load, num_blocks_hf, max_batched)
        entry["cocina"] = run_cocina(engine, load)
        c = entry["cocina"]["tok_s"]
        for key, other in (("sequential", "sequential_generate"), ("generate_batch", "generate_batch")):
            if "tok_s" in entry.get(other, {}):
                entry[f"cocina_vs_{key}"] = c / entry[other]["tok_s"]
        result["loads"][name] = entry
        print(json.dumps({name: entry}), file=sys.stderr, flush=True)

    if args.quantize and "uniform" in loads_wanted:
        qcfg = EngineConfig(
            dtype="float32" if args.quantize == "int8" else dtype_name,
            device=args.device,
            kv_cache_bytes=kv_bytes,
            max_num_seqs=max(64, n),
            quantize=args.quantize,
        )
        qengine = LLMEngine.from_pretrained(path, qcfg)
        qengine.generate([[5, 6, 7]], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
        q = run_cocina(qengine, loads["uniform"])
        q["memory"] = qengine.memory_report().describe()
        q["layers"] = _layer_kinds(qengine)
        q["vs_cocina_" + dtype_name] = q["tok_s"] / result["loads"]["uniform"]["cocina"]["tok_s"]
        if "single" in loads_wanted:
            qs = run_single(qengine, loads["uniform"][0][0], 128)
            qbytes = weight_bytes_per_token(qengine.runner.model)
            qs["weight_bytes_per_token"] = qbytes
            qs["fraction_of_bandwidth_limit"] = qs["decode_tok_s"] / (bw / qbytes)
            q["single"] = qs
        result["loads"]["uniform"]["cocina_" + args.quantize] = q
        print(json.dumps({"quantized": q}), file=sys.stderr, flush=True)
        del qengine

    if "arrival" in loads_wanted:
        bg = [p for p, _ in loads["uniform"][: n - 1]]
        arrivals = {}
        for plen in (32, 256):
            arrivals[str(plen)] = asyncio.run(run_arrival(engine, n - 1, plen, bg, min(vocab, 1000)))
        result["loads"]["arrival"] = arrivals
        print(json.dumps({"arrival": arrivals}), file=sys.stderr, flush=True)

    if "single" in loads_wanted:
        s = run_single(engine, loads["uniform"][0][0], 128)
        s["fraction_of_bandwidth_limit"] = s["decode_tok_s"] / result["bandwidth_limit_tok_s"]
        seq1 = {} if args.no_hf else _guard(run_sequential, hf, [(loads["uniform"][0][0], 128)], device)
        if "tok_s" in seq1:
            s["sequential_generate_tok_s"] = seq1["tok_s"]
            s["sequential_fraction_of_bandwidth_limit"] = (
                s["sequential_generate_tok_s"] / result["bandwidth_limit_tok_s"]
            )
        result["loads"]["single"] = s

    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(result)
    return result


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def write_docs(r: dict[str, Any]) -> None:
    """Replace the engine section of docs/benchmarks.md with this run's table."""
    L = r["loads"]
    rows = [
        f"Command: `{r['command'].strip()}` — {r['arch']}, random weights, {r['dtype']}, {r['device']} "
        f"({r['device_name'] or 'cpu'}, {r['cpu_threads']} threads), concurrency {r['concurrency']}, "
        f"load average at start {r['load_average']:.2f}. Measured memory bandwidth "
        f"{r['bandwidth_GBps']:.1f} GB/s; weights read per token {r['weight_bytes_per_token'] / 1e6:.0f} MB.",
        "",
        "| load | sequential `generate` tok/s | `generate_batch` tok/s | cocina tok/s "
        "| vs sequential | vs generate_batch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("uniform", "mixed", "prefix"):
        if name not in L:
            continue
        e = L[name]
        seq = e.get("sequential_generate", {}).get("tok_s")
        gb = e.get("generate_batch", {}).get("tok_s")
        rows.append(
            f"| {name} | {_f(seq) if seq else '-'} | {_f(gb) if gb else '-'} | {_f(e['cocina']['tok_s'])} | "
            f"{_ratio(e.get('cocina_vs_sequential'))} | {_ratio(e.get('cocina_vs_generate_batch'))} |"
        )
    rows.append("")
    if r.get("cocina_layers"):
        rows.append(f"cocina ran with {r['cocina_layers']}.")
        rows.append("")
    u = L.get("uniform", {})
    for key, q in u.items():
        if key.startswith("cocina_") and isinstance(q, dict):
            ratio = next(v for k, v in q.items() if k.startswith("vs_cocina_"))
            rows.append(
                f"- `--quantize {key.removeprefix('cocina_')}`: {_f(q['tok_s'])} tok/s on the uniform load, "
                f"{_f(ratio, 2)}x cocina {r['dtype']}."
            )
            if "single" in q:
                rows.append(
                    f"  Batch 1: {_f(q['single']['decode_tok_s'])} tok/s, "
                    f"{_f(100 * q['single']['fraction_of_bandwidth_limit'], 0)}% of its bandwidth limit."
                )
    if "prefix" in L:
        c = L["prefix"]["cocina"]
        rows.append(
            f"- Shared 256-token prefix: {c['computed_prompt_tokens']} of {c['prompt_tokens']} prompt tokens "
            f"computed ({_f(100 * c['prompt_compute_saved'], 0)}% saved), prefix-cache hit rate "
            f"{_f(100 * c['prefix_cache_hit_rate'], 0)}%."
        )
    for plen, a in L.get("arrival", {}).items():
        rows.append(
            f"- A {plen}-token request arriving while {a['background_decoding']} others decode: first token "
            f"after {a['ttft_while_decoding_s'] * 1000:.0f} ms vs {a['prefill_alone_s'] * 1000:.0f} ms alone "
            f"({_f(a['ratio'], 2)}x)."
        )
    if "single" in L:
        s = L["single"]
        line = (
            f"- One request alone: {_f(s['decode_tok_s'])} tok/s decode = "
            f"{_f(100 * s['fraction_of_bandwidth_limit'], 0)}% of the bandwidth limit "
            f"({_f(r['bandwidth_limit_tok_s'])} tok/s)"
        )
        if "sequential_generate_tok_s" in s:
            line += (
                f"; `model.generate`: {_f(s['sequential_generate_tok_s'])} tok/s "
                f"({_f(100 * s['sequential_fraction_of_bandwidth_limit'], 0)}%)"
            )
        rows.append(line + ".")
    rows += ["", *_targets_table(r)]
    section = "\n".join([START, "## Engine", "", *rows, END])
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOCS.write_text(text)


def _targets_table(r: dict[str, Any]) -> list[str]:
    """Issue #3's figures for this run, measured against their targets."""
    L = r["loads"]
    out = ["Targets (issue #3):", "", "| target | measured | met |", "| --- | ---: | :---: |"]

    def add(name: str, value: float | None, shown: str, ok: bool | None) -> None:
        if value is not None:
            out.append(f"| {name} | {shown} | {'**yes**' if ok else '**no**'} |")

    u = L.get("uniform", {})
    seq, gb = u.get("cocina_vs_sequential"), u.get("cocina_vs_generate_batch")
    add("32 requests: >= 8x sequential `generate`", seq, _ratio(seq), seq is not None and seq >= 8)
    add("32 requests: >= 1.3x `generate_batch`", gb, _ratio(gb), gb is not None and gb >= 1.3)
    for key, q in u.items():
        if key.startswith("cocina_") and isinstance(q, dict):
            ratio = next(v for k, v in q.items() if k.startswith("vs_cocina_"))
            name = f"`--quantize {key.removeprefix('cocina_')}`: >= 1.6x cocina {r['dtype']}"
            add(name, ratio, _ratio(ratio), ratio >= 1.6)
    a = L.get("arrival", {}).get("32")
    if a:
        add("arriving request's first token <= 3x its prefill alone", a["ratio"], _ratio(a["ratio"]), a["ratio"] <= 3)
    if "prefix" in L:
        saved = L["prefix"]["cocina"]["prompt_compute_saved"]
        add("shared prefix: prompt tokens computed drop >= 50%", saved, f"{100 * saved:.0f}%", saved >= 0.5)
    if "single" in L:
        frac = L["single"]["fraction_of_bandwidth_limit"]
        add("one request: >= 60% of the bandwidth limit (aim)", frac, f"{100 * frac:.0f}%", frac >= 0.6)
    return out


if __name__ == "__main__":
    main()
