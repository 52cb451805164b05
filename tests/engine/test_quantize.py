"""int8 quantization of tiny GPT-2/Llama/Falcon/Qwen2 models, memory accounting, dtype and method checks."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from cocina.engine.quantize import (
    DynamicInt8Linear,
    Int8Linear,
    bnb_quantization_config,
    model_memory_bytes,
    quantize_model,
    quantized_linear_count,
)


def _model(arch: str) -> nn.Module:
    from transformers import AutoModelForCausalLM

    from cocina.models.tiny import tiny_config

    cfg = tiny_config(arch, vocab_size=512, hidden_size=128, num_layers=2, num_heads=4)  # type: ignore[arg-type]
    torch.manual_seed(0)
    model: nn.Module = AutoModelForCausalLM.from_config(cfg).eval()
    return model


def _float_linear_layers(model: nn.Module) -> int:
    from transformers.pytorch_utils import Conv1D

    return sum(isinstance(m, nn.Linear | Conv1D) for m in model.modules())


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


@pytest.mark.parametrize("arch", ["gpt2", "llama", "falcon", "qwen2"])
@pytest.mark.parametrize("kernel", ["cocina", "dynamic", "weight_only"])
def test_every_linear_layer_is_quantized_and_logits_stay_close(arch: str, kernel: Any) -> None:
    from cocina.engine.cpu_kernels import PackedInt8Linear, cpu_has_vnni, cpu_kernels

    if kernel == "cocina" and (cpu_kernels() is None or not cpu_has_vnni()):
        pytest.skip("cocina's int8 kernel needs AVX512-VNNI and a C compiler")
    model = _model(arch)
    n_linear = _float_linear_layers(model)
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(ids).logits
    before = model_memory_bytes(model)
    q = quantize_model(copy.deepcopy(model), "int8", "cpu", kernel=kernel)
    quantized, remaining = quantized_linear_count(q)
    assert remaining == 0
    assert quantized == n_linear  # lm_head included (a tied head becomes its own int8 copy)
    cls = {"cocina": PackedInt8Linear, "dynamic": DynamicInt8Linear, "weight_only": Int8Linear}[kernel]
    assert isinstance(q.get_output_embeddings(), cls)  # type: ignore[operator]
    with torch.inference_mode():
        out = q(ids).logits
    assert _cosine(out, ref) > 0.99
    assert model_memory_bytes(q) < 0.6 * before


def test_gpt2_conv1d_transposed_correctly() -> None:
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(48, 32)  # nx=32 inputs, nf=48 outputs; weight [32, 48]
    x = torch.randn(5, 32)
    for new in (
        DynamicInt8Linear.from_float(conv, transposed=True),
        Int8Linear.from_float(conv, torch.float32, transposed=True),
    ):
        assert _cosine(new(x), conv(x)) > 0.999


def test_falcon_linear_subclass_is_matched() -> None:
    from transformers.models.falcon.modeling_falcon import FalconLinear

    model = _model("falcon")
    assert any(type(m) is FalconLinear for m in model.modules())
    q = quantize_model(model, "int8", "cpu")
    assert not any(isinstance(m, FalconLinear) for m in q.modules())


def test_lm_head_can_stay_tied_and_float() -> None:
    model = _model("gpt2")
    emb = model.get_input_embeddings().weight  # type: ignore[operator]
    q = quantize_model(model, "int8", "cpu", quantize_lm_head=False)
    head = q.get_output_embeddings()  # type: ignore[operator]
    assert isinstance(head, nn.Linear) and head.weight is emb
    assert quantized_linear_count(q)[1] == 1


def test_tied_lm_head_quantized_copy_leaves_embedding() -> None:
    model = _model("gpt2")
    emb_before = model.get_input_embeddings().weight.detach().clone()  # type: ignore[operator]
    q = quantize_model(model, "int8", "cpu")
    assert torch.equal(q.get_input_embeddings().weight, emb_before)  # type: ignore[operator]
    assert q.config.tie_word_embeddings is False  # type: ignore[union-attr]


def test_bf16_model_with_dynamic_kernel() -> None:
    model = _model("llama")
    ids = torch.randint(0, 512, (1, 8))
    with torch.inference_mode():
        ref = model(ids).logits
        q = quantize_model(copy.deepcopy(model).to(torch.bfloat16), "int8", "cpu", kernel="dynamic")
        out = q(ids).logits
    assert out.dtype == torch.bfloat16
    assert _cosine(out.float(), ref) > 0.98


def test_memory_counts_packed_weights() -> None:
    lin = nn.Linear(256, 128)
    dyn = DynamicInt8Linear.from_float(lin)
    # int8 weight + per-channel scale (fp64) and zero point (int64) + fp32 bias.
    assert model_memory_bytes(dyn) == 256 * 128 + 128 * (8 + 8) + 128 * 4
    wo = Int8Linear.from_float(lin, torch.bfloat16)
    assert model_memory_bytes(wo) == 256 * 128 + 128 * 2 * 2


def test_none_and_unknown_methods() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    assert quantize_model(model, None, "cpu") is model
    with pytest.raises(ValueError, match="int8, int4, bnb8, bnb4"):
        quantize_model(model, "int2", "cpu")
    with pytest.raises(ValueError, match="kernel"):
        quantize_model(model, "int8", "cpu", kernel="fancy")  # type: ignore[arg-type]


def test_bnb_needs_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        quantize_model(nn.Linear(2, 2), "bnb4", "cpu")
    with pytest.raises(ValueError, match="CUDA"):
        bnb_quantization_config("bnb8", "cpu")
    with pytest.raises(ValueError, match="bnb8"):
        bnb_quantization_config("int8", "cuda")
    with pytest.raises(ValueError, match="CPU only"):
        quantize_model(nn.Linear(2, 2), "int8", "cuda")
