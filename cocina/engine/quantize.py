"""Weight quantization and dtype choice for the engine's model.

``quantize_model(model, "int8", "cpu")`` replaces every linear layer of a causal LM with an int8 one:
``nn.Linear`` and its subclasses (Llama, Mistral, Qwen, Falcon's ``FalconLinear`` — matched with
``isinstance``, not by exact class as ``torch.ao.quantization.quantize_dynamic`` does) and transformers'
``Conv1D`` (GPT-2; its weight is stored ``[in, out]``, transposed relative to ``nn.Linear``). Embeddings are
left alone. An ``lm_head`` tied to the input embedding is replaced by a quantized *copy*, so the embedding
keeps its full-precision table (that costs ``vocab x hidden`` bytes of extra memory for a faster lm_head;
pass ``quantize_lm_head=False`` to keep it tied and unquantized).

Three int8 CPU kernels are available (``kernel=``), all with per-output-channel symmetric int8 weights:

- ``"cocina"``: cocina's own AVX512-VNNI kernel (:class:`~cocina.engine.cpu_kernels.PackedInt8Linear`):
  activations quantized per row to uint8, int32 sums with ``vpdpbusd``; bf16 or fp32 in and out. The
  default where it runs (AVX512-VNNI and a C compiler): faster than ``"dynamic"`` at every shape measured.
- ``"dynamic"``: ``torch.ao``'s dynamically quantized linear (fbgemm/x86 packed weights; activations are
  quantized to uint8 per call, so the matmul is int8 x int8 with int32 accumulation). Inputs and outputs
  are fp32; a bf16 model's activations are cast around it.
- ``"weight_only"``: :class:`Int8Linear`, ``torch._weight_int8pack_mm``: int8 weights dequantized inside
  the kernel against bf16 (or fp32) activations. Halves weight traffic against bf16 but computes in
  floating point.

``benchmarks/quant_kernels.py`` times the PyTorch two (and torchao's int8 configs, when importable) at
GPT-2-small decode shapes; without cocina's kernel, the default (``kernel="auto"``) is the one of them that
measured fastest at batch 32 on cocina's CPUs — see ``DEFAULT_CPU_KERNEL`` for the numbers. torchao itself
is not used: it is not a dependency and measured no faster than ``torch.ao`` here.

``"bnb8"``/``"bnb4"`` (CUDA) are applied by the model runner at load time through transformers'
``BitsAndBytesConfig``; :func:`bnb_quantization_config` builds it, and :func:`quantize_model` accepts those
methods as no-ops for an already-loaded model.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "DEFAULT_CPU_KERNEL",
    "QUANTIZE_METHODS",
    "DynamicInt8Linear",
    "Int8Linear",
    "bnb_quantization_config",
    "model_memory_bytes",
    "quantize_model",
    "quantized_linear_count",
]

#: Valid ``EngineConfig.quantize`` values (None means no quantization).
QUANTIZE_METHODS: tuple[str, ...] = ("int8", "int4", "bnb8", "bnb4")

Kernel = Literal["auto", "cocina", "dynamic", "weight_only"]

#: The int8 CPU kernel used by ``kernel="auto"``, from benchmarks/quant_kernels.py and a GPT-2-small decode
#: step (1 thread, shared 2-core VM without avx512_bf16, medians): batch 32 took 105 ms dynamic int8 (fp32
#: model), 312 ms weight-only int8 (bf16), 220 ms fp32 and 526 ms bf16; batch 1 took 17 / 25 / 40 / 36 ms.
#: Per layer, [32,768]x[768,3072]: 0.44 ms dynamic, 3.3 weight-only, 2.3 fp32, 5.5 bf16.
DEFAULT_CPU_KERNEL: Literal["dynamic", "weight_only"] = "dynamic"


def _per_channel_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8 quantization of a ``[out, in]`` weight -> (int8, fp32 scales)."""
    w = weight.detach().to(torch.float32)
    scales = w.abs().amax(dim=1).clamp_min(1e-8) / 127.0
    q = torch.clamp(torch.round(w / scales.unsqueeze(1)), -127, 127).to(torch.int8)
    return q.contiguous(), scales


def _weight_bias(module: nn.Module, transposed: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A linear-like module's weight as ``[out, in]`` and its bias (None when absent)."""
    weight = module.weight
    bias = getattr(module, "bias", None)
    if not isinstance(weight, torch.Tensor) or not (bias is None or isinstance(bias, torch.Tensor)):
        raise TypeError(f"{type(module).__name__} has no tensor weight/bias to quantize")
    return (weight.t() if transposed else weight), bias


class Int8Linear(nn.Module):
    """Weight-only int8 linear layer: ``y = x @ (q * scale)^T + b`` via ``torch._weight_int8pack_mm``.

    The int8 weight ``[out, in]`` and its per-output-channel scales are buffers (so ``state_dict`` and
    :func:`model_memory_bytes` see them). Activations are computed in ``dtype`` (bf16 or fp32) and the
    result is returned in the input's dtype.
    """

    weight_int8: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.compute_dtype = dtype
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=dtype))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_float(
        cls, module: nn.Module, dtype: torch.dtype = torch.bfloat16, *, transposed: bool = False
    ) -> Int8Linear:
        """Quantize an ``nn.Linear`` (or a ``Conv1D`` with ``transposed=True``, weight ``[in, out]``)."""
        weight, bias = _weight_bias(module, transposed)
        out_f, in_f = weight.shape
        new = cls(in_f, out_f, bias is not None, dtype)
        q, scales = _per_channel_int8(weight)
        new.weight_int8.copy_(q)
        new.scales.copy_(scales.to(dtype))
        if bias is not None and new.bias is not None:
            new.bias.copy_(bias.detach().to(dtype))
        return new.to(weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).to(self.compute_dtype)
        y = torch._weight_int8pack_mm(x2, self.weight_int8, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.compute_dtype}"


class DynamicInt8Linear(nn.Module):
    """``torch.ao`` dynamic int8 linear (int8 x int8 matmul, fp32 in/out) that accepts any input dtype.

    Wraps ``torch.ao.nn.quantized.dynamic.Linear`` so a bf16 model can use it: the input is cast to fp32
    and the output back. The packed weight is not a parameter or buffer; :func:`model_memory_bytes`
    counts it through :meth:`packed_bytes`.
    """

    def __init__(self, inner: nn.Module, in_features: int, out_features: int) -> None:
        super().__init__()
        self.inner = inner
        self.in_features = in_features
        self.out_features = out_features

    @classmethod
    def from_float(cls, module: nn.Module, *, transposed: bool = False) -> DynamicInt8Linear:
        """Quantize an ``nn.Linear`` subclass (or a ``Conv1D`` with ``transposed=True``)."""
        from torch.ao.nn.quantized.dynamic import Linear as AoDynamicLinear
        from torch.ao.quantization import per_channel_dynamic_qconfig

        weight, bias = _weight_bias(module, transposed)
        out_f, in_f = weight.shape
        # torch.ao's from_float wants an exact nn.Linear with fp32 weights and a qconfig attached.
        plain = nn.Linear(in_f, out_f, bias=bias is not None)
        with torch.no_grad():
            plain.weight.copy_(weight.detach().to(torch.float32))
            if bias is not None:
                plain.bias.copy_(bias.detach().to(torch.float32))
        # Per-channel weights: per-tensor scales lose too much on layers with a few large rows.
        plain.qconfig = per_channel_dynamic_qconfig  # type: ignore[assignment]
        with warnings.catch_warnings():
            # torch 2.10+ warns that quantized tensor creation is deprecated on every layer; the kernel is
            # still the fastest int8 path on CPU (see DEFAULT_CPU_KERNEL), so keep logs and tests quiet.
            warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize_per")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            inner = AoDynamicLinear.from_float(plain)
        return cls(inner, in_f, out_f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            out: torch.Tensor = self.inner(x)
            return out
        return self.inner(x.to(torch.float32)).to(x.dtype)

    def packed_bytes(self) -> int:
        """Bytes of the packed int8 weight, its scales/zero points and the bias."""
        packed: Any = self.inner._packed_params
        weight, bias = packed._weight_bias()
        total = weight.numel() * weight.element_size()
        if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scales = weight.q_per_channel_scales()
            total += scales.numel() * (
                scales.element_size() + weight.q_per_channel_zero_points().element_size()
            )
        else:
            total += 8 + 8
        if bias is not None:
            total += bias.numel() * bias.element_size()
        return total

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _conv1d_class() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    return Conv1D


def _lm_head_names(model: nn.Module) -> set[str]:
    """Qualified names of the output projection (``get_output_embeddings``), usually ``lm_head``."""
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if head is None:
        return {"lm_head"} if isinstance(getattr(model, "lm_head", None), nn.Module) else set()
    return {name for name, mod in model.named_modules() if mod is head}


def quantize_model(
    model: nn.Module,
    method: str | None,
    device: str | torch.device = "cpu",
    *,
    kernel: Kernel = "auto",
    quantize_lm_head: bool = True,
    lib: Any = "default",
) -> nn.Module:
    """Quantize ``model``'s linear layers in place for ``method`` and return it.

    Args:
        model: a loaded causal LM (any transformers architecture built from ``nn.Linear``/``Conv1D``).
        method: None (unchanged), ``"int8"`` or ``"int4"`` (CPU: every linear layer; int4 is group-wise,
            :func:`~cocina.engine.cpu_kernels.pack_int4`), or ``"bnb8"``/``"bnb4"`` (CUDA: these must be
            applied at load time with :func:`bnb_quantization_config`; here they only check the device and
            return the model unchanged).
        device: where the model runs; int8 and int4 are CPU-only, bnb needs CUDA.
        kernel: int8 CPU kernel, ``"cocina"``, ``"dynamic"``, ``"weight_only"`` or ``"auto"`` (``"cocina"``
            where it runs, else ``DEFAULT_CPU_KERNEL``). int4 always packs for cocina's kernels (and runs
            unpacked in PyTorch without them).
        quantize_lm_head: also quantize the output projection (a tied one becomes an untied int8 copy).
        lib: cocina's loaded kernels (:func:`~cocina.engine.cpu_kernels.cpu_kernels`), None for none; by
            default the process's choice.

    Raises:
        ValueError: unknown method or kernel, or a method that does not run on ``device``.
    """
    if method is None:
        return model
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if method not in QUANTIZE_METHODS:
        raise ValueError(
            f"unknown quantization method {method!r}; valid: {', '.join(QUANTIZE_METHODS)} or None"
        )
    if method in ("bnb8", "bnb4"):
        _require_cuda(method, dev)
        return model
    if dev.type != "cpu":
        raise ValueError(f"quantize={method!r} runs on CPU only (device {dev}); on CUDA use 'bnb8' or 'bnb4'")
    from cocina.engine.cpu_kernels import PackedInt8Linear, PackedLinear, cpu_kernels

    if isinstance(lib, str):
        lib = cpu_kernels() if kernel in ("auto", "cocina") or method == "int4" else None
    if method == "int8" and kernel == "cocina" and lib is None:
        raise ValueError("int8 kernel 'cocina' needs cocina's compiled CPU kernels")
    if kernel == "auto":
        kernel = "cocina" if lib is not None else DEFAULT_CPU_KERNEL
    if kernel not in ("cocina", "dynamic", "weight_only"):
        raise ValueError(f"unknown int8 kernel {kernel!r}; valid: auto, cocina, dynamic, weight_only")

    conv1d = _conv1d_class()
    skip = set() if quantize_lm_head else _lm_head_names(model)
    model_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    act_dtype = torch.bfloat16 if model_dtype == torch.bfloat16 else torch.float32

    # Collect first, then replace: mutating while iterating named_modules would revisit new modules.
    targets: list[tuple[str, Any, bool]] = []
    for name, mod in model.named_modules():
        if name in skip:
            continue
        if isinstance(mod, nn.Linear):
            targets.append((name, mod, False))
        elif conv1d is not None and isinstance(mod, conv1d):
            targets.append((name, mod, True))
    with torch.no_grad():
        for name, mod, transposed in targets:
            new: nn.Module
            if method == "int4":
                weight, bias = _weight_bias(mod, transposed)
                new = PackedLinear(weight, bias, "int4", lib)
            elif kernel == "cocina":
                weight, bias = _weight_bias(mod, transposed)
                new = PackedInt8Linear(weight, bias, lib)
            elif kernel == "dynamic":
                new = DynamicInt8Linear.from_float(mod, transposed=transposed)
            else:
                new = Int8Linear.from_float(mod, act_dtype, transposed=transposed)
            _set_submodule(model, name, new)
    if quantize_lm_head and getattr(model, "config", None) is not None:
        # The head is no longer the embedding's tensor; stop transformers from re-tying them later.
        for cfg in (model.config, getattr(model.config, "get_text_config", lambda: None)()):
            if cfg is not None and hasattr(cfg, "tie_word_embeddings"):
                cfg.tie_word_embeddings = False
    return model


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def quantized_linear_count(model: nn.Module) -> tuple[int, int]:
    """(int8/int4 linear layers, remaining float ``nn.Linear``/``Conv1D`` layers) — for tests and logs."""
    from cocina.engine.cpu_kernels import PackedLinear

    conv1d = _conv1d_class()
    quantized = remaining = 0
    for mod in model.modules():
        if isinstance(mod, Int8Linear | DynamicInt8Linear) or (isinstance(mod, PackedLinear) and mod.kind != "bf16"):
            quantized += 1
        elif isinstance(mod, nn.Linear) or (conv1d is not None and isinstance(mod, conv1d)):
            remaining += 1
    return quantized, remaining


def model_memory_bytes(model: nn.Module) -> int:
    """Bytes held by ``model``: parameters and buffers (each tensor counted once) plus packed int8 weights.

    Tied parameters (a GPT-2 lm_head sharing the embedding) are counted once; ``torch.ao`` packed weights,
    which are neither parameters nor buffers, are counted through :meth:`DynamicInt8Linear.packed_bytes`;
    bitsandbytes' packed 4-bit parameters count at their stored (packed) size.
    """
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t is None:
            continue
        key = t.data_ptr() if t.device.type != "meta" else id(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    for mod in model.modules():
        if isinstance(mod, DynamicInt8Linear):
            total += mod.packed_bytes()
    return total


def _require_cuda(method: str, device: torch.device) -> None:
    if device.type != "cuda":
        raise ValueError(
            f"quantize={method!r} uses bitsandbytes CUDA kernels and needs a CUDA device (got {device}); "
            "on CPU use quantize='int8'"
        )


def bnb_quantization_config(method: str, device: str | torch.device = "cuda") -> Any:
    """transformers' ``BitsAndBytesConfig`` for ``"bnb8"`` (LLM.int8) or ``"bnb4"`` (NF4, bf16 compute).

    Pass it as ``quantization_config=`` to ``from_pretrained``. Raises ``ValueError`` for other methods or
    a non-CUDA device, and ``RuntimeError`` when bitsandbytes is not installed.
    """
    if method not in ("bnb8", "bnb4"):
        raise ValueError(f"bnb_quantization_config takes 'bnb8' or 'bnb4', got {method!r}")
    _require_cuda(method, torch.device(device) if not isinstance(device, torch.device) else device)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"quantize={method!r} needs bitsandbytes: pip install bitsandbytes") from e
    from transformers import BitsAndBytesConfig

    if method == "bnb8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
