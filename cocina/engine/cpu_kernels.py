"""cocina's CPU kernels (``csrc/``): linear layers in bf16, int8 and int4, paged attention, a whole model step.

**Variants.** The same C sources are compiled once per instruction set, best first:

| variant | CPUs | bf16 linear | int8 / int4 linear |
| --- | --- | --- | --- |
| ``avx512bf16`` | Sapphire Rapids, Zen 4/5, Cooper Lake | ``vdpbf16ps`` (native bf16) | ``vpdpbusd`` (VNNI) |
| ``avx512vnni`` | Ice Lake, Cascade Lake | widened to fp32, FMA | ``vpdpbusd`` |
| ``avx512`` | Skylake-X | widened to fp32, FMA | ``vpmaddubsw`` |
| ``avx2`` | most laptops, Zen 1-3, Haswell and later | widened, 8-wide FMA | ``vpmaddubsw`` |
| ``torch`` | anything | PyTorch's ops | PyTorch's ops |

``auto`` picks the first variant this CPU runs; ``COCINA_CPU_KERNELS`` (or ``EngineConfig.cpu_kernels``) forces
one, which is how every path is tested on one machine (``0``/``off`` means ``torch``). Forcing a variant the CPU
cannot run is an error, not a silent fallback.

**Building.** ``cocina kernels build`` (run by ``scripts/install.sh`` and the deploy images) compiles every
variant the CPU runs; otherwise a variant is compiled at its first use. The compiler is ``$CC``, else ``cc`` or
``gcc``; builds are cached in ``$COCINA_CACHE_DIR/kernels`` (else ``$XDG_CACHE_HOME/cocina/kernels`` or
``~/.cache/cocina/kernels``), named by a hash of the sources, compiler and flags, and loaded with ctypes after
torch, so their OpenMP loops share PyTorch's OpenMP runtime and follow ``torch.get_num_threads()``. Without a
compiler (or when compiling fails) a warning says so once and the engine runs PyTorch's ops.

**Weights** are packed once at load (the layouts are described in ``csrc/linear.c``; they are the same for
every variant, so packing needs no compiled code): :func:`pack_bf16`, :func:`pack_int8`, :func:`pack_int4`.
:class:`PackedLinear` is one such layer as a module; it runs the kernel, or PyTorch on the unpacked weight
when no kernel is loaded.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import mmap
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "CHOICES",
    "VARIANTS",
    "ClLayer",
    "ClLinear",
    "ClModel",
    "KernelLib",
    "PackedBf16Embedding",
    "PackedBf16Linear",
    "PackedInt8Linear",
    "PackedLinear",
    "build_kernels",
    "choose_variant",
    "cpu_flags",
    "cpu_has_avx512",
    "cpu_has_vnni",
    "cpu_kernels",
    "describe_kernel",
    "kernel_cache_dir",
    "load_variant",
    "pack_bf16",
    "pack_int4",
    "pack_int8",
    "paged_decode_attention",
    "runnable_variants",
    "unpack_bf16",
    "unpack_int4",
]

log = logging.getLogger(__name__)

CSRC = Path(__file__).with_name("csrc")
SOURCES = ("linear.c", "attention.c", "forward.c")
HEADERS = ("simd.h", "kernels.h")
ABI = 5  # what cocina_kernels_abi() returns for these sources
PANEL = 32  # output features per panel (every packed layout)
INT4_GROUP = 32  # k's per int4 scale
INT4_GROUP_BYTES = 576  # per panel and group: 32 x 32 nibbles + 32 fp16 scales
_AVX512 = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"]
_AVX512_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c"})


@dataclass(frozen=True)
class Variant:
    """One build of the kernels: the CPU flags it needs and the compiler flags it is built with."""

    name: str
    needs: frozenset[str]
    cflags: tuple[str, ...]
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "avx512bf16",
            _AVX512_FLAGS | {"avx512_bf16", "avx512_vnni"},
            ("-DCOCINA_AVX512", "-DCOCINA_BF16DP", "-DCOCINA_VNNI", *_AVX512, "-mavx512bf16", "-mavx512vnni"),
            "AVX-512 with native BF16 (vdpbf16ps) and VNNI",
        ),
        Variant(
            "avx512vnni",
            _AVX512_FLAGS | {"avx512_vnni"},
            ("-DCOCINA_AVX512", "-DCOCINA_VNNI", *_AVX512, "-mavx512vnni"),
            "AVX-512 with VNNI, bf16 widened to fp32",
        ),
        Variant("avx512", _AVX512_FLAGS, ("-DCOCINA_AVX512", *_AVX512), "AVX-512 F/BW/VL/DQ"),
        Variant(
            "avx2", frozenset({"avx2", "fma", "f16c"}), ("-DCOCINA_AVX2", "-mavx2", "-mfma", "-mf16c"), "AVX2 + FMA"
        ),
    )
}
#: Values of the kernel setting (``COCINA_CPU_KERNELS``, ``EngineConfig.cpu_kernels``).
CHOICES: tuple[str, ...] = ("auto", *VARIANTS, "torch")
_OFF = ("0", "false", "no", "off", "none")


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


def _x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def runnable_variants() -> list[str]:
    """The variants this CPU can run, best first (empty off x86-64)."""
    if not _x86():
        return []
    flags = cpu_flags()
    return [name for name, v in VARIANTS.items() if v.needs <= flags]


def cpu_has_avx512() -> bool:
    """True on an x86-64 CPU that runs the ``avx512`` variant."""
    return "avx512" in runnable_variants()


def cpu_has_vnni() -> bool:
    """True when the CPU has AVX512-VNNI (``vpdpbusd``)."""
    return cpu_has_avx512() and "avx512_vnni" in cpu_flags()


def choose_variant(setting: str | None = None) -> str:
    """The variant a setting means on this CPU: a name, ``torch``, or (``auto``) the best runnable one.

    ``setting`` None reads ``COCINA_CPU_KERNELS`` (default ``auto``). Raises ``ValueError`` for an unknown name
    or a variant this CPU cannot run.
    """
    raw = setting if setting is not None else os.environ.get("COCINA_CPU_KERNELS", "auto")
    choice = raw.strip().lower() or "auto"
    if choice in _OFF:
        return "torch"
    if choice in ("1", "on", "true", "yes"):
        choice = "auto"
    if choice == "auto":
        runnable = runnable_variants()
        return runnable[0] if runnable else "torch"
    if choice == "torch":
        return "torch"
    if choice not in VARIANTS:
        raise ValueError(f"unknown CPU kernel setting {raw!r}; valid: {', '.join(CHOICES)}")
    if choice not in runnable_variants():
        missing = sorted(VARIANTS[choice].needs - cpu_flags()) if _x86() else ["x86-64"]
        raise ValueError(f"CPU kernels {choice!r} cannot run on this CPU (it lacks {', '.join(missing)})")
    return choice


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


def _flags(variant: Variant) -> list[str]:
    return ["-O3", "-std=c11", "-shared", "-fPIC", *variant.cflags]


def _build_path(cc: str, variant: Variant) -> Path:
    digest = hashlib.sha256()
    for name in (*SOURCES, *HEADERS):
        digest.update((CSRC / name).read_bytes())
    digest.update(" ".join([cc, *_flags(variant)]).encode())
    return kernel_cache_dir() / f"cocina-kernels-{variant.name}-{digest.hexdigest()[:16]}.so"


def _compile(cc: str, variant: Variant, out: Path) -> str | None:
    """Compiles ``variant`` to ``out`` (atomically); returns None, or the compiler's complaint."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create the cache directory {out.parent}: {e}"
    errors = ""
    # With OpenMP first; a toolchain without libgomp still gets single-threaded kernels.
    for extra in (["-fopenmp"], []):
        try:
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        except OSError as e:
            return f"cannot write to the cache directory {out.parent}: {e}"
        os.close(fd)
        try:
            cmd = [cc, *_flags(variant), *extra, "-o", tmp, *(str(CSRC / s) for s in SOURCES), "-lm"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
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


class ClLinear(ctypes.Structure):
    """``cl_linear`` of csrc/kernels.h."""

    _fields_ = [
        ("kind", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
        ("N", ctypes.c_int64),
        ("K", ctypes.c_int64),
        ("w", ctypes.c_void_p),
        ("scales", ctypes.c_void_p),
        ("colsum", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
    ]


class ClLayer(ctypes.Structure):
    """``cl_layer`` of csrc/forward.c."""

    _fields_ = [
        ("norm1_w", ctypes.c_void_p),
        ("norm1_b", ctypes.c_void_p),
        ("norm2_w", ctypes.c_void_p),
        ("norm2_b", ctypes.c_void_p),
        ("qkv", ClLinear),
        ("o", ClLinear),
        ("up", ClLinear),
        ("down", ClLinear),
        ("k_cache", ctypes.c_void_p),
        ("v_cache", ctypes.c_void_p),
        ("attn_scale", ctypes.c_float),
        ("reserved", ctypes.c_int32),
    ]


class ClModel(ctypes.Structure):
    """``cl_model`` of csrc/forward.c."""

    _fields_ = [
        *((name, ctypes.c_int64) for name in ("n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "inter")),
        ("vocab", ctypes.c_int64),
        *((name, ctypes.c_int32) for name in ("norm", "act", "pos", "parallel", "gated", "kv_bf16", "embed_kind")),
        ("reserved", ctypes.c_int32),
        ("eps", ctypes.c_float),
        ("reserved_f", ctypes.c_float),
        ("rope_cos", ctypes.c_void_p),
        ("rope_sin", ctypes.c_void_p),
        ("rope_len", ctypes.c_int64),
        ("alibi", ctypes.c_void_p),
        ("alibi_len", ctypes.c_int64),
        ("pos_emb", ctypes.c_void_p),
        ("embed", ctypes.c_void_p),
        ("final_w", ctypes.c_void_p),
        ("final_b", ctypes.c_void_p),
        ("head", ClLinear),
        ("kv_slots", ctypes.c_int64),
        ("block_size", ctypes.c_int64),
        ("layers", ctypes.POINTER(ClLayer)),
        ("max_rows", ctypes.c_int64),
        *((name, ctypes.c_void_p) for name in ("x", "xn", "xn2", "qkv", "attn", "mlp")),
    ]


@dataclass(frozen=True)
class KernelLib:
    """One loaded variant: its name, its file and its C functions (argument types set)."""

    variant: str
    path: Path
    cdll: ctypes.CDLL

    @property
    def linear(self) -> Any:
        return self.cdll.cocina_linear

    @property
    def attention(self) -> Any:
        return self.cdll.cocina_paged_attention

    @property
    def forward(self) -> Any:
        return self.cdll.cocina_forward


def _declare(cdll: ctypes.CDLL) -> None:
    p, i32, i64, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
    signatures: dict[str, list[Any]] = {
        # layer, x, M, ldx, y, ldy, accumulate, threads
        "cocina_linear": [ctypes.POINTER(ClLinear), p, i64, i64, p, i64, i32, i32],
        # q, q strides (row, head), k cache, v cache, slots, kv bf16, tables, blocks per table, row tables,
        # lengths, rows, H, Hkv, D, block size, scale, alibi or NULL, alibi length, out, out row stride, threads
        "cocina_paged_attention": [p, i64, i64, p, p, i64, i32, p, i64, p, p, i64, i64, i64, i64, i64, f32, p, i64,
                                   p, i64, i32],
        # model, rows, tokens, positions, slots, tables, blocks per table, row tables, lengths, samples,
        # sample rows, logits, threads
        "cocina_forward": [ctypes.POINTER(ClModel), i64, p, p, p, p, i64, p, p, i64, p, p, i32],
    }
    for name, argtypes in signatures.items():
        fn = getattr(cdll, name)
        fn.restype = ctypes.c_int
        fn.argtypes = argtypes
    cdll.cocina_kernels_isa.restype = ctypes.c_char_p


@functools.cache
def load_variant(name: str) -> KernelLib | None:
    """Variant ``name`` compiled (once, cached on disk) and loaded; None with a warning where that fails."""
    variant = VARIANTS[name]
    cc = _compiler()
    if cc is None:
        log.warning(
            "CPU kernels off: no C compiler found (set CC, or install gcc); the engine uses PyTorch's ops, "
            "several times slower (run `cocina kernels build` once a compiler is there)"
        )
        return None
    path = _build_path(cc, variant)
    if not path.exists():
        log.info("compiling cocina's CPU kernels (%s) with %s (once; cached in %s)", name, cc, path.parent)
        problem = _compile(cc, variant, path)
        if problem is not None:
            log.warning("CPU kernels off: compiling the %s kernels failed: %s", name, problem)
            return None
    try:
        cdll = ctypes.CDLL(str(path))
    except OSError as e:
        log.warning("CPU kernels off: cannot load %s: %s", path, e)
        return None
    if cdll.cocina_kernels_abi() != ABI:
        log.warning("CPU kernels off: %s is a different build (ABI mismatch)", path)
        return None
    _declare(cdll)
    return KernelLib(name, path, cdll)


def cpu_kernels(setting: str | None = None) -> KernelLib | None:
    """The kernels this process uses (see :func:`choose_variant`); None for the PyTorch path."""
    name = choose_variant(setting)
    if name == "torch":
        return None
    return load_variant(name)


def build_kernels(names: list[str] | None = None) -> dict[str, str]:
    """Compile ``names`` (default: every variant this CPU runs); {variant: path of the build, or the problem}."""
    out: dict[str, str] = {}
    cc = _compiler()
    for name in names if names is not None else runnable_variants():
        if cc is None:
            out[name] = "no C compiler found (set CC, or install gcc)"
            continue
        path = _build_path(cc, VARIANTS[name])
        problem = None if path.exists() else _compile(cc, VARIANTS[name], path)
        out[name] = str(path) if problem is None else problem
    return out


def describe_kernel(kind: str, variant: str | None) -> str:
    """What computes a packed layer of ``kind`` on ``variant`` (None: PyTorch), for logs and benchmark reports."""
    if variant is None:
        return f"{kind}, PyTorch (weights unpacked per call)"
    has_vnni = "avx512_vnni" in VARIANTS[variant].needs
    if kind == "bf16":
        how = "vdpbf16ps" if variant == "avx512bf16" else "bf16 widened to fp32, FMA"
    else:
        how = "vpdpbusd" if has_vnni else "vpmaddubsw"
    return f"{kind}, cocina {variant} kernel ({how})"


# -- packing (the layouts of csrc/linear.c) --------------------------------------------------------------------
def _panels(n: int) -> int:
    return -(-n // PANEL)


_HUGE_PAGE = 2 << 20


def in_huge_pages(t: Tensor) -> Tensor:
    """``t`` copied into memory backed by 2 MiB transparent huge pages where the kernel grants them (Linux's
    default THP mode, ``madvise``, gives them only to memory that asks), else ``t`` itself.

    A decode step streams every weight once; with 4 KiB pages that is a TLB miss every 4 KiB (60,000 page walks a
    token for GPT-2-small in bf16), with 2 MiB pages one every 2 MiB. On this machine kind batch-1 decode ran
    172-182 tok/s from huge pages against 115-164 from ordinary ones (bf16, the same process, alternating), int8
    217-247 against 193-205. The copy lives in a fresh anonymous mapping (a heap allocation may reuse pages
    already faulted in as small ones), advised before anything touches it, its whole 2 MiB pages only (the tail
    stays in small pages: nothing is made resident that the tensor does not use); the tensor keeps the mapping.
    """
    nbytes = t.numel() * t.element_size()
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if advise is None or nbytes < _HUGE_PAGE or not t.is_contiguous():
        return t
    mapping = mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf = torch.frombuffer(mapping, dtype=torch.uint8)  # holds a reference to the mapping
    start = -buf.data_ptr() % _HUGE_PAGE
    try:
        mapping.madvise(advise, start, nbytes // _HUGE_PAGE * _HUGE_PAGE)
    except OSError:
        return t  # not granted (THP disabled, an old kernel): ordinary pages as before
    out = buf[start : start + nbytes].view(t.dtype).view(t.shape)
    out.copy_(t)
    return out


def pack_bf16(weight: Tensor) -> Tensor:
    """``[N, K]`` weight -> bf16 panels ``[ceil(N/32), ceil(K/2), 32, 2]`` (N and K zero padded)."""
    n, k = weight.shape
    p, k2 = _panels(n), -(-k // 2)
    padded = torch.zeros(p * PANEL, k2 * 2, dtype=torch.bfloat16)
    padded[:n, :k] = weight.detach().to(torch.bfloat16)
    return in_huge_pages(padded.view(p, PANEL, k2, 2).permute(0, 2, 1, 3).contiguous())


def unpack_bf16(packed: Tensor, n: int, k: int) -> Tensor:
    """The ``[N, K]`` bf16 weight of :func:`pack_bf16`'s panels."""
    p, k2 = packed.shape[0], packed.shape[1]
    return packed.permute(0, 2, 1, 3).reshape(p * PANEL, k2 * 2)[:n, :k]


def pack_int8(weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``[N, K]`` -> (int8 panels ``[ceil(N/32), ceil(K/4), 32, 4]``, fp32 scales [N], int32 column sums [N]).

    Symmetric, one scale per output (its largest magnitude / 127).
    """
    n, k = weight.shape
    w = weight.detach().float()
    scales = w.abs().amax(dim=1).clamp_min(1e-8) / 127.0
    q = torch.clamp(torch.round(w / scales[:, None]), -127, 127).to(torch.int8)
    p, k4 = _panels(n), -(-k // 4)
    padded = torch.zeros(p * PANEL, k4 * 4, dtype=torch.int8)
    padded[:n, :k] = q
    packed = in_huge_pages(padded.view(p, PANEL, k4, 4).permute(0, 2, 1, 3).contiguous())
    return packed, scales.contiguous(), q.sum(dim=1, dtype=torch.int32).contiguous()


def unpack_int8(packed: Tensor, scales: Tensor, n: int, k: int) -> Tensor:
    """The ``[N, K]`` fp32 weight a :func:`pack_int8` layer computes with."""
    q = packed.permute(0, 2, 1, 3).reshape(-1, packed.shape[1] * 4)[:n, :k]
    return q.float() * scales[:, None]


def _int4_codes(weight: Tensor) -> tuple[Tensor, Tensor]:
    """``[N, K]`` -> (codes w / d + 8 in 0..15 ``[N, G, 32]`` uint8, scales d ``[N, G]`` fp16), as Q4_0.

    Per group of 32 k's the value of largest magnitude maps to -8 (d = that value / -8), so the full range of
    the 4 bits is used; K is padded with zeros to a multiple of 32.
    """
    n, k = weight.shape
    g = -(-k // INT4_GROUP)
    w = torch.zeros(n, g * INT4_GROUP, dtype=torch.float32)
    w[:, :k] = weight.detach().float()
    w = w.view(n, g, INT4_GROUP)
    idx = w.abs().argmax(dim=2, keepdim=True)
    d = (torch.gather(w, 2, idx) / -8.0).squeeze(2)  # [N, G]
    d16 = d.to(torch.float16)
    inv = torch.where(d16 != 0, 1.0 / d16.float(), torch.zeros_like(d))
    codes = torch.clamp(torch.round(w * inv[:, :, None]) + 8, 0, 15).to(torch.uint8)
    return codes, d16


def pack_int4(weight: Tensor) -> Tensor:
    """``[N, K]`` -> int4 panels: uint8 ``[ceil(N/32), G, 576]`` (per group: 512 bytes of nibbles, 32 fp16 scales)."""
    n, _ = weight.shape
    codes, d16 = _int4_codes(weight)
    g = codes.shape[1]
    p = _panels(n)
    c = torch.full((p * PANEL, g, INT4_GROUP), 8, dtype=torch.uint8)  # padded outputs: zero weights
    c[:n] = codes
    s = torch.zeros(p * PANEL, g, dtype=torch.float16)
    s[:n] = d16
    # [P, 32 lanes, G, 32 k] -> per (P, G): half h (2), quad q (4), lane j (16), byte b (4); low nibble k = 4q + b,
    # high nibble k = 16 + 4q + b.
    c = c.view(p, 2, 16, g, 2, 4, 4)  # P, h, j, G, hi/lo half of the group, q, b
    low, high = c[:, :, :, :, 0], c[:, :, :, :, 1]  # [P, h, j, G, q, b]
    nib = (low | (high << 4)).permute(0, 3, 1, 4, 2, 5).reshape(p, g, 512)  # P, G, h, q, j, b
    scales = s.view(p, PANEL, g).permute(0, 2, 1).contiguous().view(torch.uint8).reshape(p, g, 64)
    return torch.cat([nib, scales], dim=2).contiguous()


def unpack_int4(packed: Tensor, n: int, k: int) -> Tensor:
    """The ``[N, K]`` fp32 weight a :func:`pack_int4` layer computes with."""
    p, g, _ = packed.shape
    nib = packed[:, :, :512].reshape(p, g, 2, 4, 16, 4)  # P, G, h, q, j, b
    low, high = nib & 15, nib >> 4
    codes = torch.stack([low, high], dim=4)  # P, G, h, q, half, j, b
    codes = codes.permute(0, 2, 5, 1, 4, 3, 6).reshape(p * PANEL, g * INT4_GROUP)  # (P, h, j), (G, half, q, b)
    scales = packed[:, :, 512:].contiguous().view(torch.float16).reshape(p, g, PANEL).permute(0, 2, 1)
    scales = scales.reshape(p * PANEL, g).float()
    w = (codes.float() - 8).view(p * PANEL, g, INT4_GROUP) * scales[:, :, None]
    return w.reshape(p * PANEL, g * INT4_GROUP)[:n, :k]


# -- layers -----------------------------------------------------------------------------------------------------
_KINDS = {"bf16": 1, "int8": 2, "int4": 3}


class PackedLinear(nn.Module):
    """``y = x @ W^T + b`` with W packed for cocina's kernels (``kind`` bf16, int8 or int4).

    With ``lib`` the kernel computes (fp32 in and out; other dtypes are converted around it); without it (the
    PyTorch path) the weight is unpacked and multiplied in fp32: slow, but the same numbers within rounding
    (x is not quantized there). :meth:`make_struct` gives the layer's ``cl_linear``, for the native model step.
    """

    packed: Tensor
    scales: Tensor | None
    colsum: Tensor | None
    bias_f32: Tensor | None

    def __init__(self, weight: Tensor, bias: Tensor | None, kind: str, lib: KernelLib | None, *,
                 packed: Tensor | None = None) -> None:
        """``weight`` is ``[out, in]``; ``packed`` (bf16 panels already made) is used instead where given, shared."""
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"unknown packed kind {kind!r}; valid: {', '.join(_KINDS)}")
        self.kind, self.lib = kind, lib
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        scales = colsum = None
        if kind == "bf16":
            w = packed if packed is not None else pack_bf16(weight)
        elif kind == "int8":
            w, scales, colsum = pack_int8(weight)
        else:
            w = pack_int4(weight)
        # A shared Parameter (a tied head's panels) stays its owner's too, so the memory is counted once.
        self.packed = w if isinstance(w, nn.Parameter) else nn.Parameter(w, requires_grad=False)
        self.register_buffer("scales", scales, persistent=False)
        self.register_buffer("colsum", colsum, persistent=False)
        self.register_buffer(
            "bias_f32", bias.detach().float().contiguous() if bias is not None else None, persistent=False
        )
        self._stored = {name: getattr(self, name).dtype for name in ("packed", "scales", "colsum", "bias_f32")
                        if getattr(self, name) is not None}

    def make_struct(self) -> ClLinear:
        """This layer as a ``cl_linear`` (pointers into its tensors: keep the module alive while it is used)."""
        for name, dtype in self._stored.items():
            # The C side reads fixed dtypes; a later ``model.to(dtype)`` must not have changed the buffers.
            if getattr(self, name).dtype != dtype:
                raise TypeError(
                    f"{type(self).__name__}.{name} is {getattr(self, name).dtype}, the kernel needs {dtype}: the "
                    "model's dtype was changed after its layers were packed; convert the model first, then pack"
                )

        def ptr(t: Tensor | None) -> int | None:
            return t.data_ptr() if t is not None else None

        return ClLinear(_KINDS[self.kind], 0, self.out_features, self.in_features, self.packed.data_ptr(),
                        ptr(self.scales), ptr(self.colsum), ptr(self.bias_f32))

    def dequantized_weight(self) -> Tensor:
        """The ``[out, in]`` fp32 weight this layer computes with."""
        n, k = self.out_features, self.in_features
        if self.kind == "bf16":
            return unpack_bf16(self.packed, n, k).float()
        if self.kind == "int8":
            assert self.scales is not None
            return unpack_int8(self.packed, self.scales, n, k)
        return unpack_int4(self.packed, n, k)

    def forward(self, x: Tensor) -> Tensor:
        """[..., in] -> [..., out] in x's dtype."""
        struct = self.make_struct()  # built per call: tensors moved by .to() get fresh pointers, or an error
        x2 = x.reshape(-1, self.in_features).float().contiguous()
        m = x2.shape[0]
        if self.lib is None:
            y = torch.nn.functional.linear(x2, self.dequantized_weight(), self.bias_f32)
        else:
            y = torch.empty(m, self.out_features, dtype=torch.float32)
            if m:
                rc = self.lib.linear(ctypes.byref(struct), x2.data_ptr(), m, self.in_features, y.data_ptr(),
                                     self.out_features, 0, torch.get_num_threads())
                if rc != 0:
                    raise MemoryError(f"{type(self).__name__}: no memory for a {m}x{self.in_features} copy of x")
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        where = self.lib.variant if self.lib is not None else "torch"
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.kind} panels, {where}"


class PackedBf16Linear(PackedLinear):
    """A bf16 :class:`PackedLinear` (the transformers path's replacement for ``nn.Linear`` and GPT-2's Conv1D)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, lib: KernelLib | None, *,
                 packed: Tensor | None = None) -> None:
        super().__init__(weight, bias, "bf16", lib, packed=packed)


class PackedInt8Linear(PackedLinear):
    """An int8 :class:`PackedLinear`: symmetric per-output int8 weights, activations quantized per row."""

    def __init__(self, weight: Tensor, bias: Tensor | None, lib: KernelLib | None) -> None:
        super().__init__(weight, bias, "int8", lib)


class PackedBf16Embedding(nn.Module):
    """An embedding table that lives in a tied LM head's bf16 panels (one copy of the table serves both)."""

    def __init__(self, head: PackedLinear) -> None:
        super().__init__()
        self.head = (head,)  # a tuple: not a submodule, so its parameter is counted once
        self.num_embeddings, self.embedding_dim = head.out_features, head.in_features

    def forward(self, ids: Tensor) -> Tensor:
        """[...] token ids -> [..., dim] (bf16). An id outside the vocabulary raises, as ``nn.Embedding``."""
        flat = ids.reshape(-1)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise IndexError(f"token id out of range: the vocabulary has {self.num_embeddings} entries")
        panels = self.head[0].packed  # [P, K2, 32, 2]
        rows = panels[flat // PANEL, :, flat % PANEL, :]  # [n, K2, 2]
        return rows.reshape(len(flat), -1)[:, : self.embedding_dim].reshape(*ids.shape, self.embedding_dim)


def paged_decode_attention(
    lib: KernelLib,
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
    """Attention of one query row per sequence into ``out`` [n, H, D], reading the paged cache in place.

    ``q`` [n, H, D] (any float dtype; converted to fp32 when it is not); caches [Hkv, slots, D], bf16 or fp32;
    ``block_tables`` [n, blocks] and ``ctx_lens`` [n] int32 (keys per sequence, the new token included);
    ``alibi`` [H, max_len] fp32 or None. ``bounds`` is (shortest length, longest length, lowest block id, highest
    block id) when the caller already knows them; else they are read from the tensors.
    """
    n, heads, dim = q.shape
    # The C side trusts every pointer and length: anything off would read or write out of bounds, so check.
    if k_cache.dtype not in (torch.bfloat16, torch.float32) or v_cache.dtype != k_cache.dtype:
        raise TypeError(f"paged attention: caches must share one dtype, bf16 or fp32; got {k_cache.dtype}, "
                        f"{v_cache.dtype}")
    if block_tables.dtype != torch.int32 or ctx_lens.dtype != torch.int32:
        raise TypeError("paged attention: block_tables and ctx_lens must be int32")
    if not (k_cache.is_contiguous() and v_cache.is_contiguous()):
        raise ValueError("paged attention: caches must be contiguous")
    if not block_tables.is_contiguous() or not ctx_lens.is_contiguous():
        raise ValueError("paged attention: block_tables and ctx_lens must be contiguous")
    if tuple(out.shape) != (n, heads, dim) or k_cache.shape != v_cache.shape or k_cache.shape[2] != dim:
        raise ValueError(
            f"paged attention: shapes disagree (q {tuple(q.shape)}, out {tuple(out.shape)}, "
            f"caches {tuple(k_cache.shape)} / {tuple(v_cache.shape)})"
        )
    if block_tables.shape[0] != n or ctx_lens.shape[0] != n:
        raise ValueError("paged attention: one block table and one length per sequence")
    if n:
        if bounds is None:
            bounds = (int(ctx_lens.min()), int(ctx_lens.max()), int(block_tables.min()), int(block_tables.max()))
        shortest, longest, low_block, high_block = bounds
        if shortest < 1 or longest > block_tables.shape[1] * block_size:
            raise ValueError("paged attention: a context length is below 1 or beyond its block table")
        if alibi is not None:
            if alibi.dtype != torch.float32 or alibi.dim() != 2 or alibi.shape[0] != heads:
                raise ValueError("paged attention: alibi must be fp32 [heads, max_len]")
            if alibi.shape[1] < longest or not alibi.is_contiguous():
                raise ValueError(f"paged attention: alibi must cover {longest} positions, contiguous")
        if low_block < 0 or (high_block + 1) * block_size > k_cache.shape[1]:
            raise ValueError("paged attention: a block id is outside the cache")
    qf = q if q.dtype == torch.float32 and q.stride(2) == 1 else q.float().contiguous()
    of = out if out.dtype == torch.float32 and out.is_contiguous() else torch.empty(n, heads, dim)
    rc = lib.attention(
        qf.data_ptr(), qf.stride(0), qf.stride(1), k_cache.data_ptr(), v_cache.data_ptr(), k_cache.shape[1],
        int(k_cache.dtype == torch.bfloat16), block_tables.data_ptr(), block_tables.shape[1], None,
        ctx_lens.data_ptr(), n, heads, k_cache.shape[0], dim, block_size, scale,
        alibi.data_ptr() if alibi is not None else None, alibi.shape[1] if alibi is not None else 0,
        of.data_ptr(), heads * dim, torch.get_num_threads(),
    )
    if rc == -1:
        raise MemoryError("paged attention: no memory for the scores")
    if rc != 0:
        raise ValueError(f"paged attention: unsupported shape (heads {heads}, head_dim {dim})")
    if of.data_ptr() != out.data_ptr():
        out.copy_(of)
