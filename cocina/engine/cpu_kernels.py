"""cocina's own CPU kernels (AVX-512, ``csrc/cpu_kernels.c``): bf16 and int8 linear layers, decode attention.

**bf16 linear.** On CPUs without native bf16 (this project's machines: AVX-512 but no AVX512-BF16)
PyTorch's bf16 matmul has no real GEMM kernel: at 32 rows it is about 4x slower than fp32. The kernel
here reads the bf16 weight once, widens it in registers and accumulates in fp32: at 32 rows it runs at
about 140 GFLOP/s on one core, faster than fp32 MKL on the same shapes, and a single row (batch-1 decode)
streams the weight at close to memory bandwidth.

The C source ships in the package and is compiled at first use with the system C compiler (``$CC``, else
``cc``/``gcc``) into a cache directory (``$COCINA_CACHE_DIR``, else ``$XDG_CACHE_HOME/cocina`` or
``~/.cache/cocina``), named by a hash of the source and flags, and loaded with ctypes; torch is imported
first so the kernel's OpenMP calls share PyTorch's OpenMP runtime and thread pool. Without AVX-512, without
a compiler, or with ``COCINA_CPU_KERNELS=0``, :func:`cpu_kernels` returns ``None`` and the model runner
keeps its PyTorch paths (a warning says why once).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "PackedBf16Embedding",
    "PackedBf16Linear",
    "PackedInt8Linear",
    "cpu_flags",
    "cpu_has_avx512",
    "cpu_has_vnni",
    "cpu_kernels",
    "kernel_cache_dir",
    "pack_bf16_panels",
    "paged_decode_attention",
]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "cpu_kernels.c"
FLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mfma", "-shared", "-fPIC", "-std=c11"]
ABI = 3  # what cocina_kernels_abi() returns for this source
PANEL = 32  # output features per panel (one 64-byte line of bf16 per k)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none), read once."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_avx512() -> bool:
    """True on an x86-64 Linux CPU with AVX-512 F and BW (what the kernel uses)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return {"avx512f", "avx512bw"} <= cpu_flags()


def cpu_has_vnni() -> bool:
    """True when the CPU has AVX512-VNNI (``vpdpbusd``), which the int8 kernel needs."""
    return cpu_has_avx512() and "avx512_vnni" in cpu_flags()


def kernel_cache_dir() -> Path:
    """Where compiled kernels are kept."""
    if os.environ.get("COCINA_CACHE_DIR"):
        return Path(os.environ["COCINA_CACHE_DIR"]) / "kernels"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cocina" / "kernels"


def _compiler() -> str | None:
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc) or (cc if Path(cc).exists() else None)
    return shutil.which("cc") or shutil.which("gcc")


def _build(cc: str, out: Path) -> str | None:
    """Compiles the kernel to ``out`` (atomically); returns None, or the compiler's complaint."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create the cache directory {out.parent}: {e}"
    errors = ""
    # With OpenMP first; a toolchain without libgomp still gets a single-threaded kernel.
    for extra in (["-fopenmp"], []):
        try:
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        except OSError as e:
            return f"cannot write to the cache directory {out.parent}: {e}"
        os.close(fd)
        try:
            proc = subprocess.run(
                [cc, *FLAGS, *extra, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120
            )
            if proc.returncode == 0:
                os.replace(tmp, out)
                return None
            errors = proc.stderr.strip()[-2000:]
        except (OSError, subprocess.TimeoutExpired) as e:
            errors = str(e)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return errors or "the compiler failed without a message"


def _library_path(cc: str) -> Path:
    """The compiled library's cache path: a hash of the source, the compiler and the flags."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join([cc, *FLAGS]).encode()).hexdigest()[:16]
    return kernel_cache_dir() / f"cpu_kernels-{key}.so"


@functools.cache
def cpu_kernels() -> ctypes.CDLL | None:
    """The loaded kernel library, compiling it on first use; None where it cannot run (logged once)."""
    if os.environ.get("COCINA_CPU_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if not cpu_has_avx512():
        log.info("CPU kernels off: this CPU has no AVX-512 F/BW; the engine uses PyTorch's ops")
        return None
    cc = _compiler()
    if cc is None:
        log.warning(
            "CPU kernels off: no C compiler found (set CC, or install gcc); the engine uses PyTorch's ops, "
            "several times slower for bf16 at batch sizes above 1 on this CPU"
        )
        return None
    path = _library_path(cc)
    if not path.exists():
        log.info("compiling cocina's CPU kernels with %s (once; cached in %s)", cc, path.parent)
        problem = _build(cc, path)
        if problem is not None:
            log.warning("CPU kernels off: compiling %s failed: %s", SOURCE.name, problem)
            return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        log.warning("CPU kernels off: cannot load %s: %s", path, e)
        return None
    if lib.cocina_kernels_abi() != ABI:
        log.warning("CPU kernels off: %s is a different build (ABI mismatch)", path)
        return None
    ptr, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    # Both linears: x, x is bf16, M, K, packed weight, N, [their own weight arrays], bias or NULL, y, y is bf16,
    # threads; the int8 one's own arrays are its fp32 scales and int32 column sums.
    head, tail = [ptr, i32, i64, i64, ptr, i64], [ptr, ptr, i32, i32]
    signatures = {
        "cocina_bf16_linear": head + tail,
        "cocina_int8_linear": [*head, ptr, ptr, *tail],
        # q, q strides (t, h), k cache, v cache, slots, block tables, blocks per table, lengths, n, H, Hkv, D,
        # block size, scale, alibi or NULL, alibi length, out, bf16, threads
        "cocina_paged_decode_attention": [
            *(ptr, i64, i64, ptr, ptr, i64, ptr, i64, ptr, i64, i64, i64, i64, i64),
            *(f32, ptr, i64, ptr, i32, i32),
        ],
    }
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.restype = ctypes.c_int
        fn.argtypes = argtypes
    return lib


def paged_decode_attention(
    lib: ctypes.CDLL,
    q: Tensor,
    k_cache: Tensor,
    v_cache: Tensor,
    block_tables: Tensor,
    ctx_lens: Tensor,
    block_size: int,
    scale: float,
    alibi: Tensor | None,
    out: Tensor,
    *,
    bounds: tuple[int, int, int, int] | None = None,
) -> None:
    """Decode attention into ``out`` [n, H, D] (contiguous).

    ``q`` [n, H, D] with unit stride on D; caches [Hkv, slots, D]; ``block_tables`` [n, blocks] and
    ``ctx_lens`` [n] int32 (keys per sequence, the new token included); ``alibi`` [H, max_len] fp32 or None.
    q, caches and out share one dtype, bf16 or fp32. ``bounds`` is (shortest length, longest length, lowest
    block id, highest block id) when the caller already knows them (the runner does, from the lists it built
    the tensors from, once per step instead of once per layer); else they are read from the tensors.
    """
    n, heads, dim = q.shape
    # The C side trusts every pointer and length: anything off would read or write out of bounds, so check.
    if q.dtype not in (torch.bfloat16, torch.float32) or {k_cache.dtype, v_cache.dtype, out.dtype} != {q.dtype}:
        raise TypeError(
            f"paged decode attention: q, caches and out must share one dtype, bf16 or fp32; got {q.dtype}, "
            f"{k_cache.dtype}, {v_cache.dtype}, {out.dtype}"
        )
    if block_tables.dtype != torch.int32 or ctx_lens.dtype != torch.int32:
        raise TypeError("paged decode attention: block_tables and ctx_lens must be int32")
    if q.stride(2) != 1 or not (out.is_contiguous() and k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("paged decode attention: q needs unit stride on head_dim; caches and out contiguous")
    if not block_tables.is_contiguous() or not ctx_lens.is_contiguous():
        raise ValueError("paged decode attention: block_tables and ctx_lens must be contiguous")
    if tuple(out.shape) != (n, heads, dim) or k_cache.shape != v_cache.shape or k_cache.shape[2] != dim:
        raise ValueError(
            f"paged decode attention: shapes disagree (q {tuple(q.shape)}, out {tuple(out.shape)}, "
            f"caches {tuple(k_cache.shape)} / {tuple(v_cache.shape)})"
        )
    if block_tables.shape[0] != n or ctx_lens.shape[0] != n:
        raise ValueError("paged decode attention: one block table and one length per sequence")
    if n:
        if bounds is None:
            bounds = (int(ctx_lens.min()), int(ctx_lens.max()), int(block_tables.min()), int(block_tables.max()))
        shortest, longest, low_block, high_block = bounds
        if shortest < 1 or longest > block_tables.shape[1] * block_size:
            raise ValueError("paged decode attention: a context length is below 1 or beyond its block table")
        if alibi is not None:
            if alibi.dtype != torch.float32 or alibi.dim() != 2 or alibi.shape[0] != heads:
                raise ValueError("paged decode attention: alibi must be fp32 [heads, max_len]")
            if alibi.shape[1] < longest or not alibi.is_contiguous():
                raise ValueError(f"paged decode attention: alibi must cover {longest} positions, contiguous")
        if low_block < 0 or (high_block + 1) * block_size > k_cache.shape[1]:
            raise ValueError("paged decode attention: a block id is outside the cache")
    rc = lib.cocina_paged_decode_attention(
        q.data_ptr(),
        q.stride(0),
        q.stride(1),
        k_cache.data_ptr(),
        v_cache.data_ptr(),
        k_cache.shape[1],
        block_tables.data_ptr(),
        block_tables.shape[1],
        ctx_lens.data_ptr(),
        n,
        heads,
        k_cache.shape[0],
        dim,
        block_size,
        scale,
        alibi.data_ptr() if alibi is not None else None,
        alibi.shape[1] if alibi is not None else 0,
        out.data_ptr(),
        int(q.dtype == torch.bfloat16),
        torch.get_num_threads(),
    )
    if rc == -1:
        raise MemoryError("paged decode attention: no memory for the scores")
    if rc != 0:
        raise ValueError(f"paged decode attention: unsupported shape (heads {heads}, head_dim {dim})")


def _lane_order() -> Tensor:
    """Position within a panel's line of each output: output i at 2i, output 16 + i at 2i + 1."""
    half = PANEL // 2
    return torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten()


def pack_bf16_panels(weight: Tensor) -> Tensor:
    """``[N, K]`` weight -> bf16 panels ``[ceil(N / 32), K, 32]`` in the kernel's lane order (N padded with 0)."""
    n, k = weight.shape
    panels = -(-n // PANEL)
    padded = torch.zeros(panels * PANEL, k, dtype=torch.bfloat16)
    padded[:n] = weight.detach().to(torch.bfloat16)
    return padded.view(panels, PANEL, k).permute(0, 2, 1)[:, :, _lane_order()].contiguous()


def _check_stored(layer: nn.Module, **dtypes: torch.dtype) -> None:
    """The kernel reads its buffers with fixed dtypes; a later ``model.to(dtype)`` must not have changed them."""
    expected = {"bias_f32": torch.float32, **dtypes}
    for name, dtype in expected.items():
        t = getattr(layer, name)
        if t is not None and t.dtype != dtype:
            raise TypeError(
                f"{type(layer).__name__}.{name} is {t.dtype}, the kernel needs {dtype}: the model's dtype was "
                "changed after its layers were packed; convert the model first, then pack or quantize it"
            )


class _PackedLinear(nn.Module):
    """What the two packed linear layers share: the call into the C kernel around their own weight arguments."""

    packed: Tensor
    bias_f32: Tensor | None
    in_features: int
    out_features: int
    _fn: Any
    _stored: dict[str, torch.dtype]  # the buffers' dtypes the kernel reads them with

    def _weight_args(self) -> tuple[int, ...]:
        """Pointers the kernel takes after N (before the bias)."""
        return ()

    def forward(self, x: Tensor) -> Tensor:
        """[..., in] -> [..., out], in x's dtype (bf16 or fp32 run as they are; others through fp32)."""
        _check_stored(self, **self._stored)
        dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float32) else torch.float32
        x2 = x.reshape(-1, self.in_features).to(dtype).contiguous()
        m = x2.shape[0]
        y = torch.empty(m, self.out_features, dtype=dtype)
        if m:
            bias = self.bias_f32
            is_bf16 = int(dtype == torch.bfloat16)
            rc = self._fn(
                x2.data_ptr(),
                is_bf16,
                m,
                self.in_features,
                self.packed.data_ptr(),
                self.out_features,
                *self._weight_args(),
                bias.data_ptr() if bias is not None else None,
                y.data_ptr(),
                is_bf16,
                torch.get_num_threads(),
            )
            if rc != 0:
                raise MemoryError(f"{type(self).__name__}: no memory for a {m}x{self.in_features} copy of x")
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


class PackedBf16Linear(_PackedLinear):
    """``y = x @ W^T + b`` with W held as bf16 panels and run by the C kernel (x and y bf16 or fp32)."""

    bias_f32: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None, lib: ctypes.CDLL, *, packed: Tensor | None = None) -> None:
        """``weight`` is ``[out, in]``; ``packed`` (already packed panels) is used instead where given, shared."""
        super().__init__()
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        w = packed if packed is not None else pack_bf16_panels(weight)
        self.packed = w if isinstance(w, nn.Parameter) else nn.Parameter(w, requires_grad=False)
        self.register_buffer(
            "bias_f32", bias.detach().float().contiguous() if bias is not None else None, persistent=False
        )
        self._fn = lib.cocina_bf16_linear
        self._stored = {"packed": torch.bfloat16}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 panels"


class PackedBf16Embedding(nn.Module):
    """An embedding table that lives in a tied LM head's panels (one copy of the table serves both).

    The LM head reads the whole table every step; a lookup gathers a few rows out of the panels.
    """

    lane: Tensor

    def __init__(self, head: PackedBf16Linear) -> None:
        super().__init__()
        self.head = (head,)  # a tuple: not a submodule, so its parameter is counted once
        self.num_embeddings, self.embedding_dim = head.out_features, head.in_features
        inverse = torch.empty(PANEL, dtype=torch.long)
        inverse[_lane_order()] = torch.arange(PANEL)
        self.register_buffer("lane", inverse, persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        """[...] token ids -> [..., dim] (bf16). An id outside the vocabulary raises, as ``nn.Embedding``."""
        flat = ids.reshape(-1)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise IndexError(f"token id out of range: the vocabulary has {self.num_embeddings} entries")
        rows = self.head[0].packed[flat // PANEL, :, self.lane[flat % PANEL]]
        return rows.reshape(*ids.shape, self.embedding_dim)


class PackedInt8Linear(_PackedLinear):
    """``y = x @ W^T + b`` with W as symmetric per-output int8 (AVX512-VNNI kernel; x and y bf16 or fp32).

    The weight lives in the kernel's panels, ``[ceil(N / 32), ceil(K / 4), 32, 4]`` int8, with its scales
    and per-output sums of the int8 weight (which remove the activations' zero point of 128 exactly).
    Activations are quantized per row at each call: a row's scale is its largest magnitude / 127.
    """

    packed: Tensor
    scales: Tensor
    colsum: Tensor
    bias_f32: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None, lib: ctypes.CDLL) -> None:
        """``weight`` is ``[out, in]`` in any float dtype."""
        super().__init__()
        n, k = int(weight.shape[0]), int(weight.shape[1])
        self.out_features, self.in_features = n, k
        w = weight.detach().float()
        scales = w.abs().amax(dim=1).clamp_min(1e-8) / 127.0
        q = torch.clamp(torch.round(w / scales[:, None]), -127, 127).to(torch.int8)
        panels, groups = -(-n // PANEL), -(-k // 4)
        padded = torch.zeros(panels * PANEL, groups * 4, dtype=torch.int8)
        padded[:n, :k] = q
        packed = padded.view(panels, PANEL, groups, 4).permute(0, 2, 1, 3).contiguous()
        self.register_buffer("packed", packed)
        self.register_buffer("scales", scales.contiguous())
        self.register_buffer("colsum", q.sum(dim=1, dtype=torch.int32).contiguous())
        self.register_buffer("bias_f32", bias.detach().float().contiguous() if bias is not None else None)
        self._fn = lib.cocina_int8_linear
        self._stored = {"packed": torch.int8, "scales": torch.float32, "colsum": torch.int32}

    def dequantized_weight(self) -> Tensor:
        """The ``[out, in]`` fp32 weight this layer computes with (for tests and inspection)."""
        n, k = self.out_features, self.in_features
        q = self.packed.permute(0, 2, 1, 3).reshape(-1, self.packed.shape[1] * 4)[:n, :k]
        return q.float() * self.scales[:, None]

    def _weight_args(self) -> tuple[int, ...]:
        return (self.scales.data_ptr(), self.colsum.data_ptr())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 panels"


def build_kernels() -> Path:
    """Compile the kernels into the cache now (an image build does this once, so pods never compile them).

    Compiled whatever this machine's CPU: the flags target AVX-512 explicitly, not the build host; at run time
    `cpu_kernels()` still checks the CPU it runs on. Raises RuntimeError when there is no compiler or it fails."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc)")
    path = _library_path(cc)
    problem = _build(cc, path)
    if problem is not None:
        raise RuntimeError(f"compiling {SOURCE.name} failed: {problem}")
    return path


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--build"]:
        sys.exit("usage: python -m cocina.engine.cpu_kernels --build")
    try:
        print(build_kernels())
    except RuntimeError as exc:
        sys.exit(f"cocina: {exc}")
