"""What cocina's model code needs to know about a model: its shape and which variant of each part it uses.

Three layer shapes cover the supported families; :func:`model_spec` reads them from a loaded transformers model:

| family | norms | positions | MLP | attention + MLP |
| --- | --- | --- | --- | --- |
| GPT-2 | LayerNorm | learned | GELU (tanh) | sequential |
| Llama, Mistral, Qwen2 | RMSNorm | rotary | SiLU-gated (gate and up fused) | sequential |
| Falcon | LayerNorm | rotary or ALiBi | GELU | sequential (rw-1b) or parallel, one or two norms (7b, 40b) |

Anything else (another family, a rotary scaling that changes with the sequence length, sliding windows kept by the
model) raises :class:`UnsupportedModel`, and the runner keeps transformers' own modules for that model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["FAMILIES", "ModelSpec", "UnsupportedModel", "model_spec"]

#: transformers model types cocina's model code runs, and the family each belongs to.
FAMILIES = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "qwen2": "llama", "falcon": "falcon"}
_ACTS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "silu": "silu", "relu": "relu"}


class UnsupportedModel(Exception):
    """This model has no cocina model code (the message says why); transformers' modules run it instead."""


@dataclass(frozen=True)
class ModelSpec:
    """The shape of one decoder-only model, as cocina's model code runs it."""

    family: str  # gpt2 | llama | falcon
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    inter: int  # MLP width (of each of gate and up when gated)
    vocab: int
    norm: str  # layer | rms
    eps: float
    act: str  # gelu_tanh | gelu | silu | relu
    gated: bool  # act(x @ gate) * (x @ up)
    pos: str  # learned | rope | alibi
    parallel: bool  # attention and MLP both read the layer's input (Falcon-7b/40b)
    two_norms: bool  # a second norm: before the MLP (sequential), or of the MLP's input (parallel)
    attn_scales: tuple[float, ...]  # per layer (GPT-2 can scale by the inverse layer index)
    max_positions: int

    @property
    def qkv_dim(self) -> int:
        """Outputs of the fused q|k|v projection."""
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim


def _int(cfg: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(cfg, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _check_rotary(model: Any) -> None:
    rotary = getattr(model.base_model, "rotary_emb", None)
    if rotary is None:
        raise UnsupportedModel("no rotary embedding module where one was expected")
    rope_type = getattr(rotary, "rope_type", "default")
    if rope_type in ("dynamic", "longrope"):
        # Their frequencies change with the sequence length; the tables here are computed once.
        raise UnsupportedModel(f"rotary scaling {rope_type!r} is not implemented in cocina's model code")


def model_spec(model: Any) -> ModelSpec:
    """The spec of a loaded transformers causal LM; raises :class:`UnsupportedModel`."""
    cfg = model.config
    family = FAMILIES.get(getattr(cfg, "model_type", ""))
    if family is None:
        raise UnsupportedModel(f"model type {getattr(cfg, 'model_type', None)!r} has no cocina model code")
    hidden = int(cfg.hidden_size)
    heads = int(cfg.num_attention_heads)
    n_layers = int(cfg.num_hidden_layers)
    vocab = int(cfg.vocab_size)
    if family == "gpt2":
        head_dim = hidden // heads
        if getattr(cfg, "reorder_and_upcast_attn", False):
            raise UnsupportedModel("GPT-2's reorder_and_upcast_attn is not implemented")
        base = head_dim**-0.5 if cfg.scale_attn_weights else 1.0
        scales = tuple(
            base / (i + 1) if cfg.scale_attn_by_inverse_layer_idx else base for i in range(n_layers)
        )
        act = _ACTS.get(cfg.activation_function)
        if act is None:
            raise UnsupportedModel(f"activation {cfg.activation_function!r} is not implemented")
        return ModelSpec(
            family, n_layers, hidden, heads, heads, head_dim, int(cfg.n_inner or 4 * hidden), vocab, "layer",
            float(cfg.layer_norm_epsilon), act, False, "learned", False, True, scales, int(cfg.n_positions),
        )
    if family == "llama":
        head_dim = _int(cfg, "head_dim") or hidden // heads
        kv = _int(cfg, "num_key_value_heads") or heads
        act = _ACTS.get(cfg.hidden_act)
        if act != "silu":
            raise UnsupportedModel(f"gated MLP with {cfg.hidden_act!r} is not implemented")
        _check_rotary(model)
        return ModelSpec(
            family, n_layers, hidden, heads, kv, head_dim, int(cfg.intermediate_size), vocab, "rms",
            float(cfg.rms_norm_eps), "silu", True, "rope", False, True, (head_dim**-0.5,) * n_layers,
            _int(cfg, "max_position_embeddings") or 2048,
        )
    # Falcon
    head_dim = hidden // heads
    if cfg.new_decoder_architecture:
        kv = int(cfg.num_kv_heads)
    elif cfg.multi_query:
        kv = 1
    else:
        kv = heads
    parallel = bool(cfg.new_decoder_architecture or cfg.parallel_attn)
    two_norms = (not parallel) or (bool(cfg.new_decoder_architecture) and cfg.num_ln_in_parallel_attn != 1)
    act = _ACTS.get(getattr(cfg, "activation", "gelu"))
    if act is None:
        raise UnsupportedModel(f"activation {cfg.activation!r} is not implemented")
    if not cfg.alibi:
        _check_rotary(model)
    return ModelSpec(
        family, n_layers, hidden, heads, kv, head_dim, int(getattr(cfg, "ffn_hidden_size", None) or 4 * hidden),
        vocab, "layer", float(cfg.layer_norm_epsilon), act, False, "alibi" if cfg.alibi else "rope", parallel,
        two_norms, (1.0 / math.sqrt(head_dim),) * n_layers, _int(cfg, "max_position_embeddings") or 2048,
    )
