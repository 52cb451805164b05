"""The model runner: loads a Hugging Face causal LM, owns its paged KV cache, runs one scheduled step.

A step's tokens (decodes first, then prefill chunks) are packed into one row of T tokens with explicit
positions. The supported families run on cocina's own model code (:mod:`cocina.engine.models`): on CPUs with
cocina's kernels the whole step is one call into C, which writes each token's K/V into its cache slot and
attends through the block tables; otherwise the same model code runs PyTorch ops over
:mod:`cocina.engine.attention`'s paged attention. Other architectures run transformers' own modules with their
attention replaced by the paged attention. Either way the LM head runs only on the rows that need a sample (one
per sequence whose chunk reaches its end), which saves a [T, vocab] matmul on every prefill.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cocina.engine.attention import (
    ATTN_IMPLEMENTATION,
    PagedAttention,
    PrefillChunk,
    StepMetadata,
    falcon_alibi_bias,
    patch_falcon_attention,
    register_paged_attention,
)
from cocina.engine.config import EngineConfig
from cocina.engine.cpu_kernels import KernelLib
from cocina.engine.errors import EngineError
from cocina.engine.models import CocinaModel, ModelSpec, NativeStep, UnsupportedModel, model_spec
from cocina.engine.scheduler import ScheduledSeq, SchedulerOutput

__all__ = [
    "CpuBf16Linear",
    "MemoryReport",
    "ModelRunner",
    "TransposedEmbedding",
    "cpu_supports_bf16",
    "resolve_device",
    "resolve_dtype",
    "use_cpu_bf16_linears",
]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX512-BF16, AMX); without them PyTorch's bf16 is slow."""
    from cocina.engine.cpu_kernels import cpu_flags

    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str, device: torch.device, *, kernels: bool | None = None) -> torch.dtype:
    """``auto``: bf16 where it runs fast, else fp16 on GPU and fp32 on CPU.

    On CPU bf16 runs fast with native bf16 instructions, or through cocina's own kernels (``kernels``: whether
    they are loaded; None asks :func:`~cocina.engine.cpu_kernels.cpu_kernels`). Without either, PyTorch
    emulates bf16 and fp32 is faster.
    """
    if dtype != "auto":
        if dtype == "float16" and device.type == "cpu":
            raise EngineError("float16 is for GPUs; on CPU use bfloat16 or float32")
        if dtype not in _DTYPES:
            raise EngineError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(_DTYPES)}")
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_supports_bf16():
        return torch.bfloat16
    if kernels is None:
        from cocina.engine.cpu_kernels import cpu_kernels

        kernels = cpu_kernels() is not None
    return torch.bfloat16 if kernels else torch.float32


#: Rows from which a bf16 matmul on a CPU without native bf16 runs faster converted to fp32 (measured on
#: cocina's AVX-512 machines without AVX512-BF16: at 32 rows bf16 is 2.4x slower than convert + fp32).
UPCAST_MIN_ROWS = 12


class CpuBf16Linear(nn.Module):
    """A linear layer with bf16 weights for CPUs without native bf16 matmuls.

    On such CPUs PyTorch's bf16 matmul costs about one GEMV per row (no real GEMM kernel), and its GEMV is
    twice as fast with the weight stored ``[in, out]`` as with ``nn.Linear``'s ``[out, in]``. So the weight is
    kept transposed (same bytes, no copy kept), few-row inputs (decode) run in bf16 and many-row inputs
    (batched decode, prefill) run in fp32 on a converted copy of the weight made per call. Memory stays bf16.

    ``weight_t`` is ``[in, out]``; with ``shared_out_in`` it is instead an ``[out, in]`` tensor shared with
    another module (an LM head tied to the input embedding), used as it is.
    """

    def __init__(self, weight_t: Tensor, bias: Tensor | None, *, shared_out_in: bool = False) -> None:
        super().__init__()
        self.shared_out_in = shared_out_in
        w = weight_t if shared_out_in else weight_t.contiguous()
        # A shared tensor stays a Parameter of its owner too, so the tie (and the memory) is kept.
        self.weight_t = w if isinstance(w, nn.Parameter) else nn.Parameter(w, requires_grad=False)
        self.bias = nn.Parameter(bias.detach(), requires_grad=False) if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        """[..., in] -> [..., out]."""
        x2 = x.reshape(-1, x.shape[-1])
        w = self.weight_t
        if x2.shape[0] >= UPCAST_MIN_ROWS:
            # Convert the weight a few MB at a time: the fp32 chunk stays in cache for its matmul, and no
            # weight-sized buffer is allocated (for a 77 MB LM head that halves the time).
            xf = x2.float()
            n_in, n_out = (w.shape[1], w.shape[0]) if self.shared_out_in else (w.shape[0], w.shape[1])
            y = torch.empty(x2.shape[0], n_out, dtype=torch.float32, device=x.device)
            step = max(256, (1 << 20) // n_in)
            for i in range(0, n_out, step):
                if self.shared_out_in:
                    y[:, i : i + step] = torch.matmul(xf, w[i : i + step].float().t())
                else:
                    y[:, i : i + step] = torch.matmul(xf, w[:, i : i + step].float())
            if self.bias is not None:
                y += self.bias.float()
            y = y.to(x.dtype)
        elif self.shared_out_in:
            # For a weight stored [out, in], mv is the fastest bf16 form for one row.
            y = torch.mv(w, x2[0]).unsqueeze(0) if x2.shape[0] == 1 else torch.matmul(w, x2.t()).t()
            if self.bias is not None:
                y = y + self.bias
        else:
            y = torch.matmul(x2, w)
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])


class TransposedEmbedding(nn.Module):
    """An embedding table stored ``[dim, vocab]`` so that a tied LM head can use the fast GEMV layout.

    A lookup gathers a few columns (cheap); the LM head reads the whole table every step (the cost that
    matters), so the table takes the head's preferred layout.
    """

    def __init__(self, weight_t: nn.Parameter) -> None:
        super().__init__()
        self.weight_t = weight_t  # [dim, vocab]

    def forward(self, ids: Tensor) -> Tensor:
        """[...] token ids -> [..., dim]."""
        return self.weight_t.index_select(1, ids.reshape(-1)).t().reshape(*ids.shape, self.weight_t.shape[0])


def _is_linear(mod: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    from cocina.engine.cpu_kernels import PackedLinear
    from cocina.engine.quantize import DynamicInt8Linear, Int8Linear

    return isinstance(mod, nn.Linear | Conv1D | PackedLinear | DynamicInt8Linear | Int8Linear | CpuBf16Linear)


def use_cpu_bf16_linears(model: nn.Module, lib: KernelLib | None = None) -> int:
    """Swap ``nn.Linear``/GPT-2 ``Conv1D`` layers for bf16 layers that run fast on this CPU; returns how many.

    With cocina's kernels (``lib``, :mod:`cocina.engine.cpu_kernels`) the layers become
    :class:`~cocina.engine.cpu_kernels.PackedBf16Linear`; otherwise :class:`CpuBf16Linear`. A tied
    LM head keeps one table shared with the input embedding, so the embedding is not duplicated.
    """
    from transformers.pytorch_utils import Conv1D

    from cocina.engine.cpu_kernels import PackedBf16Embedding, PackedBf16Linear

    embed: Any = model.get_input_embeddings()  # type: ignore[operator]
    head: Any = model.get_output_embeddings()  # type: ignore[operator]
    tied = (
        type(embed) is nn.Embedding
        and isinstance(head, nn.Linear)
        and head.weight.data_ptr() == embed.weight.data_ptr()
    )
    if tied:
        new_embed: nn.Module
        new_head: nn.Module
        with torch.no_grad():
            if lib is not None:
                new_head = PackedBf16Linear(head.weight, head.bias, lib)
                new_embed = PackedBf16Embedding(new_head)
            else:
                # One [dim, vocab] table serves both (same memory, the head's fast layout).
                table = nn.Parameter(embed.weight.t().contiguous(), requires_grad=False)
                new_embed, new_head = TransposedEmbedding(table), CpuBf16Linear(table, head.bias)
        for name, mod in list(model.named_modules()):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            if mod is embed:
                setattr(parent, child, new_embed)
            elif mod is head:
                setattr(parent, child, new_head)
    embed_ptrs = {m.weight.data_ptr() for m in model.modules() if isinstance(m, nn.Embedding)}
    targets: list[tuple[str, Any]] = [
        (name, mod) for name, mod in model.named_modules() if isinstance(mod, nn.Linear | Conv1D)
    ]
    with torch.no_grad():
        for name, mod in targets:
            new: nn.Module
            weight_out_in = mod.weight if isinstance(mod, nn.Linear) else mod.weight.t()
            if lib is not None:
                # A head sharing an embedding that stays (not the tied pair above) gets its own panels.
                new = PackedBf16Linear(weight_out_in, mod.bias, lib)
            elif mod.weight.data_ptr() in embed_ptrs:
                new = CpuBf16Linear(mod.weight, mod.bias, shared_out_in=True)
            else:
                new = CpuBf16Linear(weight_out_in.t(), mod.bias)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return len(targets) + int(tied)


def _fuse_tanh_gelu(model: nn.Module) -> None:
    """Swap GPT-2's ``gelu_new`` (seven elementwise ops) for PyTorch's fused tanh GELU.

    The same function (``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``) in one pass over the
    activations instead of a dozen: a third of a 1024-token fp32 prefill step on CPU went to those passes.
    In bf16 it is also more exact (computed in fp32 inside the op, rounded once); in fp32 the two differ in
    the last bits only.
    """
    from transformers.activations import NewGELUActivation

    for name, mod in list(model.named_modules()):
        if isinstance(mod, NewGELUActivation):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, nn.GELU(approximate="tanh"))


@dataclass(frozen=True)
class MemoryReport:
    """What the engine holds in memory, reported at start (``cocina serve`` / ``predict`` print it)."""

    device: str
    dtype: str
    quantize: str | None
    weight_bytes: int
    kv_cache_bytes: int
    num_kv_blocks: int
    block_size: int
    max_model_len: int
    kernels: tuple[str, ...] = ()  # what runs each part: "linear layers: bf16, cocina avx512bf16 kernel (...)"

    def describe(self) -> str:
        """One line for logs."""
        gib = 2**30
        kernels = f"; kernels: {'; '.join(self.kernels)}" if self.kernels else ""
        return (
            f"model on {self.device} ({self.dtype}{', ' + self.quantize if self.quantize else ''}): "
            f"weights {self.weight_bytes / gib:.2f} GiB, KV cache {self.kv_cache_bytes / gib:.2f} GiB "
            f"({self.num_kv_blocks} blocks of {self.block_size} tokens), max_model_len {self.max_model_len}"
            f"{kernels}"
        )


class ModelRunner:
    """Owns the model and the KV cache; :meth:`run` computes the logits of one scheduled step.

    The supported families (:mod:`cocina.engine.models`) run on cocina's own model code: natively (the whole
    step in one C call) on CPUs with cocina's kernels, else in PyTorch. Other architectures, and bitsandbytes
    quantization, run transformers' own modules with their attention routed to the paged cache.
    """

    def __init__(self, model_path: str | Path, config: EngineConfig, *, model: Any = None) -> None:
        """Load ``model_path`` (local directory or hub id) per ``config``; ``model`` skips loading."""
        from cocina.engine.cpu_kernels import cpu_kernels

        self.config = config
        self.device = resolve_device(config.device)
        if config.quantize in ("int8", "int4") and self.device.type != "cpu":
            raise EngineError(f"quantize={config.quantize} is a CPU method; on GPU use bnb8 or bnb4")
        if config.quantize in ("bnb8", "bnb4") and self.device.type != "cuda":
            raise EngineError(f"quantize={config.quantize} needs a CUDA GPU; on CPU use int8 or int4")
        self.kernels: KernelLib | None = None
        if self.device.type == "cpu":
            try:
                self.kernels = cpu_kernels(config.cpu_kernels)
            except ValueError as e:
                raise EngineError(str(e)) from None
        self.dtype = resolve_dtype(config.dtype, self.device, kernels=self.kernels is not None)
        hf: Any = model if model is not None else self._load_hf(model_path)
        hf.eval()
        self.hf_config: Any = hf.config  # a transformers PretrainedConfig
        self.generation_config: Any = getattr(hf, "generation_config", None)
        self.block_size = config.block_size
        self.paged = PagedAttention(config.block_size)
        self.max_model_len = self._model_max_len()
        self.cocina: CocinaModel | None = None
        self.model: Any = None  # transformers' modules, when they run the model
        spec = self._cocina_spec(hf)
        if spec is not None:
            self.cocina = CocinaModel(
                hf,
                spec,
                self.paged,
                dtype=self.dtype,
                quantize=config.quantize,
                lib=self.kernels,
                max_rows=max(config.max_num_batched_tokens, config.max_num_seqs),
                max_len=self.max_model_len,
            )
            self.paged.probed_shapes = [(spec.n_kv_heads, spec.head_dim)] * spec.n_layers
            del hf  # cocina's model holds what it needs (packed copies, or views of the tensors it uses)
        else:
            self._setup_transformers(hf)
        kv_dtype = self.dtype
        bytes_per_block = self.paged.bytes_per_block(kv_dtype)
        self.num_kv_blocks = config.num_kv_blocks or config.kv_cache_bytes // bytes_per_block
        if self.num_kv_blocks < 1:
            raise EngineError(
                f"kv_cache_bytes={config.kv_cache_bytes} holds no block ({bytes_per_block} bytes per block)"
            )
        # A sequence must always fit in the cache alone, or the scheduler could never finish it.
        self.max_model_len = min(self.max_model_len, self.num_kv_blocks * self.block_size)
        self.paged.allocate(self.num_kv_blocks, kv_dtype, self.device)
        if getattr(self.hf_config, "alibi", False):
            self.paged.alibi = falcon_alibi_bias(
                self.hf_config.num_attention_heads, self._head_dim(), self.max_model_len, self.dtype
            ).to(self.device)
        self._use_cpu_kernels()
        if self.cocina is not None:
            self.cocina.bind_cache()
        self.kv_cache_bytes = bytes_per_block * self.num_kv_blocks
        if self.cocina is not None and self.cocina.native:
            self._warm_up()

    def _cocina_spec(self, hf: Any) -> ModelSpec | None:
        """The model's spec when cocina's model code runs it, else None (transformers' modules do)."""
        impl = self.config.model_impl
        if impl == "transformers" or self.config.quantize in ("bnb8", "bnb4"):
            if impl == "cocina":
                raise EngineError("model_impl=cocina: bitsandbytes quantization runs on transformers' modules")
            return None
        try:
            return model_spec(hf)
        except UnsupportedModel as e:
            if impl == "cocina":
                raise EngineError(f"model_impl=cocina: {e}") from None
            log.info("transformers' modules run this model (%s)", e)
            return None

    def _setup_transformers(self, hf: Any) -> None:
        """transformers' modules with their attention on the paged cache (architectures cocina has no code for)."""
        if self.config.quantize in ("int8", "int4"):
            from cocina.engine.quantize import quantize_model

            hf = quantize_model(hf, self.config.quantize, lib=self.kernels)
        elif self.dtype == torch.bfloat16 and self.device.type == "cpu" and not cpu_supports_bf16():
            use_cpu_bf16_linears(hf, self.kernels)
        self.model = hf
        _fuse_tanh_gelu(self.model)
        self._route_attention()
        self.base: nn.Module = self.model.base_model
        head = self.model.get_output_embeddings()
        if head is None:
            raise EngineError(f"{type(self.model).__name__} has no output embeddings (LM head)")
        self.lm_head: nn.Module = head
        # One forward on a single token with the cache unallocated records each layer's KV shape.
        self.paged.probing = True
        with torch.inference_mode():
            self._forward(
                torch.zeros(1, dtype=torch.long, device=self.device),
                torch.zeros(1, dtype=torch.long, device=self.device),
            )
        self.paged.probing = False
        if not self.paged.probed_shapes:
            raise EngineError(f"{type(self.model).__name__}: no attention layer reached the paged attention")

    def _warm_up(self) -> None:
        """One native step on a scratch block: the kernels' first-call costs are not paid by a request."""
        from cocina.engine.models import NativeStep

        i32 = torch.int32
        one = torch.zeros(1, dtype=i32)
        step = NativeStep(one, one, one, torch.zeros(1, 1, dtype=i32), one, torch.ones(1, dtype=i32), one)
        assert self.cocina is not None
        with torch.inference_mode():
            self.cocina.forward_native(step)
        for cache in (*self.paged.k_cache, *self.paged.v_cache):
            cache[:, : self.block_size].zero_()

    def _use_cpu_kernels(self) -> None:
        """Decode attention on cocina's CPU kernel where it applies (CPU, fp32/bf16, head_dim a multiple of 16)."""
        if self.device.type != "cpu" or self.dtype not in (torch.float32, torch.bfloat16) or self.kernels is None:
            return
        if any(d % 16 or d > 512 for _, d in self.paged.probed_shapes):
            return
        self.paged.kernels = self.kernels
        if self.paged.alibi is not None:
            self.paged.alibi_f32 = self.paged.alibi.float().contiguous()

    # -- loading -------------------------------------------------------------------------------------------
    def _load_hf(self, model_path: str | Path) -> Any:
        from transformers import AutoModelForCausalLM

        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.config.quantize in ("bnb8", "bnb4"):
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = (
                BitsAndBytesConfig(load_in_8bit=True)
                if self.config.quantize == "bnb8"
                else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=self.dtype, bnb_4bit_quant_type="nf4")
            )
            kwargs["device_map"] = {"": self.device.index or 0}
        model: Any = AutoModelForCausalLM.from_pretrained(str(model_path), **kwargs)
        if "quantization_config" not in kwargs:
            model = model.to(self.device)
        return model

    def _route_attention(self) -> None:
        """Send every attention layer to the paged cache (interface models) or patch it (Falcon)."""
        model = self.model
        for m in model.modules():
            m._cocina_paged = self.paged
        if getattr(model, "_supports_attention_backend", False):
            register_paged_attention()
            model.set_attn_implementation(ATTN_IMPLEMENTATION)
        elif self.hf_config.model_type == "falcon":
            patch_falcon_attention(model, self.paged)
            # Not a mask-interface name: transformers then skips building the [T, T] causal mask.
            self.hf_config._attn_implementation = ATTN_IMPLEMENTATION
        else:
            raise EngineError(
                f"{type(model).__name__} does not route attention through transformers' AttentionInterface "
                "and has no cocina adapter (supported: Llama/Mistral/Qwen2/GPT-2-style models and Falcon)"
            )

    def _model_max_len(self) -> int:
        cfg = self.hf_config
        limit = None
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                limit = value
                break
        limit = limit or 2048
        # Sliding-window attention is not implemented: keep sequences inside the window, where it is exact.
        window = getattr(cfg, "sliding_window", None)
        if isinstance(window, int) and window > 0 and getattr(cfg, "use_sliding_window", True):
            limit = min(limit, window)
        if self.config.max_model_len is not None:
            limit = min(limit, self.config.max_model_len)
        return limit

    def _head_dim(self) -> int:
        cfg = self.hf_config
        return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)

    def weight_bytes(self) -> int:
        """Bytes of the model's weights as they are held (packed int8/int4 weights, a tied table once)."""
        if self.cocina is not None:
            return self.cocina.weight_bytes()
        from cocina.engine.quantize import model_memory_bytes

        return model_memory_bytes(self.model)

    def weight_bytes_per_token(self) -> int:
        """Bytes of weights one decode step reads: all of them but the rows of tables that are only looked up."""
        total = self.weight_bytes()
        if self.cocina is not None:
            c = self.cocina
            lookups = [t for t in (c.embed, c.pos_emb) if t is not None]
            return total - sum(t.numel() * t.element_size() for t in lookups)
        head = self.model.get_output_embeddings()
        head_w = getattr(head, "weight", None)
        if head_w is None:
            head_w = getattr(head, "packed", None)
        head_ptr = head_w.data_ptr() if isinstance(head_w, torch.Tensor) else None
        return total - sum(
            m.weight.numel() * m.weight.element_size()
            for m in self.model.modules()
            if isinstance(m, nn.Embedding) and m.weight.data_ptr() != head_ptr
        )

    def memory_report(self) -> MemoryReport:
        """Weights and KV cache bytes, and the kernels that run each part, for the start-up line and the stats."""
        return MemoryReport(
            device=str(self.device),
            dtype=str(self.dtype).removeprefix("torch."),
            quantize=self.config.quantize,
            weight_bytes=self.weight_bytes(),
            kv_cache_bytes=self.kv_cache_bytes,
            num_kv_blocks=self.num_kv_blocks,
            block_size=self.block_size,
            max_model_len=self.max_model_len,
            kernels=tuple(f"{part}: {kernel}" for part, kernel in self.kernel_report().items()),
        )

    def kernel_report(self) -> dict[str, str]:
        """Which code runs each part of the model: the model code, each kind of layer, the attention."""
        from cocina.engine.cpu_kernels import PackedLinear, describe_kernel
        from cocina.engine.quantize import DynamicInt8Linear

        variant = self.kernels.variant if self.kernels is not None else None

        def layer_kernel(mod: Any) -> str:
            if isinstance(mod, PackedLinear):
                return describe_kernel(mod.kind, variant if mod.lib is not None else None)
            if isinstance(mod, DynamicInt8Linear):
                return "int8, torch.ao dynamic quantization (fbgemm)"
            weight = getattr(mod, "weight", None)
            dtype = str(weight.dtype).removeprefix("torch.") if isinstance(weight, torch.Tensor) else "?"
            return f"{dtype}, PyTorch matmul"

        report: dict[str, str] = {}
        if self.cocina is not None:
            c = self.cocina
            report["model code"] = (
                f"cocina ({c.spec.family}), whole step in C ({variant})" if c.native else
                f"cocina ({c.spec.family}), PyTorch ops"
            )
            report["linear layers"] = layer_kernel(c.layers[0]["qkv"])
            report["LM head"] = layer_kernel(c.head)
            report["attention"] = (
                f"cocina paged attention ({variant})" if c.native else
                "cocina paged decode attention (" + str(variant) + "), SDPA for prompts" if self.paged.kernels
                else "PyTorch (SDPA / matmuls)"
            )
            return report
        report["model code"] = f"transformers ({type(self.model).__name__})"
        kinds = sorted({layer_kernel(m) for m in self.model.modules() if _is_linear(m)})
        report["linear layers"] = "; ".join(kinds)
        report["attention"] = (
            f"cocina paged decode attention ({variant}), SDPA for prompts" if self.paged.kernels
            else "PyTorch (SDPA / matmuls)"
        )
        return report

    # -- one step ------------------------------------------------------------------------------------------
    def run(self, out: SchedulerOutput) -> Tensor:
        """Compute the step; return float32 logits [S, V] for the scheduled sequences that need a sample."""
        if not out.scheduled:
            return torch.empty(0, self.vocab_size, dtype=torch.float32, device=self.device)
        if self.cocina is not None and self.cocina.native:
            # No autograd state to switch off here (the C step sees plain buffers): entering inference mode would
            # cost more than preparing the step.
            return self.cocina.forward_native(self._prepare_native(out.scheduled))
        return self._run_torch(out)

    @torch.inference_mode()
    def _run_torch(self, out: SchedulerOutput) -> Tensor:
        input_ids, positions, sample_rows, metadata = self._prepare(out.scheduled)
        self.paged.metadata = metadata
        try:
            if self.cocina is not None:
                hidden = self.cocina.forward_torch(input_ids, positions)  # [T, hidden]
            else:
                hidden = self._forward(input_ids, positions)
        finally:
            self.paged.metadata = None
        if not sample_rows:
            return torch.empty(0, self.vocab_size, dtype=torch.float32, device=self.device)
        rows = torch.tensor(sample_rows, device=self.device)
        if self.cocina is not None:
            return self.cocina.logits_torch(hidden, rows)
        return self.lm_head(hidden[rows]).float()  # [S, V]

    @property
    def vocab_size(self) -> int:
        """Rows of the LM head (may exceed the tokenizer's vocabulary)."""
        if self.cocina is not None:
            return self.cocina.spec.vocab
        out_features = getattr(self.lm_head, "out_features", None)  # nn.Linear and cocina's packed layers
        if isinstance(out_features, int):
            return out_features
        weight = getattr(self.lm_head, "weight", None)
        return int(weight.shape[0]) if weight is not None else int(self.hf_config.vocab_size)

    def _forward(self, input_ids: Tensor, positions: Tensor) -> Tensor:
        """transformers' base model over one packed row: ids and positions [T] -> hidden states [T, hidden]."""
        out = self.base(input_ids=input_ids.unsqueeze(0), position_ids=positions.unsqueeze(0), use_cache=False)
        return out.last_hidden_state[0] if hasattr(out, "last_hidden_state") else out[0][0]

    def _prepare_native(self, scheduled: list[ScheduledSeq]) -> NativeStep:
        """The step as the C model step takes it: one row per token, each with its sequence and context length.

        Everything goes into one int32 tensor (one conversion from Python, the per-step cost that counts at
        batch 1) and the fields are views of it.
        """
        bs = self.block_size
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        row_table: list[int] = []
        samples: list[int] = []
        tables: list[list[int]] = []
        for i, s in enumerate(scheduled):
            seq, n = s.seq, s.num_new_tokens
            start = seq.num_computed_tokens
            table = seq.block_table
            tables.append(table)
            if n == 1:
                ids.append(seq.token_ids[start])
                pos.append(start)
                slots.append(table[start // bs] * bs + start % bs)
                row_table.append(i)
            else:
                ids.extend(seq.token_ids[start : start + n])
                pos.extend(range(start, start + n))
                slots.extend(table[p // bs] * bs + p % bs for p in range(start, start + n))
                row_table.extend([i] * n)
            if s.needs_sample:
                samples.append(len(ids) - 1)
        width = max(len(t) for t in tables)
        t = len(ids)
        flat = ids + pos + slots + row_table + [p + 1 for p in pos] + samples
        for table in tables:
            flat += table
            flat += [0] * (width - len(table))
        buf = torch.tensor(flat, dtype=torch.int32)
        cut = 5 * t + len(samples)
        return NativeStep(
            tokens=buf[:t],
            positions=buf[t : 2 * t],
            slots=buf[2 * t : 3 * t],
            row_table=buf[3 * t : 4 * t],
            ctx_lens=buf[4 * t : 5 * t],
            sample_rows=buf[5 * t : cut],
            tables=buf[cut:].view(len(tables), width),
        )

    def _prepare(self, scheduled: list[ScheduledSeq]) -> tuple[Tensor, Tensor, list[int], StepMetadata]:
        """Pack the step's tokens and build the attention metadata shared by all layers."""
        bs = self.block_size
        dev = self.device
        alibi = self.paged.alibi
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        sample_rows: list[int] = []
        # Leading single-token rows (decodes, or a prefill with one token left) are batched together.
        num_decodes = 0
        while num_decodes < len(scheduled) and scheduled[num_decodes].num_new_tokens == 1:
            num_decodes += 1
        dec_ctx: list[int] = []
        dec_tables: list[list[int]] = []
        chunks: list[tuple[int, int, int, list[int]]] = []  # q_start, n, start, block_table
        for i, s in enumerate(scheduled):
            seq, n = s.seq, s.num_new_tokens
            start = seq.num_computed_tokens
            q_start = len(ids)
            ids.extend(seq.token_ids[start : start + n])
            pos.extend(range(start, start + n))
            table = seq.block_table
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, start + n))
            if s.needs_sample:
                sample_rows.append(q_start + n - 1)
            if i < num_decodes:
                dec_ctx.append(start + 1)
                dec_tables.append(table)
            else:
                chunks.append((q_start, n, start, table))
        metadata = StepMetadata(slot_mapping=torch.tensor(slots, dtype=torch.long, device=dev))
        if num_decodes:
            max_ctx = max(dec_ctx)
            nblk = (max_ctx + bs - 1) // bs
            padded_tables = [t[:nblk] + [0] * (nblk - len(t[:nblk])) for t in dec_tables]
            metadata.num_decodes = num_decodes
        if num_decodes and self.paged.kernels is not None:
            # cocina's kernel reads the cache through the block tables: no slot lists, no masks.
            metadata.decode_tables = torch.tensor(padded_tables, dtype=torch.int32)
            metadata.decode_lens = torch.tensor(dec_ctx, dtype=torch.int32)
            blocks = [b for t in padded_tables for b in t]
            metadata.decode_bounds = (min(dec_ctx), max_ctx, min(blocks), max(blocks))
        elif num_decodes:
            table_t = torch.tensor(padded_tables, dtype=torch.long)  # [n, nblk]
            kpos = torch.arange(max_ctx)
            dslots = table_t[:, kpos // bs] * bs + kpos % bs  # [n, Lmax]
            valid = kpos[None, :] < torch.tensor(dec_ctx)[:, None]  # [n, Lmax]
            metadata.decode_slots = dslots.to(dev)
            if alibi is not None:
                bias = alibi[:, :max_ctx].unsqueeze(0).expand(num_decodes, -1, -1)  # [n, H, Lmax]
                metadata.decode_mask = bias.masked_fill(~valid.to(dev)[:, None, :], float("-inf")).unsqueeze(2)
            elif min(dec_ctx) != max_ctx:
                metadata.decode_mask = valid.to(dev)[:, None, None, :]  # [n, 1, 1, Lmax]
        for q_start, n, start, table in chunks:
            ctx = start + n
            ctx_slots = None
            mask: Tensor | None = None
            if start > 0 or alibi is not None:
                kpos = torch.arange(ctx)
                allowed = kpos[None, :] <= (start + torch.arange(n))[:, None]  # [n, ctx] causal with offset
                if alibi is not None:
                    mask = alibi[:, :ctx].unsqueeze(1).masked_fill(~allowed.to(dev)[None], float("-inf"))
                else:
                    mask = allowed.to(dev)[None]  # [1, n, ctx]
                if start > 0:
                    tt = torch.tensor(table, dtype=torch.long)
                    ctx_slots = (tt[kpos // bs] * bs + kpos % bs).to(dev)
            metadata.prefills.append(PrefillChunk(q_start, n, start, ctx_slots, mask))
        input_ids = torch.tensor(ids, dtype=torch.long, device=dev)
        positions = torch.tensor(pos, dtype=torch.long, device=dev)
        return input_ids, positions, sample_rows, metadata
