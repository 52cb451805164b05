"""cocina's C kernels (cocina/engine/csrc/cpu_kernels.c) against PyTorch references, and their fallbacks."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from cocina.engine import cpu_kernels as ck

lib = ck.cpu_kernels()
needs_kernels = pytest.mark.skipif(lib is None, reason="cocina's CPU kernels need AVX-512 and a C compiler")


@needs_kernels
@pytest.mark.parametrize("rows", [1, 2, 5, 12, 13, 40, 97, 200])
@pytest.mark.parametrize(("n_out", "n_in"), [(80, 48), (33, 7), (64, 96), (1000, 77)])
@pytest.mark.parametrize("bias", [True, False])
def test_bf16_linear_matches_pytorch_in_fp32(rows: int, n_out: int, n_in: int, bias: bool) -> None:
    """Every register-block size (1..12 rows, several cache blocks), ragged last panels, odd K."""
    g = torch.Generator().manual_seed(rows * 1000 + n_out)
    w = torch.randn(n_out, n_in, generator=g).to(torch.bfloat16)
    b = torch.randn(n_out, generator=g).to(torch.bfloat16) if bias else None
    x = torch.randn(3, rows, n_in, generator=g)
    layer = ck.PackedBf16Linear(w, b, lib)
    want = torch.nn.functional.linear(x, w.float(), None if b is None else b.float())
    got = layer(x)  # fp32 in, fp32 out: only the summation order differs
    assert got.shape == (3, rows, n_out) and got.dtype is torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@needs_kernels
@pytest.mark.parametrize("rows", [1, 32, 200])  # 200: three cache blocks of 96 rows, each converted in turn
def test_bf16_linear_in_bf16_rounds_like_pytorch(rows: int) -> None:
    """bf16 in and out: fp32 accumulation rounded to nearest even, at most one bf16 step from PyTorch's."""
    g = torch.Generator().manual_seed(7)
    w = torch.randn(96, 160, generator=g).to(torch.bfloat16)
    b = torch.randn(96, generator=g).to(torch.bfloat16)
    x = torch.randn(rows, 160, generator=g).to(torch.bfloat16)
    exact = torch.nn.functional.linear(x.float(), w.float(), b.float())
    got = ck.PackedBf16Linear(w, b, lib)(x)
    assert got.dtype is torch.bfloat16
    # Rounding the exact fp32 result gives PyTorch-in-fp32-then-round; allow one bf16 ulp for the sum order.
    ulp = exact.abs().clamp_min(1e-3) * 2**-7
    assert bool(((got.float() - exact).abs() <= ulp).all())


@needs_kernels
def test_bf16_linear_keeps_nan_and_inf() -> None:
    w = torch.ones(32, 16, dtype=torch.bfloat16)
    x = torch.zeros(2, 16, dtype=torch.bfloat16)
    x[0, 3] = float("nan")
    x[1, 4] = float("inf")
    y = ck.PackedBf16Linear(w, None, lib)(x)
    assert bool(torch.isnan(y[0]).all()) and bool(torch.isinf(y[1]).all())


@needs_kernels
def test_bf16_linear_with_no_rows() -> None:
    y = ck.PackedBf16Linear(torch.ones(40, 8, dtype=torch.bfloat16), None, lib)(torch.empty(0, 8))
    assert y.shape == (0, 40)


@needs_kernels
def test_packed_embedding_reads_the_tied_table() -> None:
    """A tied LM head's panels serve embedding lookups: every row comes back exactly."""
    table = torch.randn(1000, 24).to(torch.bfloat16)
    head = ck.PackedBf16Linear(table, None, lib)
    emb = ck.PackedBf16Embedding(head)
    ids = torch.tensor([[0, 1, 31, 32, 999], [16, 15, 17, 500, 998]])
    assert torch.equal(emb(ids), table[ids])
    # One copy of the table: the embedding holds no parameter of its own.
    assert list(emb.parameters()) == []


def _reference_decode_attention(
    q: torch.Tensor,
    kc: torch.Tensor,
    vc: torch.Tensor,
    tables: list[list[int]],
    lens: list[int],
    bs: int,
    scale: float,
    alibi: torch.Tensor | None,
) -> torch.Tensor:
    """The textbook computation, one sequence and head at a time, in fp32."""
    n, heads, dim = q.shape
    group = heads // kc.shape[0]
    out = torch.empty(n, heads, dim)
    for i in range(n):
        slots = torch.tensor([tables[i][j // bs] * bs + j % bs for j in range(lens[i])])
        for h in range(heads):
            k = kc[h // group, slots].float()
            v = vc[h // group, slots].float()
            s = (k @ q[i, h].float()) * scale
            if alibi is not None:
                s = s + alibi[h, : lens[i]]
            out[i, h] = torch.softmax(s, dim=0) @ v
    return out


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(4, 4, 16), (8, 2, 64), (6, 1, 32), (2, 2, 128)])
@pytest.mark.parametrize("with_alibi", [False, True])
def test_paged_decode_attention_matches_the_reference(
    dtype: torch.dtype, heads: int, kv_heads: int, dim: int, with_alibi: bool
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
    q_full = torch.randn(heads, len(lens) + 3, dim, generator=g).to(dtype)
    q = q_full[:, : len(lens)].transpose(0, 1)
    alibi = torch.randn(heads, 64, generator=g) if with_alibi else None
    scale = 1 / math.sqrt(dim)
    out = torch.empty(len(lens), heads, dim, dtype=dtype)
    ck.paged_decode_attention(
        lib, q, kc, vc, table_t, torch.tensor(lens, dtype=torch.int32), bs, scale, alibi, out
    )
    want = _reference_decode_attention(q, kc, vc, tables, lens, bs, scale, alibi)
    tol = 1e-5 if dtype is torch.float32 else 1e-2
    torch.testing.assert_close(out.float(), want, rtol=tol, atol=tol)


@needs_kernels
def test_paged_decode_attention_rejects_a_head_dim_it_cannot_run() -> None:
    q = torch.zeros(1, 2, 24)
    kc = torch.zeros(2, 8, 24)
    with pytest.raises(ValueError, match="head_dim 24"):
        ck.paged_decode_attention(
            lib,
            q,
            kc,
            kc,
            torch.zeros(1, 1, dtype=torch.int32),
            torch.ones(1, dtype=torch.int32),
            8,
            1.0,
            None,
            torch.empty(1, 2, 24),
        )


def test_kernels_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCINA_CPU_KERNELS", "0")
    ck.cpu_kernels.cache_clear()
    try:
        assert ck.cpu_kernels() is None
    finally:
        monkeypatch.undo()
        ck.cpu_kernels.cache_clear()


@pytest.mark.skipif(not ck.cpu_has_avx512(), reason="the compile step only runs on AVX-512 CPUs")
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("failing compiler", "compiling cpu_kernels.c failed"),
        ("no compiler", "no C compiler found"),
        ("unwritable cache", "cannot create the cache directory"),
    ],
)
def test_a_kernel_that_cannot_be_built_leaves_the_pytorch_path_with_a_warning(
    case: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("COCINA_CACHE_DIR", str(tmp_path))
    if case == "failing compiler":
        monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    elif case == "no compiler":
        monkeypatch.setenv("CC", "/nonexistent/cc")
    else:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the cache directory should be")
        monkeypatch.setenv("COCINA_CACHE_DIR", str(blocker))
    ck.cpu_kernels.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="cocina.engine.cpu_kernels"):
            assert ck.cpu_kernels() is None
        assert message in caplog.text
    finally:
        monkeypatch.undo()
        ck.cpu_kernels.cache_clear()


@needs_kernels
def test_a_fresh_cache_compiles_once_and_reuses_the_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COCINA_CACHE_DIR", str(tmp_path))
    ck.cpu_kernels.cache_clear()
    try:
        assert ck.cpu_kernels() is not None
        built = list((Path(str(tmp_path)) / "kernels").glob("cpu_kernels-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        ck.cpu_kernels.cache_clear()
        assert ck.cpu_kernels() is not None
        assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    finally:
        monkeypatch.undo()
        ck.cpu_kernels.cache_clear()


needs_vnni = pytest.mark.skipif(
    lib is None or not ck.cpu_has_vnni(), reason="the int8 kernel needs AVX512-VNNI and a C compiler"
)


def _int8_reference(layer: ck.PackedInt8Linear, x: torch.Tensor) -> torch.Tensor:
    """The kernel's arithmetic in PyTorch: per-row uint8 activations (zero point 128), exact integer sums."""
    x2 = x.reshape(-1, layer.in_features).float()
    amax = x2.abs().amax(dim=1)
    sx = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    xq = torch.clamp(torch.round(x2 * (1.0 / sx)[:, None]) + 128, 0, 255) - 128  # round half to even
    wq = torch.round(layer.dequantized_weight() / layer.scales[:, None])
    sums = (xq.double() @ wq.double().t()).float()
    y = sums * layer.scales[None, :] * sx[:, None]
    if layer.bias_f32 is not None:
        y = y + layer.bias_f32
    return y.reshape(*x.shape[:-1], layer.out_features)


@needs_vnni
@pytest.mark.parametrize("rows", [1, 3, 12, 13, 97, 200])
@pytest.mark.parametrize(("n_out", "n_in"), [(80, 48), (33, 7), (1000, 77), (64, 3072)])
@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_computes_exactly_what_it_claims(rows: int, n_out: int, n_in: int, bias: bool) -> None:
    """Same integers as the reference (several threads, ragged panels, K not a multiple of 4)."""
    g = torch.Generator().manual_seed(rows + n_out)
    w = torch.randn(n_out, n_in, generator=g)
    b = torch.randn(n_out, generator=g) if bias else None
    x = torch.randn(2, rows, n_in, generator=g)
    layer = ck.PackedInt8Linear(w, b, lib)
    got = layer(x)
    assert got.shape == (2, rows, n_out) and got.dtype is torch.float32
    torch.testing.assert_close(got, _int8_reference(layer, x), rtol=1e-5, atol=1e-4)
    # And close to the float layer: int8 weights and activations lose about 1% of the scale.
    exact = torch.nn.functional.linear(x, w, b)
    assert float((got - exact).abs().max()) < 0.03 * float(exact.abs().max()) + 0.05


@needs_vnni
def test_int8_linear_in_bf16_over_several_cache_blocks() -> None:
    g = torch.Generator().manual_seed(5)
    layer = ck.PackedInt8Linear(torch.randn(48, 72, generator=g), None, lib)
    x = torch.randn(250, 72, generator=g).to(torch.bfloat16)  # 96 + 96 + 58 rows, quantized block by block
    got = layer(x).float()
    torch.testing.assert_close(got, _int8_reference(layer, x).bfloat16().float(), rtol=1e-2, atol=1e-2)


@needs_vnni
def test_int8_linear_in_bf16_and_with_zero_rows() -> None:
    g = torch.Generator().manual_seed(3)
    layer = ck.PackedInt8Linear(torch.randn(40, 64, generator=g), torch.randn(40, generator=g), lib)
    x = torch.randn(5, 64, generator=g).to(torch.bfloat16)
    x[2] = 0  # an all-zero row: scale 1, output = bias
    got = layer(x)
    assert got.dtype is torch.bfloat16
    torch.testing.assert_close(got.float(), _int8_reference(layer, x).bfloat16().float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(got[2].float(), layer.bias_f32.bfloat16().float())
    assert layer(torch.empty(0, 64)).shape == (0, 40)


@needs_vnni
def test_quantize_model_uses_cocinas_int8_kernel_by_default() -> None:
    from transformers import AutoModelForCausalLM

    from cocina.engine.quantize import quantize_model, quantized_linear_count
    from cocina.models.tiny import tiny_config

    cfg = tiny_config("gpt2", vocab_size=300, hidden_size=64, num_layers=2, num_heads=4)  # type: ignore[arg-type]
    model = AutoModelForCausalLM.from_config(cfg).eval()
    ids = torch.randint(0, 300, (1, 12))
    with torch.inference_mode():
        ref = model(ids).logits
        q = quantize_model(model, "int8", "cpu")
        out = q(ids).logits
    assert any(isinstance(m, ck.PackedInt8Linear) for m in q.modules())
    assert quantized_linear_count(q) == (9, 0)  # 4 per layer (GPT-2's Conv1D) and the LM head
    cos = torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0)
    assert float(cos) > 0.99


@needs_kernels
def test_paged_decode_attention_propagates_nan() -> None:
    kc = torch.ones(1, 8, 16)
    vc = torch.arange(8 * 16, dtype=torch.float32).view(1, 8, 16)
    q = torch.zeros(2, 1, 16)
    q[0, 0, 0] = float("nan")
    out = torch.empty(2, 1, 16)
    tables = torch.zeros(2, 1, dtype=torch.int32)
    ck.paged_decode_attention(lib, q, kc, vc, tables, torch.tensor([2, 2], dtype=torch.int32), 8, 1.0, None, out)
    assert bool(torch.isnan(out[0]).all())
    torch.testing.assert_close(out[1, 0], vc[0, :2].mean(dim=0))  # the other sequence is untouched


@needs_kernels
def test_paged_decode_attention_rejects_inputs_that_would_read_out_of_bounds() -> None:
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
    with pytest.raises(TypeError, match="one dtype"):
        call(k_cache=kc.bfloat16())
    with pytest.raises(TypeError, match="int32"):
        call(block_tables=table.long())
    with pytest.raises(ValueError, match="beyond its block table"):
        call(ctx_lens=torch.tensor([9], dtype=torch.int32))
    with pytest.raises(ValueError, match="outside the cache"):
        call(block_tables=torch.ones(1, 1, dtype=torch.int32))
    with pytest.raises(ValueError, match="alibi"):
        call(alibi=torch.zeros(1, 0))
    with pytest.raises(ValueError, match="shapes disagree"):
        call(out=torch.empty(1, 2, 16))


@needs_vnni
def test_int8_linear_propagates_nan() -> None:
    layer = ck.PackedInt8Linear(torch.ones(32, 40), None, lib)
    x = torch.full((3, 40), 0.5)
    x[0, 5] = float("nan")
    x[1, 39] = float("nan")  # the last element, in a partial vector
    y = layer(x)
    assert bool(torch.isnan(y[0]).all()) and bool(torch.isnan(y[1]).all())
    torch.testing.assert_close(y[2], torch.full((32,), 20.0), rtol=1e-2, atol=0.1)


@needs_kernels
def test_packed_layers_refuse_buffers_converted_after_packing() -> None:
    """``model.to(dtype)`` after packing would make the C side read the wrong bytes: a clear error instead."""
    layer = ck.PackedBf16Linear(torch.randn(32, 16).bfloat16(), torch.randn(32).bfloat16(), lib)
    layer.to(torch.float16)
    with pytest.raises(TypeError, match="changed after its layers were packed"):
        layer(torch.randn(2, 16))
    if ck.cpu_has_vnni():
        q = ck.PackedInt8Linear(torch.randn(32, 16), None, lib)
        q.to(torch.bfloat16)
        with pytest.raises(TypeError, match=r"scales is torch\.bfloat16"):
            q(torch.randn(2, 16))


@needs_kernels
def test_packed_layers_return_the_input_dtype() -> None:
    layer = ck.PackedBf16Linear(torch.randn(32, 16).bfloat16(), None, lib)
    assert layer(torch.randn(2, 16).half()).dtype is torch.float16
    if ck.cpu_has_vnni():
        assert ck.PackedInt8Linear(torch.randn(32, 16), None, lib)(torch.randn(2, 16).half()).dtype is torch.float16


@needs_kernels
def test_packed_embedding_rejects_ids_outside_the_vocabulary() -> None:
    emb = ck.PackedBf16Embedding(ck.PackedBf16Linear(torch.randn(50, 8).bfloat16(), None, lib))
    with pytest.raises(IndexError, match="50 entries"):
        emb(torch.tensor([49, 50]))  # 50 is inside the last panel's padding, not the vocabulary
    with pytest.raises(IndexError):
        emb(torch.tensor([-1]))


@needs_kernels
def test_kernels_called_from_several_python_threads_at_once() -> None:
    """ctypes releases the GIL: concurrent callers each use their own scratch buffers."""
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(11)
    layer = ck.PackedBf16Linear(torch.randn(96, 200, generator=g).bfloat16(), None, lib)
    inputs = [torch.randn(rows, 200, generator=g).bfloat16() for rows in (1, 7, 33, 64, 120, 5)] * 4
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(layer, inputs))
    for x, got in zip(inputs, results, strict=True):
        assert torch.equal(got, layer(x))


@needs_kernels
def test_paged_decode_attention_checks_bounds_given_by_the_caller_too() -> None:
    """The runner passes the step's bounds instead of reductions per layer; they are checked the same way."""
    kc = torch.zeros(1, 8, 16)
    q, out = torch.zeros(1, 1, 16), torch.empty(1, 1, 16)
    table, one = torch.zeros(1, 1, dtype=torch.int32), torch.ones(1, dtype=torch.int32)
    ck.paged_decode_attention(lib, q, kc, kc, table, one, 8, 1.0, None, out, bounds=(1, 1, 0, 0))
    with pytest.raises(ValueError, match="outside the cache"):
        ck.paged_decode_attention(lib, q, kc, kc, table, one, 8, 1.0, None, out, bounds=(1, 1, 0, 3))
    with pytest.raises(ValueError, match="beyond its block table"):
        ck.paged_decode_attention(lib, q, kc, kc, table, one, 8, 1.0, None, out, bounds=(1, 9, 0, 0))
