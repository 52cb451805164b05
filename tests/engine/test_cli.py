"""`cocina kernels build` / `cocina kernels info` (what scripts/install.sh runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cocina.cli import build_app
from cocina.engine import cpu_kernels as ck


@pytest.mark.skipif("avx2" not in ck.runnable_variants(), reason="this CPU has no AVX2")
def test_build_compiles_into_the_cache_and_info_names_the_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COCINA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("COCINA_CPU_KERNELS", "avx2")
    ck.load_variant.cache_clear()
    try:
        result = CliRunner().invoke(build_app(), ["kernels", "build", "--variant", "avx2"])
        assert result.exit_code == 0, result.output
        built = list((tmp_path / "kernels").glob("cocina-kernels-avx2-*.so"))
        assert len(built) == 1 and f"avx2: {built[0]}" in result.output
        info = CliRunner().invoke(build_app(), ["kernels", "info"])
        assert info.exit_code == 0, info.output
        assert "chosen (COCINA_CPU_KERNELS or auto): avx2" in info.output and str(built[0]) in info.output
    finally:
        ck.load_variant.cache_clear()


def test_without_a_compiler_build_warns_and_install_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCINA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    result = CliRunner().invoke(build_app(), ["kernels", "build", "--variant", "avx2"])
    assert result.exit_code == 0
    assert "no C compiler found" in result.output and "PyTorch's ops" in result.output
    strict = CliRunner().invoke(build_app(), ["kernels", "build", "--variant", "avx2", "--strict"])
    assert strict.exit_code == 1


def test_an_unknown_variant_is_an_error() -> None:
    result = CliRunner().invoke(build_app(), ["kernels", "build", "--variant", "sse2"])
    assert result.exit_code == 2 and "unknown variant" in result.output
