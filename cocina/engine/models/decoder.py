"""cocina's model code: one decoder for the supported families, run natively (one C call per step) or in torch.

:class:`CocinaModel` takes a loaded transformers model (transformers stays the loader, and the reference in
tests), gathers its weights into fused projections (:mod:`.weights`) and runs a step in one of two ways:

- **native** (CPU with cocina's kernels, bf16 weights or int8/int4): the weights are packed once for the kernels
  and the whole step (every layer, the KV cache writes, the attention, the LM head) is one call into
  ``csrc/forward.c`` over buffers allocated here once;
- **torch** (fp32, GPUs, or no kernels): the same layers written with PyTorch ops, attention through the runner's
  :class:`~cocina.engine.attention.PagedAttention`. In fp32 this path is what the parity tests hold to
  transformers' ``generate``; the native path is tested against it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cocina.engine.attention import PagedAttention
from cocina.engine.cpu_kernels import ClLayer, ClLinear, ClModel, KernelLib, PackedLinear
from cocina.engine.models.spec import ModelSpec
from cocina.engine.models.weights import LayerWeights, extract_weights, rope_tables

__all__ = ["CocinaModel", "NativeStep"]

_NORM = {"layer": 0, "rms": 1}
_ACT = {"gelu_tanh": 0, "gelu": 1, "silu": 2, "relu": 3}
_POS = {"learned": 1, "rope": 2, "alibi": 3}


@dataclass
class NativeStep:
    """One step for the native path: int32 arrays, as ``cocina_forward`` takes them (views of one buffer)."""

    tokens: Tensor  # [T]
    positions: Tensor  # [T]
    slots: Tensor  # [T]: the cache slot each row's K/V goes to
    tables: Tensor  # [sequences, max blocks]
    row_table: Tensor  # [T]: each row's sequence (its block table's row)
    ctx_lens: Tensor  # [T]: keys each row attends to (its position + 1)
    sample_rows: Tensor  # [S]


class _TorchLinear(nn.Module):
    """A dense layer in the model's dtype; GPT-2's ``[in, out]`` weights multiply as its Conv1D does (addmm)."""

    weight: Tensor
    bias: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None, conv1d: bool) -> None:
        super().__init__()
        self.conv1d = conv1d
        # [in, out] for Conv1D, else [out, in]; buffers, so the model's memory is counted by them
        self.register_buffer("weight", weight.t() if conv1d else weight, persistent=False)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.conv1d:
            if self.bias is None:
                return x @ self.weight
            return torch.addmm(self.bias, x, self.weight)
        return F.linear(x, self.weight, self.bias)


def _make_linear(weight: Tensor, bias: Tensor | None, conv1d: bool, kind: str | None, lib: KernelLib | None) -> Any:
    """The layer for one projection: packed for the kernels (bf16, int8, int4), torch.ao int8, or dense."""
    if kind in ("bf16", "int4") or (kind == "int8" and lib is not None):
        return PackedLinear(weight, bias, kind, lib)
    if kind == "int8":
        from cocina.engine.quantize import DynamicInt8Linear

        plain = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            plain.weight.copy_(weight)
            if bias is not None:
                plain.bias.copy_(bias)
        return DynamicInt8Linear.from_float(plain)
    return _TorchLinear(weight, bias, conv1d)


class CocinaModel:
    """A model run by cocina's own code over the runner's paged KV cache. See the module docstring."""

    def __init__(
        self,
        hf_model: Any,
        spec: ModelSpec,
        paged: PagedAttention,
        *,
        dtype: torch.dtype,
        quantize: str | None,
        lib: KernelLib | None,
        max_rows: int,
        max_len: int,
    ) -> None:
        self.spec, self.paged, self.dtype, self.lib = spec, paged, dtype, lib
        self.device = next(hf_model.parameters()).device
        w = extract_weights(hf_model, spec)
        # int8 and int4 everywhere on CPU; bf16 packs for the kernels only where they run natively.
        self.native = bool(
            lib is not None
            and self.device.type == "cpu"
            and (quantize in ("int8", "int4") or dtype == torch.bfloat16)
            and spec.head_dim % 16 == 0
            and spec.head_dim <= 512
        )
        kind = quantize if quantize in ("int8", "int4") else ("bf16" if self.native else None)
        self.kind = kind or str(dtype).removeprefix("torch.")
        self.tied = w.tied
        self.pos_emb = w.pos_emb
        self.final_w, self.final_b = w.final_w, w.final_b
        with torch.no_grad():
            self.layers = [self._layer(lw, kind) for lw in w.layers]
            self.head: Any = _make_linear(w.head_w, w.head_b, False, kind, lib)
        # The table the lookups read: none of its own when a tied bf16 head's panels serve (native), bf16 for the
        # native path's int8/int4 models (a lookup reads one row; the model's dtype decides the KV cache).
        self.embed: Tensor | None = w.embed
        if self._tied_bf16:
            self.embed = None
        elif self.native and w.embed.dtype != torch.float32:
            self.embed = w.embed.to(torch.bfloat16)
        self.rope: tuple[Tensor, Tensor] | None = None
        if spec.pos == "rope":
            cos, sin = rope_tables(hf_model, max_len)
            self.rope = (cos.to(self.device), sin.to(self.device))
        self.max_rows = max_rows
        self._struct: ClModel | None = None
        self._keep: list[Any] = []

    def _layer(self, lw: LayerWeights, kind: str | None) -> dict[str, Any]:
        lib = self.lib
        return {
            "norm1": (lw.norm1_w, lw.norm1_b),
            "norm2": (lw.norm2_w, lw.norm2_b),
            "qkv": _make_linear(lw.qkv_w, lw.qkv_b, lw.conv1d, kind, lib),
            "o": _make_linear(lw.o_w, lw.o_b, lw.conv1d, kind, lib),
            "up": _make_linear(lw.up_w, lw.up_b, lw.conv1d, kind, lib),
            "down": _make_linear(lw.down_w, lw.down_b, lw.conv1d, kind, lib),
        }

    def modules(self) -> list[nn.Module]:
        """Every linear layer (for memory accounting and reports)."""
        return [layer[name] for layer in self.layers for name in ("qkv", "o", "up", "down")] + [self.head]

    def weight_bytes(self) -> int:
        """Bytes of every tensor the model holds (packed panels, tables, norms), each counted once."""
        seen: dict[int, int] = {}

        def add(t: Tensor | None) -> None:
            if t is not None:
                seen[t.data_ptr()] = max(seen.get(t.data_ptr(), 0), t.numel() * t.element_size())

        add(self.embed)
        add(self.pos_emb)
        add(self.final_w)
        add(self.final_b)
        for layer in self.layers:
            for name in ("norm1", "norm2"):
                for t in layer[name]:
                    add(t)
        for mod in self.modules():
            for t in (*mod.parameters(), *mod.buffers()):
                add(t)
            packed = getattr(mod, "packed_bytes", None)  # torch.ao's int8 layers keep theirs out of sight
            if callable(packed):
                seen[id(mod)] = packed()
        return sum(seen.values())

    # -- the torch path --------------------------------------------------------------------------------------
    def _norm(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        if self.spec.norm == "layer":
            return F.layer_norm(x, (x.shape[-1],), w, b, self.spec.eps)
        # As transformers' RMSNorm: in fp32, then weight * result in the input's dtype.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.spec.eps)
        return w * xf.to(x.dtype)

    def _act(self, h: Tensor) -> Tensor:
        spec = self.spec
        if spec.gated:
            gate, up = h.chunk(2, dim=-1)
            return F.silu(gate) * up
        if spec.act == "gelu_tanh":
            return F.gelu(h, approximate="tanh")
        if spec.act == "gelu":
            return F.gelu(h)
        return F.relu(h)

    def _rotate(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """``x * cos + rotate_half(x) * sin`` with cos/sin [T, D] (x [heads, T, D]), as transformers does."""
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return (x * cos) + (rotated * sin)

    def forward_torch(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        """Hidden states [T, hidden] after the final norm, for a step whose metadata the paged cache holds."""
        spec = self.spec
        h_, kv_, d_ = spec.n_heads, spec.n_kv_heads, spec.head_dim
        assert self.embed is not None, "the torch path keeps its embedding table"
        x = F.embedding(input_ids, self.embed)
        if self.pos_emb is not None:
            x = x + F.embedding(positions, self.pos_emb)
        cos = sin = None
        if self.rope is not None:
            c, s = self.rope[0][positions], self.rope[1][positions]
            cos, sin = torch.cat((c, c), dim=-1).to(x.dtype), torch.cat((s, s), dim=-1).to(x.dtype)
        t = x.shape[0]
        for i, layer in enumerate(self.layers):
            h = self._norm(x, *layer["norm1"])
            qkv = layer["qkv"](h)
            q, k, v = qkv.split([h_ * d_, kv_ * d_, kv_ * d_], dim=-1)
            q = q.view(t, h_, d_).transpose(0, 1)  # [H, T, D]
            k = k.view(t, kv_, d_).transpose(0, 1)
            v = v.view(t, kv_, d_).transpose(0, 1)
            if cos is not None and sin is not None:
                q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            att = self.paged.attend(i, q, k, v, spec.attn_scales[i])  # [T, H, D]
            a = layer["o"](att.reshape(t, h_ * d_))
            if spec.parallel:
                m_in = self._norm(x, *layer["norm2"]) if spec.two_norms else h
                m = layer["down"](self._act(layer["up"](m_in)))
                x = (m + a) + x  # transformers: mlp_output += attention_output; output = mlp_output + residual
            else:
                x = x + a
                m = layer["down"](self._act(layer["up"](self._norm(x, *layer["norm2"]))))
                x = x + m
        return x

    def logits_torch(self, hidden: Tensor, rows: Tensor) -> Tensor:
        """fp32 logits [S, V] of the given rows of :meth:`forward_torch`'s output."""
        h = self._norm(hidden[rows], self.final_w, self.final_b)
        return self.head(h).float()

    # -- the native path -------------------------------------------------------------------------------------
    def bind_cache(self) -> None:
        """Build the C description of the model once the runner has allocated the KV cache."""
        if not self.native:
            return
        spec, paged = self.spec, self.paged
        keep = self._keep

        def f32(t: Tensor | None) -> int | None:
            if t is None:
                return None
            c = t.detach().float().contiguous()
            keep.append(c)
            return c.data_ptr()

        def lin(mod: PackedLinear) -> ClLinear:
            return mod.make_struct()

        layers = (ClLayer * spec.n_layers)()
        for i, layer in enumerate(self.layers):
            n1w, n1b = layer["norm1"]
            n2w, n2b = layer["norm2"]
            layers[i] = ClLayer(
                f32(n1w), f32(n1b), f32(n2w), f32(n2b), lin(layer["qkv"]), lin(layer["o"]), lin(layer["up"]),
                lin(layer["down"]), paged.k_cache[i].data_ptr(), paged.v_cache[i].data_ptr(),
                spec.attn_scales[i], 0,
            )
        keep.append(layers)
        head: PackedLinear = self.head
        # The embedding: the tied bf16 head's panels, else a table in the model's dtype.
        if self._tied_bf16:
            embed_kind, embed_ptr = 2, head.packed.data_ptr()
        else:
            assert self.embed is not None
            table = self.embed.contiguous()
            keep.append(table)
            embed_kind, embed_ptr = (1 if table.dtype == torch.bfloat16 else 0), table.data_ptr()
        r = self.max_rows
        mlp_ld = 2 * spec.inter if spec.gated else spec.inter
        bufs = {
            "x": torch.empty(r, spec.hidden),
            "xn": torch.empty(r, spec.hidden),
            "xn2": torch.empty(r, spec.hidden),
            "qkv": torch.empty(r, spec.qkv_dim),
            "attn": torch.empty(r, spec.n_heads * spec.head_dim),
            "mlp": torch.empty(r, mlp_ld),
        }
        keep.extend(bufs.values())
        cos, sin = self.rope if self.rope is not None else (None, None)
        alibi = paged.alibi_f32 if spec.pos == "alibi" else None
        if spec.pos == "alibi" and alibi is None and paged.alibi is not None:
            alibi = paged.alibi.float().contiguous()
            keep.append(alibi)
        kv_dtype = paged.k_cache[0].dtype
        self._struct = ClModel(
            spec.n_layers, spec.hidden, spec.n_heads, spec.n_kv_heads, spec.head_dim, spec.inter, spec.vocab,
            _NORM[spec.norm], _ACT[spec.act], _POS[spec.pos], int(spec.parallel), int(spec.gated),
            int(kv_dtype == torch.bfloat16), embed_kind, 0, spec.eps, 0.0,
            cos.data_ptr() if cos is not None else None, sin.data_ptr() if sin is not None else None,
            cos.shape[0] if cos is not None else 0,
            alibi.data_ptr() if alibi is not None else None, alibi.shape[1] if alibi is not None else 0,
            f32(self.pos_emb), embed_ptr, f32(self.final_w), f32(self.final_b), lin(head),
            paged.k_cache[0].shape[1], paged.block_size, layers, r,
            *(bufs[name].data_ptr() for name in ("x", "xn", "xn2", "qkv", "attn", "mlp")),
        )

    @property
    def _tied_bf16(self) -> bool:
        """The LM head's bf16 panels are also the input embedding (one copy of the table)."""
        head = self.head
        return self.native and self.tied and isinstance(head, PackedLinear) and head.kind == "bf16"

    def forward_native(self, step: NativeStep) -> Tensor:
        """fp32 logits [S, V] of the step's sample rows, from one call into the C model step."""
        assert self._struct is not None and self.lib is not None, "bind_cache() first"
        n = step.sample_rows.shape[0]
        logits = torch.empty(n, self.spec.vocab, dtype=torch.float32)
        rc = self.lib.forward(
            ctypes.byref(self._struct), step.tokens.shape[0], step.tokens.data_ptr(), step.positions.data_ptr(),
            step.slots.data_ptr(), step.tables.data_ptr(), step.tables.shape[1], step.row_table.data_ptr(),
            step.ctx_lens.data_ptr(), n, step.sample_rows.data_ptr(), logits.data_ptr(), torch.get_num_threads(),
        )
        if rc == -1:
            raise MemoryError("cocina model step: out of memory in a kernel")
        if rc != 0:
            raise RuntimeError(f"cocina model step failed (code {rc})")
        return logits
