"""EngineConfig: defaults, validation naming the field, immutability."""

from __future__ import annotations

import dataclasses

import pytest

from cocina.engine.config import EngineConfig


def test_defaults_are_valid() -> None:
    config = EngineConfig()
    assert config.block_size == 16
    assert config.kv_cache_bytes == 512 * 2**20
    assert config.num_kv_blocks is None
    assert config.max_waiting == 512
    assert config.enable_prefix_caching is True


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EngineConfig().block_size = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("block_size", 0),
        ("block_size", 1.5),
        ("block_size", True),
        ("kv_cache_bytes", 0),
        ("num_kv_blocks", 0),
        ("max_num_seqs", 0),
        ("max_num_batched_tokens", -1),
        ("max_waiting", 0),
        ("max_model_len", 1),
        ("enable_prefix_caching", "yes"),
        ("prefill_first", "yes"),
        ("dtype", "float64"),
        ("quantize", "int2"),
        ("model_impl", "vllm"),
        ("cpu_kernels", "avx1024"),
        ("device", "tpu"),
        ("device", "cuda:x"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        EngineConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_devices(device: str) -> None:
    assert EngineConfig(device=device).device == device


@pytest.mark.parametrize("quantize", [None, "int8", "int4", "bnb8", "bnb4"])
def test_quantize_methods(quantize: str | None) -> None:
    assert EngineConfig(quantize=quantize).quantize == quantize
