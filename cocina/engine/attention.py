"""Paged attention for Hugging Face models: the KV cache in blocks, and one step's metadata.

The model runner feeds a step's tokens packed as one row (batch 1, ``T`` tokens: decodes first, then prefill
chunks) with explicit position ids. Every attention layer then calls :meth:`PagedAttention.attend`, which

1. writes each new token's key and value into its cache slot (``slot_mapping``, computed once per step), and
2. computes attention for each sequence against that sequence's cached keys and values: all single-token rows
   (decodes) in one padded SDPA call, each prefill chunk in its own call (causal within the chunk, full
   over the cached prefix).

Models whose attention routes through transformers' ``AttentionInterface`` (Llama, Mistral, Qwen2, GPT-2, ...)
reach it through :func:`paged_attention_forward`, registered as ``"cocina_paged"``. Falcon does not route
through the interface; :func:`patch_falcon_attention` replaces the forward of its attention modules instead.

The step's metadata lives on the :class:`PagedAttention` object that the runner owns and attaches to every
attention module, so two engines in one process never share state and nothing global has to be patched.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cocina.engine.cpu_kernels import paged_decode_attention

ATTN_IMPLEMENTATION = "cocina_paged"


@dataclass
class PrefillChunk:
    """One sequence's chunk of new tokens (more than one, or a lone token after the decode rows)."""

    q_start: int  # offset of the chunk's first token in the packed row
    num_tokens: int
    start_pos: int  # tokens of this sequence already in the cache before this chunk
    ctx_slots: Tensor | None  # [start_pos + num_tokens] cache slots; None when start_pos == 0 (no gather needed)
    mask: Tensor | None  # [1 | H, num_tokens, ctx] bool (True attends) or float bias (ALiBi); None: is_causal


@dataclass
class StepMetadata:
    """What every attention layer needs to know about the current step; built once per step by the runner."""

    slot_mapping: Tensor  # [T] int64: the cache slot each packed token's K/V is written to
    num_decodes: int = 0  # the first num_decodes packed tokens are single-token rows
    decode_slots: Tensor | None = None  # [num_decodes, Lmax] int64 cache slots (padded)
    decode_mask: Tensor | None = None  # [num_decodes, 1 | H, 1, Lmax] bool, or float bias with ALiBi
    # With cocina's CPU kernel instead of decode_slots/decode_mask: block tables and context lengths.
    decode_tables: Tensor | None = None  # [num_decodes, blocks] int32 (padded with block 0)
    decode_lens: Tensor | None = None  # [num_decodes] int32: keys per sequence, its new token included
    decode_bounds: tuple[int, int, int, int] | None = None  # min/max of decode_lens, min/max block id
    prefills: list[PrefillChunk] = field(default_factory=list)


class PagedAttention:
    """The paged KV cache of one model and the attention computed against it.

    ``k_cache[layer]`` and ``v_cache[layer]`` are ``[kv_heads, num_blocks * block_size, head_dim]``: gathering
    a sequence's slots (one ``index_select``) gives per-head ``[L, D]`` matrices that are contiguous, which the
    batched attention matmuls need to run at full speed (a ``[slots, heads, D]`` layout made them 3x slower).
    """

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.k_cache: list[Tensor] = []
        self.v_cache: list[Tensor] = []
        self.metadata: StepMetadata | None = None
        # Probing: a forward with no cache allocated records each layer's (kv_heads, head_dim) in call order.
        self.probing = False
        self.probed_shapes: list[tuple[int, int]] = []
        self.alibi: Tensor | None = None  # [H, max_len] ALiBi bias (already scaled) for Falcon-style models
        # cocina's CPU kernels (cpu_kernels.cpu_kernels()) when decode attention runs on them, else None.
        self.kernels: Any = None
        self.alibi_f32: Tensor | None = None  # the ALiBi bias in fp32, for the kernel

    # -- cache ---------------------------------------------------------------------------------------------
    def bytes_per_block(self, dtype: torch.dtype) -> int:
        """Bytes of K and V for one block across all layers (needs a probe first)."""
        elsize = torch.empty((), dtype=dtype).element_size()
        per_token = sum(2 * kv_heads * head_dim for kv_heads, head_dim in self.probed_shapes)
        return per_token * self.block_size * elsize

    def allocate(self, num_blocks: int, dtype: torch.dtype, device: torch.device) -> None:
        """Allocate the cache for ``num_blocks`` blocks (zeros, so padded gathers never read NaNs)."""
        num_slots = num_blocks * self.block_size
        self.k_cache = [torch.zeros(h, num_slots, d, dtype=dtype, device=device) for h, d in self.probed_shapes]
        self.v_cache = [torch.zeros(h, num_slots, d, dtype=dtype, device=device) for h, d in self.probed_shapes]

    # -- attention -----------------------------------------------------------------------------------------
    def attend(self, module: nn.Module | int, q: Tensor, k: Tensor, v: Tensor, scaling: float | None) -> Tensor:
        """Paged attention for one layer (its index, or a transformers module the probe numbered).

        ``q``: [H, T, D], ``k``/``v``: [Hkv, T, D]; returns [T, H, D].
        """
        if self.probing:
            assert isinstance(module, nn.Module)
            # Layers are numbered in the order the model calls them, which is independent of module naming.
            module._cocina_layer = len(self.probed_shapes)  # type: ignore[assignment]
            self.probed_shapes.append((k.shape[0], k.shape[2]))
            return q.new_zeros(q.shape[1], q.shape[0], q.shape[2])
        md = self.metadata
        assert md is not None, "attention called outside a runner step"
        layer: int = module if isinstance(module, int) else module._cocina_layer  # type: ignore[assignment]
        kc, vc = self.k_cache[layer], self.v_cache[layer]
        num_heads, num_tokens, _ = q.shape
        gqa = k.shape[0] != num_heads
        # Write this step's K/V first: decodes and chunks read their own new token from the cache.
        kc.index_copy_(1, md.slot_mapping, k.to(kc.dtype))  # k: [Hkv, T, D]
        vc.index_copy_(1, md.slot_mapping, v.to(vc.dtype))
        out = q.new_empty(num_tokens, num_heads, q.shape[2])  # [T, H, D]
        n = md.num_decodes
        if n and md.decode_tables is not None:
            assert md.decode_lens is not None
            paged_decode_attention(  # q is read in fp32 and out written in its dtype
                self.kernels,
                q[:, :n].transpose(0, 1),  # [n, H, D]
                kc,
                vc,
                md.decode_tables,
                md.decode_lens,
                self.block_size,
                scaling if scaling is not None else q.shape[2] ** -0.5,
                self.alibi_f32,
                out[:n],
                bounds=md.decode_bounds,
            )
        elif n:
            assert md.decode_slots is not None
            qd = q[:, :n].transpose(0, 1).unsqueeze(2)  # [n, H, 1, D]
            # index_select on flat slots: advanced indexing with a 2-D index is ~1000x slower on CPU.
            flat = md.decode_slots.view(-1)
            shape = (kc.shape[0], *md.decode_slots.shape, kc.shape[2])  # [Hkv, n, Lmax, D]
            kd = kc.index_select(1, flat).view(shape).transpose(0, 1)  # [n, Hkv, Lmax, D]
            vd = vc.index_select(1, flat).view(shape).transpose(0, 1)
            if q.device.type == "cpu":
                out[:n] = _decode_attention_cpu(qd, kd, vd, md.decode_mask, scaling)
            else:
                od = F.scaled_dot_product_attention(
                    qd, kd, vd, attn_mask=md.decode_mask, scale=scaling, enable_gqa=gqa
                )  # [n, H, 1, D]
                out[:n] = od.squeeze(2)
        for c in md.prefills:
            sl = slice(c.q_start, c.q_start + c.num_tokens)
            qc = q[:, sl].unsqueeze(0)  # [1, H, n, D]
            if c.ctx_slots is None:
                kk, vv = k[:, sl].unsqueeze(0), v[:, sl].unsqueeze(0)  # [1, Hkv, n, D]
            else:
                kk = kc.index_select(1, c.ctx_slots).unsqueeze(0)  # [1, Hkv, ctx, D]
                vv = vc.index_select(1, c.ctx_slots).unsqueeze(0)
            oc = F.scaled_dot_product_attention(
                qc,
                kk.to(q.dtype),
                vv.to(q.dtype),
                attn_mask=None if c.mask is None else c.mask.unsqueeze(0),
                is_causal=c.mask is None,
                scale=scaling,
                enable_gqa=gqa,
            )  # [1, H, n, D]
            out[sl] = oc[0].transpose(0, 1)
        return out


def _decode_attention_cpu(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scaling: float | None) -> Tensor:
    """Single-query attention as two batched matmuls: on CPU, SDPA's kernel for one query row costs 5x this
    in bf16 (measured: 4 ms against 0.75 ms for 32 sequences x 100 keys) and the same in fp32.

    q: [n, H, 1, D]; k, v: [n, Hkv, L, D]; mask: [n, 1 | H, 1, L] bool (True attends) or float bias.
    Grouped-query heads are handled by viewing q as [n, Hkv, H / Hkv, D]: no K/V copy. Returns [n, H, D].
    """
    n, heads, _, dim = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    qg = q.view(n, kv_heads, group, dim)
    scores = torch.matmul(qg, k.transpose(-1, -2)).float()  # [n, Hkv, g, L]
    scores *= scaling if scaling is not None else dim**-0.5
    if mask is not None:
        m = mask.view(n, -1, 1, mask.shape[-1])
        if mask.shape[1] != 1:  # per-head bias: [n, H, 1, L] -> [n, Hkv, g, L]
            m = mask.view(n, kv_heads, group, mask.shape[-1])
        scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m.float()
    probs = torch.softmax(scores, dim=-1).to(v.dtype)  # softmax in fp32, as transformers' eager attention
    return torch.matmul(probs, v).view(n, heads, dim)


def paged_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers ``AttentionInterface`` entry point: [1, H, T, D] in, [1, T, H, D] out (as SDPA's)."""
    paged: PagedAttention = module._cocina_paged  # type: ignore[assignment]
    out = paged.attend(module, query[0], key[0], value[0], scaling)
    return out.unsqueeze(0), None


def register_paged_attention() -> None:
    """Register ``"cocina_paged"`` with transformers (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, paged_attention_forward)


# -- Falcon ------------------------------------------------------------------------------------------------
def _falcon_attention_forward(
    self: Any,  # a FalconAttention (typed Any: its attributes come from the transformers class)
    hidden_states: Tensor,
    alibi: Tensor | None = None,
    attention_mask: Tensor | None = None,
    position_ids: Tensor | None = None,
    layer_past: Any = None,
    use_cache: bool = False,
    output_attentions: bool = False,
    position_embeddings: tuple[Tensor, Tensor] | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """FalconAttention.forward on the paged cache. Same projections and head split as transformers' own."""
    from transformers.models.falcon.modeling_falcon import apply_rotary_pos_emb

    paged: PagedAttention = self._cocina_paged
    heads, head_dim = self.num_heads, self.head_dim
    fused = self.query_key_value(hidden_states)[0]  # [T, (H + 2 * Hkv) * D]
    t = fused.shape[0]
    if self.new_decoder_architecture:
        # Grouped layout [groups, H / groups + 2, D]; keep K/V per group (no broadcast): a smaller cache.
        qkv = fused.view(t, -1, heads // self.num_kv_heads + 2, head_dim)
        q = qkv[:, :, :-2].reshape(t, heads, head_dim)
        k, v = qkv[:, :, -2], qkv[:, :, -1]  # [T, Hkv, D]
    elif not self.multi_query:
        qkv = fused.view(t, heads, 3, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    else:
        qkv = fused.view(t, heads + 2, head_dim)
        q, k, v = qkv[:, :heads], qkv[:, heads : heads + 1], qkv[:, heads + 1 :]
    q4, k4, v4 = q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None]  # [1, heads, T, D]
    if not self.config.alibi:
        assert position_embeddings is not None
        cos, sin = position_embeddings
        q4, k4 = apply_rotary_pos_emb(q4, k4, cos, sin)
    out = paged.attend(self, q4[0], k4[0], v4[0], 1.0 / math.sqrt(head_dim))  # [T, H, D]
    return self.dense(out.reshape(1, t, heads * head_dim)), None


def patch_falcon_attention(model: nn.Module, paged: PagedAttention) -> None:
    """Route every FalconAttention module of ``model`` to the paged cache."""
    from transformers.models.falcon.modeling_falcon import FalconAttention

    for m in model.modules():
        if isinstance(m, FalconAttention):
            m._cocina_paged = paged  # type: ignore[assignment]
            m.forward = types.MethodType(_falcon_attention_forward, m)  # type: ignore[method-assign]


def falcon_alibi_bias(num_heads: int, head_dim: int, max_len: int, dtype: torch.dtype) -> Tensor:
    """[H, max_len] ALiBi bias per key position, rounded as transformers' Falcon does (bf16, /sqrt(D))."""
    from transformers.models.falcon.modeling_falcon import build_alibi_tensor

    ones = torch.ones(1, max_len, dtype=torch.long)
    alibi = build_alibi_tensor(ones, num_heads, dtype=dtype)  # [H, 1, max_len]
    return (alibi / math.sqrt(head_dim)).reshape(num_heads, max_len)
