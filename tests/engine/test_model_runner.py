"""The model runner on tiny random models (fp32): paged attention must reproduce the model's own forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from cocina.engine.block_manager import BlockManager
from cocina.engine.config import EngineConfig
from cocina.engine.errors import EngineError
from cocina.engine.model_runner import ModelRunner, resolve_dtype
from cocina.engine.scheduler import ScheduledSeq, SchedulerOutput
from cocina.engine.sequence import SamplingParams, Sequence
from cocina.models.tiny import Arch, make_tiny_model

ARCHS: list[Arch] = ["gpt2", "llama", "falcon", "qwen2", "mistral"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runner-models")
    return {arch: make_tiny_model(root / arch, arch=arch) for arch in ARCHS}


def _config(**kw: object) -> EngineConfig:
    base: dict[str, object] = {"block_size": 4, "num_kv_blocks": 64, "dtype": "float32", "device": "cpu"}
    base.update(kw)
    return EngineConfig(**base)  # type: ignore[arg-type]


def _step(runner: ModelRunner, bm: BlockManager, chunks: list[tuple[Sequence, int]]) -> torch.Tensor:
    """Run one step by hand (no scheduler): allocate blocks, run, advance the sequences."""
    for seq, _ in chunks:
        if not seq.block_table:
            bm.allocate(seq)
        else:
            bm.may_append(seq)
    scheduled = [ScheduledSeq(seq, n) for seq, n in chunks]
    logits = runner.run(SchedulerOutput(scheduled, [], sum(n for _, n in chunks)))
    for seq, n in chunks:
        seq.num_computed_tokens += n
    return logits


@pytest.mark.parametrize("arch", ARCHS)
def test_chunked_prefill_and_decodes_match_full_forward(arch: str, model_dirs: dict[str, Path]) -> None:
    """Logits from chunked prefill + decodes mixed in one step equal a plain forward over the whole text."""
    runner = ModelRunner(model_dirs[arch], _config(enable_prefix_caching=False))
    bm = BlockManager(runner.num_kv_blocks, 4, enable_prefix_caching=False)
    g = torch.Generator().manual_seed(1)
    a = Sequence(torch.randint(2, 1000, (11,), generator=g).tolist(), SamplingParams())
    b = Sequence(torch.randint(2, 1000, (6,), generator=g).tolist(), SamplingParams())
    # Step 1: a's first 5 tokens. Step 2: a's remaining 6 with b's whole prompt. Step 3: both decode.
    _step(runner, bm, [(a, 5)])
    last = _step(runner, bm, [(a, 6), (b, 6)])
    a.append_token(7)
    b.append_token(9)
    dec = _step(runner, bm, [(a, 1), (b, 1)])
    # The runner's model has its attention replaced: compare with a fresh copy of the same weights.
    ref = AutoModelForCausalLM.from_pretrained(model_dirs[arch], dtype=torch.float32)
    with torch.inference_mode():
        for i, seq in enumerate((a, b)):
            full = ref(torch.tensor([seq.token_ids])).logits[0]  # [L, V]
            torch.testing.assert_close(last[i], full[-2], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(dec[i], full[-1], rtol=1e-4, atol=1e-4)


def test_prefix_cache_hit_gives_the_same_logits(model_dirs: dict[str, Path]) -> None:
    """A prompt whose first blocks are prefix-cache hits computes only the rest, with identical logits."""
    runner = ModelRunner(model_dirs["llama"], _config())
    bm = BlockManager(runner.num_kv_blocks, 4, enable_prefix_caching=True)
    prompt = list(range(10, 23))  # 13 tokens: 3 full blocks
    first = Sequence(prompt, SamplingParams())
    bm.allocate(first)
    want = _step(runner, bm, [(first, 13)])
    bm.register_computed_blocks(first)
    second = Sequence(prompt, SamplingParams())
    bm.allocate(second)
    assert second.num_computed_tokens == 12  # three blocks shared
    got = _step(runner, bm, [(second, 1)])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_kv_cache_respects_the_memory_budget(model_dirs: dict[str, Path]) -> None:
    budget = 100_000
    runner = ModelRunner(model_dirs["llama"], EngineConfig(kv_cache_bytes=budget, dtype="float32", device="cpu"))
    assert 0 < runner.kv_cache_bytes <= budget
    allocated = sum(t.numel() * t.element_size() for t in runner.paged.k_cache + runner.paged.v_cache)
    assert allocated == runner.kv_cache_bytes
    # One sequence must fit alone, so max_model_len never exceeds the cache's capacity.
    assert runner.max_model_len <= runner.num_kv_blocks * runner.block_size
    report = runner.memory_report()
    assert report.kv_cache_bytes == runner.kv_cache_bytes and report.weight_bytes > 0
    assert "KV cache" in report.describe()


def test_a_budget_below_one_block_is_an_error(model_dirs: dict[str, Path]) -> None:
    with pytest.raises(EngineError, match="holds no block"):
        ModelRunner(model_dirs["gpt2"], EngineConfig(kv_cache_bytes=10, dtype="float32", device="cpu"))


def test_dtype_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("float32", cpu) is torch.float32
    assert resolve_dtype("bfloat16", cpu) is torch.bfloat16
    with pytest.raises(EngineError, match="float16 is for GPUs"):
        resolve_dtype("float16", cpu)
    with pytest.raises(EngineError, match="unknown dtype 'int3'"):
        resolve_dtype("int3", cpu)


def test_auto_dtype_is_bf16_only_where_bf16_runs_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Native bf16, or cocina's kernels: bf16. Neither: fp32 (PyTorch would emulate bf16)."""
    from cocina.engine import model_runner

    cpu = torch.device("cpu")
    monkeypatch.setattr(model_runner, "cpu_supports_bf16", lambda: True)
    assert resolve_dtype("auto", cpu, kernels=False) is torch.bfloat16
    monkeypatch.setattr(model_runner, "cpu_supports_bf16", lambda: False)
    assert resolve_dtype("auto", cpu, kernels=True) is torch.bfloat16
    assert resolve_dtype("auto", cpu, kernels=False) is torch.float32


def test_bnb_needs_a_gpu(model_dirs: dict[str, Path]) -> None:
    with pytest.raises(EngineError, match="CUDA"):
        ModelRunner(model_dirs["gpt2"], _config(quantize="bnb4"))


@pytest.mark.parametrize("rows", [1, 64])
def test_cpu_bf16_linear_matches_linear(rows: int) -> None:
    """Both paths (bf16 GEMV for few rows, fp32 on a converted weight for many) compute the same linear."""
    from cocina.engine.model_runner import CpuBf16Linear

    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(48, 80).to(torch.bfloat16)
    x = torch.randn(2, rows, 48, generator=g).to(torch.bfloat16)
    fast = CpuBf16Linear(lin.weight.t(), lin.bias)
    with torch.inference_mode():
        want = torch.nn.functional.linear(x.float(), lin.weight.float(), lin.bias.float())
        got = fast(x)
    assert got.shape == (2, rows, 80) and got.dtype is torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("kernels", ["auto", "torch"])
def test_transformers_modules_on_a_cpu_without_native_bf16_use_the_fast_linears(
    kernels: str, model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers' path (models cocina has no code for): cocina's packed layers where the kernels load, else
    the PyTorch fallback; never PyTorch's slow bf16 ``nn.Linear`` on such a CPU."""
    from cocina.engine import model_runner
    from cocina.engine.cpu_kernels import PackedBf16Linear
    from cocina.engine.model_runner import CpuBf16Linear

    monkeypatch.setattr(model_runner, "cpu_supports_bf16", lambda: False)
    runner = ModelRunner(model_dirs["llama"], _config(dtype="bfloat16", model_impl="transformers", cpu_kernels=kernels))
    kinds = {type(m) for m in runner.model.modules()}
    line = runner.memory_report().describe()  # what `cocina serve` / `predict` print at start
    if runner.kernels is not None:
        assert PackedBf16Linear in kinds and CpuBf16Linear not in kinds and torch.nn.Linear not in kinds
        assert f"cocina {runner.kernels.variant} kernel" in line
    else:
        assert CpuBf16Linear in kinds and torch.nn.Linear not in kinds
        assert "cocina" not in line.split("kernels:", 1)[1].replace("transformers", "")


@pytest.mark.parametrize("arch", ["gpt2", "falcon"])
@pytest.mark.parametrize("num_tokens", [3, 20])  # below and above the fp32-conversion row threshold
def test_bf16_logits_are_close_to_fp32(arch: Arch, num_tokens: int, model_dirs: dict[str, Path]) -> None:
    """bf16 (with the tied LM head's transposed table on CPUs without native bf16) stays near fp32."""
    runner = ModelRunner(model_dirs[arch], _config(dtype="bfloat16", enable_prefix_caching=False))
    bm = BlockManager(runner.num_kv_blocks, 4, enable_prefix_caching=False)
    seq = Sequence(list(range(5, 5 + num_tokens)), SamplingParams())
    got = _step(runner, bm, [(seq, num_tokens)])[0]
    ref = AutoModelForCausalLM.from_pretrained(model_dirs[arch], dtype=torch.float32)
    with torch.inference_mode():
        want = ref(torch.tensor([seq.token_ids])).logits[0, -1]
    torch.testing.assert_close(got, want, rtol=0.0, atol=0.02)
