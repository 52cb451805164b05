"""The weights of a transformers model, gathered into cocina's layout: fused projections, one naming for all.

Each layer becomes ``norm1``, one ``qkv`` projection (rows: the query heads, then the key heads, then the value
heads), ``o``, ``norm2``, ``up`` (``gate`` rows then ``up`` rows when the MLP is gated) and ``down``. Weights stay
``[out, in]`` tensors in the model's dtype, views of the loaded model's own tensors where no fusing is needed; the
model code packs them for its kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cocina.engine.models.spec import ModelSpec

__all__ = ["LayerWeights", "ModelWeights", "extract_weights", "rope_tables"]


@dataclass
class LayerWeights:
    """One decoder layer; biases and the second norm may be None."""

    norm1_w: Tensor
    norm1_b: Tensor | None
    norm2_w: Tensor | None
    norm2_b: Tensor | None
    qkv_w: Tensor
    qkv_b: Tensor | None
    o_w: Tensor
    o_b: Tensor | None
    up_w: Tensor
    up_b: Tensor | None
    down_w: Tensor
    down_b: Tensor | None
    # GPT-2 keeps its projections [in, out] (Conv1D); the torch path multiplies them as transformers does.
    conv1d: bool = False


@dataclass
class ModelWeights:
    """The whole model: embeddings, layers, final norm and LM head (``head_w is embed`` when they are tied)."""

    embed: Tensor  # [vocab, hidden]
    pos_emb: Tensor | None  # [max positions, hidden] (GPT-2)
    layers: list[LayerWeights]
    final_w: Tensor
    final_b: Tensor | None
    head_w: Tensor  # [vocab, hidden]
    head_b: Tensor | None

    @property
    def tied(self) -> bool:
        """True when the LM head is the input embedding's table."""
        return self.head_w.data_ptr() == self.embed.data_ptr()


def _bias(module: Any) -> Tensor | None:
    b = getattr(module, "bias", None)
    return b.detach() if isinstance(b, Tensor) else None


def _cat(*parts: Tensor | None) -> Tensor | None:
    if all(p is None for p in parts):
        return None
    if any(p is None for p in parts):
        raise ValueError("some of a fused projection's parts have a bias and some do not")
    return torch.cat([p for p in parts if p is not None], dim=0)


def _gpt2(model: Any) -> tuple[list[LayerWeights], Any, Tensor | None]:
    base = model.transformer
    layers = []
    for block in base.h:
        a, m = block.attn, block.mlp
        layers.append(LayerWeights(
            block.ln_1.weight.detach(), _bias(block.ln_1), block.ln_2.weight.detach(), _bias(block.ln_2),
            a.c_attn.weight.detach().t(), _bias(a.c_attn), a.c_proj.weight.detach().t(), _bias(a.c_proj),
            m.c_fc.weight.detach().t(), _bias(m.c_fc), m.c_proj.weight.detach().t(), _bias(m.c_proj), conv1d=True,
        ))
    return layers, base.ln_f, base.wpe.weight.detach()


def _llama(model: Any) -> tuple[list[LayerWeights], Any, Tensor | None]:
    base = model.model
    layers = []
    for block in base.layers:
        a, m = block.self_attn, block.mlp
        layers.append(LayerWeights(
            block.input_layernorm.weight.detach(), None, block.post_attention_layernorm.weight.detach(), None,
            torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach(),
            _cat(_bias(a.q_proj), _bias(a.k_proj), _bias(a.v_proj)),
            a.o_proj.weight.detach(), _bias(a.o_proj),
            torch.cat([m.gate_proj.weight, m.up_proj.weight]).detach(), _cat(_bias(m.gate_proj), _bias(m.up_proj)),
            m.down_proj.weight.detach(), _bias(m.down_proj),
        ))
    return layers, base.norm, None


def _falcon_qkv(t: Tensor, spec: ModelSpec, new_arch: bool) -> Tensor:
    """Falcon's fused rows in q|k|v order (its own order depends on the variant)."""
    h, kv, d = spec.n_heads, spec.n_kv_heads, spec.head_dim
    rest = t.shape[1:]
    if new_arch:
        # [groups, heads per group + 2, D]: each group's query heads, then its key, then its value
        g = t.reshape(kv, h // kv + 2, d, *rest)
        q, k, v = g[:, :-2].reshape(h * d, *rest), g[:, -2].reshape(kv * d, *rest), g[:, -1].reshape(kv * d, *rest)
    elif kv == 1:
        g = t.reshape(h + 2, d, *rest)
        q, k, v = g[:h].reshape(h * d, *rest), g[h], g[h + 1]
    else:
        g = t.reshape(h, 3, d, *rest)  # per head: its q, k, v
        q, k, v = (g[:, i].reshape(h * d, *rest) for i in range(3))
    return torch.cat([q, k, v], dim=0)


def _falcon(model: Any, spec: ModelSpec) -> tuple[list[LayerWeights], Any, Tensor | None]:
    base = model.transformer
    new_arch = bool(model.config.new_decoder_architecture)
    layers = []
    for block in base.h:
        a, m = block.self_attention, block.mlp
        if spec.parallel and spec.two_norms:
            n1, n2 = block.ln_attn, block.ln_mlp
        elif spec.parallel:
            n1, n2 = block.input_layernorm, None
        else:
            n1, n2 = block.input_layernorm, block.post_attention_layernorm
        qkv_b = _bias(a.query_key_value)
        layers.append(LayerWeights(
            n1.weight.detach(), _bias(n1), n2.weight.detach() if n2 is not None else None,
            _bias(n2) if n2 is not None else None,
            _falcon_qkv(a.query_key_value.weight.detach(), spec, new_arch),
            _falcon_qkv(qkv_b, spec, new_arch) if qkv_b is not None else None,
            a.dense.weight.detach(), _bias(a.dense),
            m.dense_h_to_4h.weight.detach(), _bias(m.dense_h_to_4h),
            m.dense_4h_to_h.weight.detach(), _bias(m.dense_4h_to_h),
        ))
    return layers, base.ln_f, None


def extract_weights(model: Any, spec: ModelSpec) -> ModelWeights:
    """``model``'s weights in cocina's layout (views of its tensors where no fusing is needed)."""
    if spec.family == "gpt2":
        layers, final, pos = _gpt2(model)
    elif spec.family == "llama":
        layers, final, pos = _llama(model)
    else:
        layers, final, pos = _falcon(model, spec)
    embed = model.get_input_embeddings().weight.detach()
    head = model.get_output_embeddings()
    return ModelWeights(
        embed, pos, layers, final.weight.detach(), _bias(final), head.weight.detach(), _bias(head)
    )


def rope_tables(model: Any, max_len: int) -> tuple[Tensor, Tensor]:
    """cos and sin ``[max_len, head_dim / 2]`` fp32 for positions 0..max_len-1, as transformers computes them."""
    rotary = model.base_model.rotary_emb
    inv_freq = rotary.inv_freq.detach().float().cpu()
    freqs = torch.arange(max_len, dtype=torch.float32)[:, None] * inv_freq[None, :]
    scaling = float(getattr(rotary, "attention_scaling", 1.0))
    return (freqs.cos() * scaling).contiguous(), (freqs.sin() * scaling).contiguous()

