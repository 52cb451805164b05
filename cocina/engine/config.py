"""Engine configuration: one frozen, validated object built by the CLI and passed down (no torch)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CPU_KERNELS", "DTYPES", "MODEL_IMPLS", "QUANTIZE_METHODS", "EngineConfig"]

DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZE_METHODS = ("int8", "int4", "bnb8", "bnb4")
MODEL_IMPLS = ("auto", "cocina", "transformers")
#: cocina.engine.cpu_kernels.CHOICES (repeated here: this module imports no torch)
CPU_KERNELS = ("auto", "avx512bf16", "avx512vnni", "avx512", "avx2", "torch")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


@dataclass(frozen=True)
class EngineConfig:
    """Knobs of the engine. Validated on construction; every error names the field and its bound.

    The KV cache is sized from ``kv_cache_bytes`` (or ``num_kv_blocks`` when given), never from the host's
    total memory, so an engine started on a large machine does not grab all of it.
    """

    block_size: int = 16
    kv_cache_bytes: int = 512 * 2**20  # memory budget for the KV cache; never sized from host RAM
    num_kv_blocks: int | None = None  # explicit override; else derived from kv_cache_bytes by the runner
    max_num_seqs: int = 64  # sequences per step
    max_num_batched_tokens: int = 1024  # tokens per step (prefill chunks + decodes)
    max_waiting: int = 512  # bounded waiting queue; add() beyond it raises EngineOverloaded
    max_model_len: int | None = None  # None: the model's own limit
    enable_prefix_caching: bool = True
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    quantize: str | None = None  # None | int8 | int4 (CPU) | bnb8 | bnb4 (CUDA)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # cocina's model code for the families it supports, else transformers' modules (auto); or force one.
    model_impl: str = "auto"
    # Which build of cocina's CPU kernels runs (see cpu_kernels.py); None: $COCINA_CPU_KERNELS, else auto.
    cpu_kernels: str | None = None
    # New prompts get a step of their own before the decodes run again (see the scheduler); None: on CPU,
    # where a step's cost grows with its rows and mixing only delays first tokens, not on GPU.
    prefill_first: bool | None = None

    def __post_init__(self) -> None:
        _require_int(self.block_size, "block_size", 1)
        _require_int(self.kv_cache_bytes, "kv_cache_bytes", 1)
        if self.num_kv_blocks is not None:
            _require_int(self.num_kv_blocks, "num_kv_blocks", 1)
        _require_int(self.max_num_seqs, "max_num_seqs", 1)
        _require_int(self.max_num_batched_tokens, "max_num_batched_tokens", 1)
        _require_int(self.max_waiting, "max_waiting", 1)
        if self.max_model_len is not None:
            _require_int(self.max_model_len, "max_model_len", 2)
        if not isinstance(self.enable_prefix_caching, bool):
            raise ValueError(f"enable_prefix_caching must be a bool, got {self.enable_prefix_caching!r}")
        if self.prefill_first is not None and not isinstance(self.prefill_first, bool):
            raise ValueError(f"prefill_first must be None or a bool, got {self.prefill_first!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.quantize is not None and self.quantize not in QUANTIZE_METHODS:
            raise ValueError(
                f"quantize must be None or one of {', '.join(QUANTIZE_METHODS)}; got {self.quantize!r}"
            )
        if self.model_impl not in MODEL_IMPLS:
            raise ValueError(f"model_impl must be one of {', '.join(MODEL_IMPLS)}; got {self.model_impl!r}")
        if self.cpu_kernels is not None and self.cpu_kernels not in CPU_KERNELS:
            raise ValueError(f"cpu_kernels must be None or one of {', '.join(CPU_KERNELS)}; got {self.cpu_kernels!r}")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {self.device!r}")


def _require_int(value: object, name: str, minimum: int) -> None:
    # bool is an int subclass; True as a block size is a typo, not a request for 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
