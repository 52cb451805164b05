"""Where a native model step's time goes: each part of the C step timed inside it (a -DCOCINA_PROFILE build).

    .venv/bin/python benchmarks/profile_step.py                     # GPT-2-small shape, bf16, this CPU's variant
    .venv/bin/python benchmarks/profile_step.py --quantize int4 --variant avx2

Runs three steps many times: one decode (batch 1), 32 decodes, one 512-token prompt; prints each part's share
(embeddings, norms, q|k|v projection, rotary + KV cache writes, attention, output projection, MLP up, activation,
MLP down, LM head) as JSON. ``--engine-overhead`` also times, with the ordinary build, one request decoding
alone through ``LLMEngine.step`` (as benchmarks/engine.py's batch-1 figure) against the native step by itself at
the same batch and context: the difference is what a token costs outside the C step (scheduling, building the
step's arrays, sampling, detokenizing, Python).

The profiling build times with clock_gettime between parts, which costs a few microseconds per layer: the
totals run slightly above an ordinary build's.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cocina.engine import cpu_kernels as ck  # noqa: E402
from cocina.engine.config import EngineConfig  # noqa: E402
from cocina.engine.model_runner import ModelRunner  # noqa: E402
from cocina.engine.models import NativeStep  # noqa: E402

PARTS = [
    "embed", "norms", "qkv", "rotary+kv write", "attention", "o proj", "mlp up", "activation", "mlp down", "lm head"
]


def profiling_build(variant: str) -> ck.KernelLib:
    """The variant compiled with -DCOCINA_PROFILE into a temporary file."""
    cc = os.environ.get("CC", "cc")
    out = Path(tempfile.mkdtemp()) / f"profile-{variant}.so"
    cmd = [cc, *ck._flags(ck.VARIANTS[variant]), "-DCOCINA_PROFILE", "-fopenmp", "-o", str(out),
           *(str(ck.CSRC / s) for s in ck.SOURCES), "-lm"]
    subprocess.run(cmd, check=True)
    cdll = ctypes.CDLL(str(out))
    ck._declare(cdll)
    cdll.cocina_profile.argtypes = [ctypes.c_void_p]
    return ck.KernelLib(variant, out, cdll)


def make_step(nseq: int, new: int, ctx: int, block_size: int) -> NativeStep:
    """``nseq`` sequences with ``new`` tokens each after ``ctx`` cached ones, in blocks of their own."""
    i32 = torch.int32
    nb = -(-(ctx + new) // block_size)
    tables = torch.arange(nseq * nb, dtype=i32).view(nseq, nb)
    toks, pos, slots, rows, samples = [], [], [], [], []
    for s in range(nseq):
        for p in range(ctx, ctx + new):
            toks.append(100 + p)
            pos.append(p)
            slots.append(int(tables[s, p // block_size]) * block_size + p % block_size)
            rows.append(s)
        samples.append(len(toks) - 1)
    positions = torch.tensor(pos, dtype=i32)
    return NativeStep(torch.tensor(toks, dtype=i32), positions, torch.tensor(slots, dtype=i32), tables,
                      torch.tensor(rows, dtype=i32), positions + 1, torch.tensor(samples, dtype=i32))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from engine import make_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--quantize", default=None)
    ap.add_argument("--variant", default=None, help="kernel variant (default: this CPU's best)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/cocina-bench"))
    ap.add_argument("--engine-overhead", action="store_true",
                    help="also time batch 1 through LLMEngine.step against the native step alone")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variant = args.variant or ck.choose_variant("auto")
    path = make_model("gpt2-small", Path(args.cache_dir))
    runner = ModelRunner(path, EngineConfig(dtype=args.dtype, quantize=args.quantize, device="cpu",
                                            cpu_kernels=variant, kv_cache_bytes=1 << 30))
    model = runner.cocina
    assert model is not None and model.native, "the native path did not load"
    model.lib = profiling_build(variant)
    out: dict[str, Any] = {"variant": variant, "dtype": args.dtype, "quantize": args.quantize,
                           "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0], "steps": {}}
    times = (ctypes.c_double * len(PARTS))()
    for name, step, reps in (
        ("decode, batch 1, context 64", make_step(1, 1, 64, runner.block_size), 50),
        ("decode, batch 32, context 64", make_step(32, 1, 64, runner.block_size), 10),
        ("prompt of 512 tokens", make_step(1, 512, 0, runner.block_size), 3),
    ):
        model.forward_native(step)
        model.lib.cdll.cocina_profile(times)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            model.forward_native(step)
            best = min(best, time.perf_counter() - t)
        model.lib.cdll.cocina_profile(times)
        total = sum(times)
        out["steps"][name] = {
            "best_ms": round(best * 1e3, 2),
            "mean_ms": round(total / reps * 1e3, 2),
            "parts_ms": {p: round(t / reps * 1e3, 3) for p, t in zip(PARTS, times, strict=True)},
        }
    if args.engine_overhead:
        out["engine_overhead"] = engine_overhead(path, args, variant)
    print(json.dumps(out, indent=2))
    return out


def engine_overhead(path: Path, args: argparse.Namespace, variant: str, reps: int = 3) -> dict[str, Any]:
    """Per-token ms at batch 1: ``LLMEngine.step`` (32-token prompt, 128 tokens, as engine.py's figure) and the
    native step alone (ordinary build) at the mean context of that run; best of ``reps`` each, interleaved."""
    from cocina.engine.llm_engine import LLMEngine
    from cocina.engine.sequence import SamplingParams

    engine = LLMEngine.from_pretrained(path, EngineConfig(dtype=args.dtype, quantize=args.quantize, device="cpu",
                                                          cpu_kernels=variant, kv_cache_bytes=1 << 30))
    model = engine.runner.cocina
    assert model is not None and model.native
    prompt, n = list(range(100, 132)), 128
    step = make_step(1, 1, 32 + n // 2, engine.runner.block_size)
    engine.generate([prompt], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
    best_engine, best_native = float("inf"), float("inf")
    for rep in range(reps):
        engine.add_request(prompt, SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True), f"o-{rep}")
        times: list[float] = []
        while engine.has_unfinished():
            for o in engine.step():
                times.extend(time.perf_counter() for _ in o.token_ids)
        best_engine = min(best_engine, (times[-1] - times[0]) / (len(times) - 1))
        t = time.perf_counter()
        for _ in range(n - 1):
            model.forward_native(step)
        best_native = min(best_native, (time.perf_counter() - t) / (n - 1))
    return {
        "engine_step_ms_per_token": round(best_engine * 1e3, 3),
        "native_step_ms": round(best_native * 1e3, 3),
        "outside_native_step_ms": round((best_engine - best_native) * 1e3, 3),
        "outside_share": round(1 - best_native / best_engine, 3),
        "weight_bytes_per_token": engine.runner.weight_bytes_per_token(),
        "native_step_GBps": round(engine.runner.weight_bytes_per_token() / best_native / 1e9, 2),
    }


if __name__ == "__main__":
    main()
