"""Time int8 linear kernels side by side for GPT-2-small decode shapes on this CPU; print JSON (ms per call).

Run: ``python benchmarks/quant_kernels.py [--threads 2] [--repeats 7] [--torchao]``.

Kernels (all compute ``y = x @ W^T`` for one linear layer of shape ``[in] -> [out]``):

- ``fp32``, ``bf16``: ``F.linear`` baselines.
- ``dynamic_int8``: ``torch.ao`` dynamic quantization (fbgemm/x86 packed int8 weights, activations quantized
  per call to uint8; fp32 in and out) — what ``quantize_dynamic`` installs.
- ``int8pack_bf16``: weight-only int8 with per-output-channel scales, ``torch._weight_int8pack_mm`` on bf16
  activations.
- ``torchao_*`` (``--torchao``, only if importable): torchao's int8 dynamic-activation and weight-only
  configs applied to a one-layer module.

The machine is shared and noisy, so kernels are interleaved round-robin in one process and the median of
``--repeats`` rounds is reported (each round times ``--iters`` calls).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: (batch, in, out): GPT-2-small's attention qkv, attention out, MLP up, MLP down, and lm_head.
SHAPES: list[tuple[int, int, int]] = [
    (m, k, n) for m in (1, 32) for k, n in ((768, 2304), (768, 768), (768, 3072), (3072, 768), (768, 50257))
]


def _kernels(m: int, k: int, n: int, use_torchao: bool) -> dict[str, Callable[[], torch.Tensor]]:
    from cocina.engine.quantize import Int8Linear

    torch.manual_seed(0)
    lin = torch.nn.Linear(k, n, bias=True).eval()
    x32 = torch.randn(m, k)
    x16 = x32.to(torch.bfloat16)
    w16, b16 = lin.weight.to(torch.bfloat16), lin.bias.to(torch.bfloat16)
    dyn = torch.ao.quantization.quantize_dynamic(
        torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8
    )
    pack = Int8Linear.from_float(lin, dtype=torch.bfloat16)
    out: dict[str, Callable[[], torch.Tensor]] = {
        "fp32": lambda: F.linear(x32, lin.weight, lin.bias),
        "bf16": lambda: F.linear(x16, w16, b16),
        "dynamic_int8": lambda: dyn(x32),
        "int8pack_bf16": lambda: pack(x16),
    }
    if use_torchao:
        try:
            from torchao.quantization import (
                Int8DynamicActivationInt8WeightConfig,
                Int8WeightOnlyConfig,
                quantize_,
            )
        except ImportError:
            return out
        for name, cfg, x in (
            ("torchao_int8_dyn_fp32", Int8DynamicActivationInt8WeightConfig(), x32),
            ("torchao_int8_wo_bf16", Int8WeightOnlyConfig(), x16),
        ):
            mod = torch.nn.Sequential(torch.nn.Linear(k, n)).eval().to(x.dtype)
            mod[0].load_state_dict({"weight": lin.weight.to(x.dtype), "bias": lin.bias.to(x.dtype)})
            quantize_(mod, cfg)
            out[name] = functools.partial(mod, x)
    return out


def bench(threads: int, repeats: int, iters: int, use_torchao: bool) -> dict[str, dict[str, float]]:
    """Median ms per call of every kernel for every shape, keyed ``"MxK->N"``."""
    torch.set_num_threads(threads)
    results: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for m, k, n in SHAPES:
            kernels = _kernels(m, k, n, use_torchao)
            for f in kernels.values():  # warm up (packing, first-call dispatch)
                f()
            samples: dict[str, list[float]] = {name: [] for name in kernels}
            for _ in range(repeats):
                for name, f in kernels.items():
                    t0 = time.perf_counter()
                    for _ in range(iters):
                        f()
                    samples[name].append((time.perf_counter() - t0) * 1e3 / iters)
            results[f"{m}x{k}->{n}"] = {name: round(statistics.median(v), 4) for name, v in samples.items()}
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--torchao", action="store_true", help="also time torchao's int8 configs if importable")
    a = p.parse_args()
    res = bench(a.threads, a.repeats, a.iters, a.torchao)
    print(json.dumps({"threads": a.threads, "torch": torch.__version__, "ms_per_call": res}, indent=1))


if __name__ == "__main__":
    main()
