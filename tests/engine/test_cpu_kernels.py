"""cocina's C kernels (cocina/engine/csrc/) against PyTorch references, for every variant this CPU runs.

Each variant (avx512bf16, avx512vnni, avx512, avx2) is its own build of the same sources; the ones this machine
can run are all tested here, so every instruction-set path is exercised on one machine. The references compute
what each kernel claims in plain PyTorch: bf16 weights (and, with vdpbf16ps, x rounded to bf16), int8 and int4
with their activation quantization modelled exactly, so only the order of fp32 additions may differ.
"""

from __future__ import annotations

import ctypes
import logging
import math
from pathlib import Path

import pytest
import torch

from cocina.engine import cpu_kernels as ck

HERE = ck.runnable_variants()
needs_any = pytest.mark.skipif(not HERE, reason="cocina's CPU kernels need an x86-64 CPU with AVX2 or AVX-512")


@pytest.fixture(params=HERE or ["none"])
def lib(request: pytest.FixtureRequest) -> ck.KernelLib:
    if request.param == "none":
        pytest.skip("no kernel variant runs on this CPU")
    loaded = ck.load_variant(request.param)
    if loaded is None:
        pytest.skip(f"the {request.param} kernels did not build here (no compiler?)")
    return loaded


def _x_as_the_kernel_sees_it(lib: ck.KernelLib, x: torch.Tensor) -> torch.Tensor:
    # vdpbf16ps multiplies bf16 pairs: x is rounded to bf16 (to nearest even) on the way in.
    return x.bfloat16().float() if lib.variant == "avx512bf16" else x


ROWS = [1, 2, 3, 5, 12, 13, 97, 200]  # every register-block size of both widths, and several cache blocks of 96
SHAPES = [(80, 48), (33, 7), (1000, 77), (64, 96), (40, 3072)]  # ragged panels, odd K, K not a multiple of 4/32


# -- packing -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_packing_round_trips(n: int, k: int) -> None:
    g = torch.Generator().manual_seed(n + k)
    w = torch.randn(n, k, generator=g)
    assert torch.equal(ck.unpack_bf16(ck.pack_bf16(w), n, k), w.bfloat16())
    packed, scales, colsum = ck.pack_int8(w)
    w8 = ck.unpack_int8(packed, scales, n, k)
    assert bool(((w8 - w).abs() <= scales[:, None] / 2 + 1e-6).all())  # within half a step
    assert torch.equal(colsum, torch.round(w8 / scales[:, None]).sum(dim=1).int())
    w4 = ck.unpack_int4(ck.pack_int4(w), n, k)
    # Q4_0: per group of 32, d = (value of largest magnitude) / -8; codes 0..15 -> (code - 8) * d.
    groups = -(-k // 32)
    wp = torch.zeros(n, groups * 32)
    wp[:, :k] = w
    d = torch.gather(wp.view(n, groups, 32), 2, wp.view(n, groups, 32).abs().argmax(2, keepdim=True)) / -8
    step = d.abs().half().float().repeat_interleave(32, dim=2).view(n, -1)[:, :k]
    err = (w4 - w).abs()
    # Half a step, but up to one for values beyond +7 steps (the codes' positive side is one shorter).
    opposite = w.sign() != d.sign().repeat_interleave(32, 2).view(n, -1)[:, :k]
    assert bool((err <= step / 2 + 1e-3 * step + 1e-7)[opposite].all())
    assert bool((err <= step + 1e-3 * step + 1e-7).all())


def _anon_huge_kb(addr: int) -> int:
    """AnonHugePages of the mapping that holds ``addr`` (/proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= addr < end
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def test_packed_weights_sit_in_huge_pages_where_the_kernel_grants_them() -> None:
    """A decode step streams every weight once: the packers place layers of 2 MiB and more in transparent huge
    pages (Linux grants them to memory that asks in its default mode), with the same numbers; smaller ones stay."""
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.exists() or "[never]" in mode.read_text():
        pytest.skip("this kernel gives no transparent huge pages")
    w = torch.randn(2048, 1024)
    packed = ck.pack_bf16(w)  # 4 MiB
    assert packed.data_ptr() % (2 << 20) == 0
    assert _anon_huge_kb(packed.data_ptr()) >= 2048
    assert torch.equal(ck.unpack_bf16(packed, 2048, 1024), w.to(torch.bfloat16))
    q, scales, _ = ck.pack_int8(w)
    assert _anon_huge_kb(q.data_ptr()) >= 2048
    assert torch.allclose(ck.unpack_int8(q, scales, 2048, 1024), w, atol=float(scales.max()))
    small = torch.randn(64, 64)
    assert ck.in_huge_pages(small) is small  # under a page of 2 MiB: as it was


# -- linear layers -----------------------------------------------------------------------------------------
def _int8_reference(lib: ck.KernelLib, layer: ck.PackedLinear, x: torch.Tensor) -> torch.Tensor:
    """Per-row int8 activations (scale = max |x| / 127, round half to even), exact integer sums."""
    amax = x.abs().amax(dim=1)
    sx = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    xq = torch.clamp(torch.round(x * (1.0 / sx)[:, None]), -127, 127)
    assert layer.scales is not None
    wq = torch.round(layer.dequantized_weight() / layer.scales[:, None])
    sums = (xq.double() @ wq.double().t()).float()
    y = sums * layer.scales[None, :] * sx[:, None]
    return y + layer.bias_f32 if layer.bias_f32 is not None else y


def _int4_reference(layer: ck.PackedLinear, x: torch.Tensor) -> torch.Tensor:
    """Per group of 32: int8 activations with their own scale, integer dot products with the 4-bit codes."""
    m, k = x.shape
    groups = -(-k // 32)
    xp = torch.zeros(m, groups * 32)
    xp[:, :k] = x
    xg = xp.view(m, groups, 32)
    amax = xg.abs().amax(dim=2)
    sx = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))  # [M, G]
    xq = torch.clamp(torch.round(xg * (1.0 / sx)[:, :, None]), -127, 127)
    w = ck.unpack_int4(layer.packed, layer.out_features, groups * 32)  # (code - 8) * d
    n = layer.out_features
    panels = layer.packed
    d = panels[:, :, 512:].contiguous().view(torch.float16).reshape(panels.shape[0], groups, 32).permute(0, 2, 1)
    d = d.reshape(-1, groups)[:n].float()  # [N, G]
    codes = torch.round(w.view(n, groups, 32) / torch.where(d == 0, 1.0, d)[:, :, None])
    sums = torch.einsum("mgk,ngk->mng", xq.double(), codes.double()).float()  # [M, N, G] exact integers
    y = (sums * d[None] * sx[:, None, :]).sum(dim=2)
    return y + layer.bias_f32 if layer.bias_f32 is not None else y


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize(("n_out", "n_in"), SHAPES)
@pytest.mark.parametrize("kind", ["bf16", "int8", "int4"])
def test_linear_computes_exactly_what_it_claims(lib: ck.KernelLib, kind: str, rows: int, n_out: int, n_in: int) -> None:
    g = torch.Generator().manual_seed(rows * 1000 + n_out)
    w = torch.randn(n_out, n_in, generator=g)
    b = torch.randn(n_out, generator=g) if rows % 2 else None
    x = torch.randn(rows, n_in, generator=g)
    layer = ck.PackedLinear(w, b, kind, lib)
    got = layer(x)
    assert got.shape == (rows, n_out) and got.dtype is torch.float32
    if kind == "bf16":
        want = torch.nn.functional.linear(_x_as_the_kernel_sees_it(lib, x), layer.dequantized_weight(), b)
    elif kind == "int8":
        want = _int8_reference(lib, layer, x)
    else:
        want = _int4_reference(layer, x)
    # Sums of n_in products of unit size: fp32 rounding that grows with sqrt(n_in), in any order of additions.
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-5 * math.sqrt(n_in))


@pytest.mark.parametrize("kind", ["bf16", "int8", "int4"])
def test_linear_accumulates_into_strided_rows(lib: ck.KernelLib, kind: str) -> None:
    """What the model step uses: x and y rows inside wider buffers, the result added to y (the residual)."""
    g = torch.Generator().manual_seed(5)
    layer = ck.PackedLinear(torch.randn(40, 64, generator=g), torch.randn(40, generator=g), kind, lib)
    xbuf = torch.randn(7, 100, generator=g)
    ybuf = torch.randn(7, 90, generator=g)
    before = ybuf.clone()
    rc = lib.linear(ctypes.byref(layer.make_struct()), xbuf.data_ptr(), 7, 100, ybuf.data_ptr(), 90, 1, 2)
    assert rc == 0
    torch.testing.assert_close(ybuf[:, :40], before[:, :40] + layer(xbuf[:, :64]))
    assert torch.equal(ybuf[:, 40:], before[:, 40:])


@pytest.mark.parametrize("kind", ["bf16", "int8", "int4"])
def test_linear_keeps_nan_and_inf(lib: ck.KernelLib, kind: str) -> None:
    layer = ck.PackedLinear(torch.ones(32, 40), None, kind, lib)
    x = torch.full((4, 40), 0.5)
    x[0, 3] = float("nan")
    x[1, 39] = float("nan")  # the last element, in a partial vector
    y = layer(x)
    assert bool(torch.isnan(y[0]).all()) and bool(torch.isnan(y[1]).all())
    torch.testing.assert_close(y[2], torch.full((32,), 20.0), rtol=1e-2, atol=0.1)
    if kind == "bf16":
        x[3, 4] = float("inf")
        assert bool(torch.isinf(layer(x)[3]).all())


def test_linear_with_no_rows_and_other_dtypes(lib: ck.KernelLib) -> None:
    layer = ck.PackedLinear(torch.randn(40, 8), None, "bf16", lib)
    assert layer(torch.empty(0, 8)).shape == (0, 40)
    assert layer(torch.randn(2, 3, 8).half()).dtype is torch.float16


@pytest.mark.parametrize("kind", ["bf16", "int8", "int4"])
def test_pytorch_path_computes_the_same_layer(lib: ck.KernelLib, kind: str) -> None:
    """Without kernels a packed layer unpacks its weight for PyTorch: the same layer within its own rounding."""
    g = torch.Generator().manual_seed(9)
    w, x = torch.randn(64, 96, generator=g), torch.randn(5, 96, generator=g)
    with_kernel = ck.PackedLinear(w, None, kind, lib)(x)
    without = ck.PackedLinear(w, None, kind, None)(x)  # x is not quantized on this path
    ref = torch.nn.functional.linear(x, w)
    rel = {"bf16": 0.02, "int8": 0.05, "int4": 0.2}[kind]
    for got in (with_kernel, without):
        assert float((got - ref).norm() / ref.norm()) < rel


def test_packed_layers_refuse_buffers_converted_after_packing(lib: ck.KernelLib) -> None:
    """``model.to(dtype)`` after packing would make the C side read the wrong bytes: a clear error instead."""
    layer = ck.PackedLinear(torch.randn(32, 16), torch.randn(32), "int8", lib)
    layer.to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"scales is torch\.bfloat16"):
        layer(torch.randn(2, 16))


def test_packed_embedding_reads_the_tied_table(lib: ck.KernelLib) -> None:
    """A tied LM head's panels serve embedding lookups: every row comes back exactly, no second copy."""
    table = torch.randn(1000, 24).to(torch.bfloat16)
    emb = ck.PackedBf16Embedding(ck.PackedBf16Linear(table, None, lib))
    ids = torch.tensor([[0, 1, 31, 32, 999], [16, 15, 17, 500, 998]])
    assert torch.equal(emb(ids), table[ids])
    assert list(emb.parameters()) == []
    with pytest.raises(IndexError, match="1000 entries"):
        emb(torch.tensor([1000]))  # inside the last panel's padding, not the vocabulary


def test_kernels_called_from_several_python_threads_at_once(lib: ck.KernelLib) -> None:
    """ctypes releases the GIL: concurrent callers each use their own scratch buffers."""
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(11)
    layers = [ck.PackedLinear(torch.randn(96, 200, generator=g), None, kind, lib) for kind in ("bf16", "int8", "int4")]
    inputs = [torch.randn(rows, 200, generator=g) for rows in (1, 7, 33, 64, 120, 5)] * 2
    jobs = [(layer, x) for layer in layers for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: job[0](job[1]), jobs))
    for (layer, x), got in zip(jobs, results, strict=True):
        assert torch.equal(got, layer(x))


# -- attention ---------------------------------------------------------------------------------------------
def _reference_attention(
    q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, tables: list[list[int]], lens: list[int], bs: int,
    scale: float, alibi: torch.Tensor | None,
) -> torch.Tensor:
    """The textbook computation, one row and head at a time, in fp32."""
    n, heads, dim = q.shape
    group = heads // kc.shape[0]
    out = torch.empty(n, heads, dim)
    for i in range(n):
        slots = torch.tensor([tables[i][j // bs] * bs + j % bs for j in range(lens[i])])
        for h in range(heads):
            k, v = kc[h // group, slots].float(), vc[h // group, slots].float()
            s = (k @ q[i, h].float()) * scale
            if alibi is not None:
                s = s + alibi[h, : lens[i]]
            out[i, h] = torch.softmax(s, dim=0) @ v
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(4, 4, 16), (8, 2, 64), (6, 1, 32), (2, 2, 128)])
@pytest.mark.parametrize("with_alibi", [False, True])
def test_paged_attention_matches_the_reference(
    lib: ck.KernelLib, dtype: torch.dtype, heads: int, kv_heads: int, dim: int, with_alibi: bool
) -> None:
    """Scattered blocks, sequences of different lengths (1 key, a block edge, more than 16 keys), GQA/MQA."""
    g = torch.Generator().manual_seed(heads * dim)
    bs, num_blocks = 4, 40
    kc = torch.randn(kv_heads, num_blocks * bs, dim, generator=g).to(dtype)
    vc = torch.randn(kv_heads, num_blocks * bs, dim, generator=g).to(dtype)
    lens = [1, 4, 5, 17, 37]
    perm = torch.randperm(num_blocks, generator=g).tolist()
    tables, used = [], 0
    for length in lens:
        nb = -(-length // bs)
        tables.append(perm[used : used + nb])
        used += nb
    width = max(len(t) for t in tables)
    table_t = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32)
    # q as the model runner passes it: a [n, H, D] view of an [H, T, D] tensor (strided over n and H).
    q = torch.randn(heads, len(lens) + 3, dim, generator=g).to(dtype)[:, : len(lens)].transpose(0, 1)
    alibi = torch.randn(heads, 64, generator=g) if with_alibi else None
    scale = 1 / math.sqrt(dim)
    out = torch.empty(len(lens), heads, dim, dtype=dtype)
    ck.paged_decode_attention(lib, q, kc, vc, table_t, torch.tensor(lens, dtype=torch.int32), bs, scale, alibi, out)
    want = _reference_attention(q.float(), kc, vc, tables, lens, bs, scale, alibi)
    tol = 1e-5 if dtype is torch.float32 else 1e-2
    torch.testing.assert_close(out.float(), want, rtol=tol, atol=tol)


def test_paged_attention_of_prompt_rows_is_causal(lib: ck.KernelLib) -> None:
    """Rows of one sequence's chunk share its block table and see the keys up to their own position."""
    g = torch.Generator().manual_seed(3)
    heads, dim, bs = 4, 32, 4
    kc, vc = torch.randn(2, 64, dim, generator=g), torch.randn(2, 64, dim, generator=g)
    tables = torch.tensor([[5, 2, 9, 0], [7, 1, 0, 0]], dtype=torch.int32)
    row_table = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.int32)
    lens = torch.tensor([8, 9, 10, 11, 12, 13, 1, 2], dtype=torch.int32)  # a chunk at 7..12, a new prompt
    q = torch.randn(8, heads, dim, generator=g)
    out = torch.empty(8, heads, dim)
    rc = lib.attention(q.data_ptr(), heads * dim, dim, kc.data_ptr(), vc.data_ptr(), 64, 0, tables.data_ptr(), 4,
                       row_table.data_ptr(), lens.data_ptr(), 8, heads, 2, dim, bs, 0.125, None, 0, out.data_ptr(),
                       heads * dim, 2)
    assert rc == 0
    per_row = [tables[int(r)].tolist() for r in row_table]
    want = _reference_attention(q, kc, vc, per_row, lens.tolist(), bs, 0.125, None)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_paged_attention_propagates_nan(lib: ck.KernelLib) -> None:
    kc = torch.ones(1, 8, 16)
    vc = torch.arange(8 * 16, dtype=torch.float32).view(1, 8, 16)
    q = torch.zeros(2, 1, 16)
    q[0, 0, 0] = float("nan")
    out = torch.empty(2, 1, 16)
    tables = torch.zeros(2, 1, dtype=torch.int32)
    ck.paged_decode_attention(lib, q, kc, vc, tables, torch.tensor([2, 2], dtype=torch.int32), 8, 1.0, None, out)
    assert bool(torch.isnan(out[0]).all())
    torch.testing.assert_close(out[1, 0], vc[0, :2].mean(dim=0))  # the other sequence is untouched


def test_paged_attention_rejects_what_it_cannot_run_or_would_read_out_of_bounds(lib: ck.KernelLib) -> None:
    kc = torch.zeros(1, 8, 16)
    q = torch.zeros(1, 1, 16)
    out = torch.empty(1, 1, 16)
    table = torch.zeros(1, 1, dtype=torch.int32)
    one = torch.ones(1, dtype=torch.int32)

    def call(**changes: object) -> None:
        args: dict[str, object] = dict(
            q=q, k_cache=kc, v_cache=kc, block_tables=table, ctx_lens=one, block_size=8, scale=1.0, alibi=None, out=out
        )
        args.update(changes)
        ck.paged_decode_attention(lib, **args)  # type: ignore[arg-type]

    call()  # the valid call runs
    call(bounds=(1, 1, 0, 0))  # bounds the caller already knows are checked the same way
    with pytest.raises(TypeError, match="one dtype"):
        call(k_cache=kc.bfloat16())
    with pytest.raises(TypeError, match="int32"):
        call(block_tables=table.long())
    with pytest.raises(ValueError, match="beyond its block table"):
        call(ctx_lens=torch.tensor([9], dtype=torch.int32))
    with pytest.raises(ValueError, match="beyond its block table"):
        call(bounds=(1, 9, 0, 0))
    with pytest.raises(ValueError, match="outside the cache"):
        call(block_tables=torch.ones(1, 1, dtype=torch.int32))
    with pytest.raises(ValueError, match="outside the cache"):
        call(bounds=(1, 1, 0, 3))
    with pytest.raises(ValueError, match="alibi"):
        call(alibi=torch.zeros(1, 0))
    with pytest.raises(ValueError, match="shapes disagree"):
        call(out=torch.empty(1, 2, 16))
    odd = torch.zeros(1, 8, 20)  # a head size no vector width divides
    with pytest.raises(ValueError, match="head_dim 20"):
        call(q=torch.zeros(1, 1, 20), k_cache=odd, v_cache=odd, out=torch.empty(1, 1, 20))


# -- choosing, building, falling back ----------------------------------------------------------------------
def test_the_setting_forces_a_variant_or_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HERE:
        assert ck.choose_variant(name) == name
    assert ck.choose_variant("auto") == (HERE[0] if HERE else "torch")
    for off in ("torch", "0", "off"):
        assert ck.choose_variant(off) == "torch"
    monkeypatch.setenv("COCINA_CPU_KERNELS", "torch")
    assert ck.choose_variant() == "torch" and ck.cpu_kernels() is None
    with pytest.raises(ValueError, match="valid: auto, avx512bf16"):
        ck.choose_variant("sse2")


def test_a_variant_this_cpu_cannot_run_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ck, "cpu_flags", lambda: frozenset({"avx2", "fma", "f16c"}))
    monkeypatch.setattr(ck, "_x86", lambda: True)
    assert ck.runnable_variants() == ["avx2"]
    assert ck.choose_variant("auto") == "avx2"
    with pytest.raises(ValueError, match=r"lacks .*avx512_bf16"):
        ck.choose_variant("avx512bf16")
    monkeypatch.setattr(ck, "cpu_flags", lambda: frozenset())
    assert ck.choose_variant("auto") == "torch"  # no AVX2 either: PyTorch's ops


@needs_any
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("failing compiler", "compiling the avx2 kernels failed"),
        ("no compiler", "no C compiler found"),
        ("unwritable cache", "cannot create the cache directory"),
    ],
)
def test_a_kernel_that_cannot_be_built_leaves_the_pytorch_path_with_a_warning(
    case: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if "avx2" not in HERE:
        pytest.skip("this CPU has no AVX2")
    monkeypatch.setenv("COCINA_CACHE_DIR", str(tmp_path))
    if case == "failing compiler":
        monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    elif case == "no compiler":
        monkeypatch.setenv("CC", "/nonexistent/cc")
    else:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the cache directory should be")
        monkeypatch.setenv("COCINA_CACHE_DIR", str(blocker))
    ck.load_variant.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="cocina.engine.cpu_kernels"):
            assert ck.cpu_kernels("avx2") is None
        assert message in caplog.text
        if case != "unwritable cache":
            assert "no C compiler" in str(ck.build_kernels(["avx2"])) or case == "failing compiler"
    finally:
        monkeypatch.undo()
        ck.load_variant.cache_clear()


@needs_any
def test_build_compiles_every_variant_once_and_later_loads_reuse_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What `cocina kernels build` does at install time: afterwards a first use loads, it does not compile."""
    monkeypatch.setenv("COCINA_CACHE_DIR", str(tmp_path))
    ck.load_variant.cache_clear()
    try:
        built = ck.build_kernels()
        assert set(built) == set(HERE)
        paths = [Path(p) for p in built.values()]
        assert all(p.exists() and p.parent == tmp_path / "kernels" for p in paths)
        stamps = [p.stat().st_mtime_ns for p in paths]
        assert ck.build_kernels() == built  # nothing rebuilt
        lib = ck.cpu_kernels(HERE[-1])
        assert lib is not None and lib.path in paths and lib.variant == HERE[-1]
        assert lib.cdll.cocina_kernels_isa().decode() == HERE[-1]
        assert [p.stat().st_mtime_ns for p in paths] == stamps
    finally:
        monkeypatch.undo()
        ck.load_variant.cache_clear()


def test_describe_kernel_names_the_instruction() -> None:
    assert ck.describe_kernel("bf16", "avx512bf16") == "bf16, cocina avx512bf16 kernel (vdpbf16ps)"
    assert "FMA" in ck.describe_kernel("bf16", "avx2")
    assert "vpdpbusd" in ck.describe_kernel("int8", "avx512vnni")
    assert "vpmaddubsw" in ck.describe_kernel("int4", "avx2")
    assert "PyTorch" in ck.describe_kernel("int4", None)
