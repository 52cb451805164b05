"""Engine benchmark: cocina's engine against sequential ``model.generate``, transformers' ``generate_batch`` and
llama.cpp's own ``llama-bench``, side by side in one run, on the same random-weight model::

    .venv/bin/python benchmarks/engine.py --quantize int8,int4            # CPU, GPT-2-small shape, bf16, 32 requests
    .venv/bin/python benchmarks/engine.py --quantize int8,int4 --write-docs   # ... and the tables in docs/benchmarks.md
    .venv/bin/python benchmarks/engine.py --device cuda --arch falcon-rw-1b-shape --concurrency 64

Loads (EOS ignored everywhere, greedy):

- ``uniform``: N requests of 32 prompt tokens and 64 output tokens, all submitted at once;
- ``mixed``: N requests, prompts of 16-512 tokens and outputs of 16-256 (seeded);
- ``prefix``: N requests sharing a 256-token system prefix (plus 16 own tokens, 64 outputs);
- ``arrival``: N-1 requests decoding, then one more arrives: its time to first token against the time
  its prefill takes alone;
- ``single``: one request alone (32 prompt, 128 output) for each precision (the dtype, then each ``--quantize``):
  decode speed as a fraction of the limit set by the memory bandwidth (weight bytes read per token / bandwidth
  measured here with a large tensor read), next to llama-bench's ``tg128`` on the same weights in GGUF (BF16,
  Q8_0 or Q4_0, from ``benchmarks/llama_cpp.py``, which builds llama.cpp when it is missing and says so);
- ``prefill``: a fresh 512-token prompt alone, next to llama-bench's ``pp512``.

With ``--kernel-paths`` (the default) batch 1 is also timed on the CPU's other kernel variants (no native bf16,
AVX2). Sequential ``generate`` is timed on the first ``--sequential-requests`` requests of each load (its rate
does not depend on how many requests follow). Prints one JSON object with every figure, the kernel each part
of the model ran, the CPU flags and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
sys.path.insert(0, str(ROOT / "benchmarks"))

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


def _cpu_flags() -> str:
    """The CPU flags that decide which kernels run (a figure holds only for the CPU it was measured on)."""
    from cocina.engine.cpu_kernels import VARIANTS, cpu_flags

    wanted = sorted({f for v in VARIANTS.values() for f in v.needs})
    return " ".join(f if f in cpu_flags() else f"-{f}" for f in wanted)


def run_prefill(engine: LLMEngine, prompt_len: int, vocab: int, reps: int = 3) -> dict[str, Any]:
    """A fresh ``prompt_len``-token prompt (no prefix-cache hit) alone: its time to first token, best of ``reps``."""
    g = torch.Generator().manual_seed(4321)
    best = float("inf")
    for i in range(reps):
        prompt = torch.randint(3, vocab, (prompt_len,), generator=g).tolist()
        engine.add_request(prompt, SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True), f"prefill-{i}")
        t = time.perf_counter()
        while engine.has_unfinished():
            engine.step()
        best = min(best, time.perf_counter() - t)
    return {"prompt_tokens": prompt_len, "seconds": best, "tok_s": prompt_len / best}


def run_llama_bench(model_dir: Path, gguf_type: str, threads: int) -> dict[str, Any]:
    """llama.cpp's own llama-bench (pp512, tg128) on the same weights converted to GGUF ``gguf_type``."""
    import llama_cpp

    gguf = llama_cpp.convert(model_dir, gguf_type)
    out = llama_cpp.bench(gguf, threads)
    out["gguf"] = gguf.name
    out["gguf_type"] = gguf_type
    # What one token reads: the file less its tables that are only looked up (GPT-2's position embeddings;
    # the tied token table is the output matrix too, so it is read).
    out["weight_bytes_per_token"] = llama_cpp.gguf_weight_bytes(gguf, skip=("position_embd",))
    return out


def _pairs(
    eng: LLMEngine, prompt: list[int], model_dir: Path, gguf_type: str, pairs: int, entry: dict[str, Any]
) -> dict[str, Any]:
    """Batch 1 against llama-bench's tg128 ``pairs`` times, alternating (the first pair is the run's own figures).

    This machine's memory bandwidth moves by a third from one minute to the next (other tenants of the host), and
    batch-1 decode follows it: a pair measured seconds apart shares the conditions, so the median of the pairs'
    ratios is the comparison that holds.
    """
    import llama_cpp

    gguf = llama_cpp.convert(model_dir, gguf_type)
    cocina = [entry["single"]["decode_tok_s"]]
    llama = [entry["llama_cpp"]["tg128"]]
    for _ in range(pairs - 1):
        llama.append(llama_cpp.bench(gguf, torch.get_num_threads(), n_prompt=0)["tg128"])
        cocina.append(run_single(eng, prompt, 128)["decode_tok_s"])
    ratios = sorted(c / t for c, t in zip(cocina, llama, strict=True))
    return {
        "cocina_tok_s": [round(c, 1) for c in cocina],
        "tg128_tok_s": [round(t, 1) for t in llama],
        "ratios": [round(r, 3) for r in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
    }


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


def run_single(engine: LLMEngine, prompt: list[int], out: int, reps: int = 3) -> dict[str, Any]:
    """One request alone; decode rate between its first and last token (prefill excluded), best of ``reps``.

    The best run is the one least disturbed by other processes on a shared machine; llama-bench's figure
    next to it is taken the same way (its best repetition).
    """
    best: dict[str, Any] = {}
    for rep in range(reps):
        engine.add_request(prompt, SamplingParams(max_tokens=out, temperature=0.0, ignore_eos=True), f"single-{rep}")
        times: list[float] = []
        t0 = time.perf_counter()
        while engine.has_unfinished():
            for o in engine.step():
                times.extend(time.perf_counter() for _ in o.token_ids)
        rate = (len(times) - 1) / (times[-1] - times[0])
        if rate > best.get("decode_tok_s", 0.0):
            best = {"output_tokens": len(times), "ttft_s": times[0] - t0, "decode_tok_s": rate}
    best["repetitions"] = reps
    return best


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
    ap.add_argument("--quantize", default=None, help="also run cocina with these quantizations: int8, int4 or both")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--loads", default="uniform,mixed,prefix,arrival,single,prefill")
    ap.add_argument(
        "--pairs",
        type=int,
        default=1,
        help="batch 1 against llama-bench's tg128 this many times, alternating; the median ratio is reported",
    )
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip llama.cpp's llama-bench (built when missing)")
    ap.add_argument("--kernel-paths", action=argparse.BooleanOptionalAction, default=True,
                    help="also time batch 1 on this CPU's other kernel variants (no native bf16, AVX2)")
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
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "arch": args.arch,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "cpu_threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "dtype": dtype_name,
        "concurrency": n,
        "cpu_flags": _cpu_flags(),
        "cocina_memory": engine.memory_report().describe(),
        "cocina_kernels": engine.runner.kernel_report(),
        "loads": {},
    }
    bw = measure_bandwidth(device)
    wbytes = engine.runner.weight_bytes_per_token()
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

    if "arrival" in loads_wanted:
        bg = [p for p, _ in loads["uniform"][: n - 1]]
        arrivals = {}
        for plen in (32, 256):
            arrivals[str(plen)] = asyncio.run(run_arrival(engine, n - 1, plen, bg, min(vocab, 1000)))
        result["loads"]["arrival"] = arrivals
        print(json.dumps({"arrival": arrivals}), file=sys.stderr, flush=True)

    # -- each precision at batch 1 and on a 512-token prompt, next to llama.cpp's own llama-bench -------------
    precisions = [dtype_name, *(q for q in (args.quantize or "").split(",") if q)]
    result["precisions"] = {}
    gguf_type = {"bfloat16": "BF16", "float32": "F32", "int8": "Q8_0", "int4": "Q4_0"}
    for prec in precisions:
        if prec == dtype_name:
            eng = engine
        else:
            eng = LLMEngine.from_pretrained(path, dataclasses.replace(cfg, quantize=prec))
            eng.generate([[5, 6, 7]], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
        entry = {"kernels": eng.runner.kernel_report(), "memory": eng.memory_report().describe()}
        if prec != dtype_name and "uniform" in loads_wanted:
            entry["uniform"] = run_cocina(eng, loads["uniform"])
            entry["uniform"]["vs_" + dtype_name] = (
                entry["uniform"]["tok_s"] / result["loads"]["uniform"]["cocina"]["tok_s"]
            )
        wb = eng.runner.weight_bytes_per_token()
        entry["weight_bytes_per_token"] = wb
        if "single" in loads_wanted:
            entry["single"] = run_single(eng, loads["uniform"][0][0], 128)
            entry["single"]["bandwidth_limit_tok_s"] = bw / wb
            entry["single"]["fraction_of_bandwidth_limit"] = entry["single"]["decode_tok_s"] / (bw / wb)
        if "prefill" in loads_wanted:
            entry["prefill_512"] = run_prefill(eng, 512, min(vocab, 1000))
        if device.type == "cpu" and not args.no_llama_cpp and prec in gguf_type:
            entry["llama_cpp"] = _guard(run_llama_bench, path, gguf_type[prec], torch.get_num_threads())
            lc = entry["llama_cpp"]
            if "tg128" in lc and "single" in entry:
                entry["vs_llama_cpp_tg128"] = entry["single"]["decode_tok_s"] / lc["tg128"]
                lc["tg128_fraction_of_bandwidth_limit"] = lc["tg128"] / (bw / lc["weight_bytes_per_token"])
            if "pp512" in lc and "prefill_512" in entry:
                entry["vs_llama_cpp_pp512"] = entry["prefill_512"]["tok_s"] / lc["pp512"]
            if "tg128" in lc and "single" in entry and args.pairs > 1:
                entry["tg128_pairs"] = _pairs(eng, loads["uniform"][0][0], path, gguf_type[prec], args.pairs, entry)
        result["precisions"][prec] = entry
        print(json.dumps({prec: entry}), file=sys.stderr, flush=True)
        if eng is not engine:
            del eng

    # -- the other kernel paths this CPU runs (no native bf16, AVX2), at batch 1 -----------------------------
    if device.type == "cpu" and "single" in loads_wanted and args.kernel_paths:
        from cocina.engine.cpu_kernels import runnable_variants

        result["kernel_paths"] = {}
        for variant in runnable_variants()[1:]:
            row: dict[str, Any] = {}
            for prec in precisions:
                vcfg = dataclasses.replace(cfg, cpu_kernels=variant, quantize=None if prec == dtype_name else prec)
                veng = LLMEngine.from_pretrained(path, vcfg)
                veng.generate([[5, 6, 7]], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
                single = run_single(veng, loads["uniform"][0][0], 128)
                wb = veng.runner.weight_bytes_per_token()
                row[prec] = {
                    "decode_tok_s": single["decode_tok_s"],
                    "fraction_of_bandwidth_limit": single["decode_tok_s"] / (bw / wb),
                    "linear layers": veng.runner.kernel_report()["linear layers"],
                }
                del veng
            result["kernel_paths"][variant] = row
            print(json.dumps({variant: row}), file=sys.stderr, flush=True)

    if "single" in loads_wanted:
        s = result["precisions"][dtype_name]["single"]
        result["loads"]["single"] = s
        seq1 = {} if args.no_hf else _guard(run_sequential, hf, [(loads["uniform"][0][0], 128)], device)
        if "tok_s" in seq1:
            s["sequential_generate_tok_s"] = seq1["tok_s"]
            s["sequential_fraction_of_bandwidth_limit"] = seq1["tok_s"] / s["bandwidth_limit_tok_s"]
    result["bandwidth_GBps_end"] = measure_bandwidth(device) / 1e9
    result["load_average_end"] = os.getloadavg()[0]

    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(result)
    return result


def _f(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


_PREC_LABEL = {"bfloat16": "bf16", "float32": "fp32", "int8": "int8", "int4": "int4"}


def write_docs(r: dict[str, Any]) -> None:
    """Replace the engine section of docs/benchmarks.md with this run's tables."""
    L = r["loads"]
    rows = [
        f"Command: `{r['command'].strip()}`, {r['date']} — {r['arch']}, random weights, {r['dtype']}, "
        f"{r['device']} ({r['device_name'] or 'cpu'}, {r['cpu_threads']} threads), concurrency {r['concurrency']}. "
        f"Load average {r['load_average']:.2f} at the start, {r['load_average_end']:.2f} at the end. CPU flags: "
        f"`{r['cpu_flags']}`. Memory bandwidth measured in the run (a 1 GiB `sum()`): "
        f"{r['bandwidth_GBps']:.1f} GB/s at the start, {r['bandwidth_GBps_end']:.1f} at the end.",
        "",
        "cocina's kernels: " + "; ".join(f"{k}: {v}" for k, v in r["cocina_kernels"].items()) + ".",
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
    P = r.get("precisions", {})
    if P:
        rows += [
            "",
            "One request alone (batch 1, 32-token prompt, 128 tokens, through `LLMEngine.step`: sampling and "
            "detokenizing included) and a 512-token prompt alone, next to llama.cpp's own `llama-bench` (`tg128`, "
            "`pp512`, 2 threads) on the same weights converted to GGUF, in the same run. The bandwidth limit is "
            "the bytes of weights one token reads over the measured bandwidth.",
            "",
            "| precision | weights read per token | batch 1 tok/s (of limit) | llama.cpp tg128 (of limit) "
            "| vs tg128 | 512-token prompt tok/s | llama.cpp pp512 | vs pp512 | 32 requests tok/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for prec, e in P.items():
            s1, lc, pre = e.get("single", {}), e.get("llama_cpp", {}), e.get("prefill_512", {})
            uni = e.get("uniform", {}).get("tok_s") or (L.get("uniform", {}).get("cocina", {}).get("tok_s"))
            tg = (
                f"{_f(lc['tg128'])} {lc['gguf_type']} ({100 * lc['tg128_fraction_of_bandwidth_limit']:.0f}%)"
                if "tg128" in lc else lc.get("error", "-")
            )
            rows.append(
                f"| {_PREC_LABEL.get(prec, prec)} | {e['weight_bytes_per_token'] / 1e6:.0f} MB | "
                f"{_f(s1['decode_tok_s'])} ({100 * s1['fraction_of_bandwidth_limit']:.0f}%) | {tg} | "
                f"{_ratio(e.get('vs_llama_cpp_tg128'))} | {_f(pre['tok_s']) if pre else '-'} | "
                f"{_f(lc['pp512']) if 'pp512' in lc else '-'} | {_ratio(e.get('vs_llama_cpp_pp512'))} | "
                f"{_f(uni) if uni else '-'} |"
                if s1 else f"| {prec} | - | - | {tg} | - | - | - | - | - |"
            )
        rows.append("")
        for prec, e in P.items():
            rows.append(f"- {_PREC_LABEL.get(prec, prec)}: {e['kernels']['linear layers']}; {e['memory']}.")
    KP = r.get("kernel_paths", {})
    if KP:
        rows += ["", "The other kernel paths this CPU runs, forced with `COCINA_CPU_KERNELS` (batch 1):", ""]
        for variant, row in KP.items():
            parts = [
                f"{_PREC_LABEL.get(p, p)} {_f(v['decode_tok_s'])} tok/s ({100 * v['fraction_of_bandwidth_limit']:.0f}%"
                f" of the limit; {v['linear layers']})"
                for p, v in row.items()
            ]
            rows.append(f"- `{variant}`: " + "; ".join(parts) + ".")
    rows.append("")
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
    s1 = L.get("single", {})
    if "sequential_generate_tok_s" in s1:
        rows.append(
            f"- `model.generate` alone: {_f(s1['sequential_generate_tok_s'])} tok/s "
            f"({_f(100 * s1['sequential_fraction_of_bandwidth_limit'], 0)}% of the bf16 limit)."
        )
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
    """Issue #14's engine figures for this run, against their targets."""
    L, P = r["loads"], r.get("precisions", {})
    out = ["Targets (issue #14):", "", "| target | measured | met |", "| --- | ---: | :---: |"]

    def add(name: str, shown: str, ok: bool) -> None:
        out.append(f"| {name} | {shown} | {'**yes**' if ok else '**no**'} |")

    for prec, e in P.items():
        label = _PREC_LABEL.get(prec, prec)
        s1 = e.get("single")
        if s1 and prec in ("bfloat16", "int8"):
            frac = s1["fraction_of_bandwidth_limit"]
            add(f"{label} batch 1: >= 80% of the bandwidth limit", f"{100 * frac:.0f}%", frac >= 0.8)
        if "vs_llama_cpp_tg128" in e:
            v = e["vs_llama_cpp_tg128"]
            add(f"{label} batch 1: >= llama.cpp tg128 ({e['llama_cpp']['gguf_type']})", _ratio(v), v >= 1.0)
        if "vs_llama_cpp_pp512" in e:
            v = e["vs_llama_cpp_pp512"]
            add(f"{label} 512-token prompt: >= llama.cpp pp512", _ratio(v), v >= 1.0)
    a = L.get("arrival", {}).get("32")
    if a:
        add("a request arriving among 31 decoding: first token <= 1.7x its prefill alone", _ratio(a["ratio"]),
            a["ratio"] <= 1.7)
    if "prefix" in L:
        saved = L["prefix"]["cocina"]["prompt_compute_saved"]
        add("shared 256-token prefix: prompt tokens computed drop >= 82%", f"{100 * saved:.0f}%", saved >= 0.82)
    return out


if __name__ == "__main__":
    main()
