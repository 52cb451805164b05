from __future__ import annotations

import pytest

from cocina.engine_options import engine_env, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1.5GiB", int(1.5 * 2**30)), ("64k", 64 * 2**10), ("1000", 1000)],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "-1M", "0"])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_bytes(text)


def test_engine_env_maps_flags_to_the_variables_the_llm_predictor_reads() -> None:
    env = engine_env(dtype="float32", quantize="int8", device="cuda:1", kv_cache="4M", max_num_seqs=3, max_model_len=9)
    assert env == {
        "COCINA_DTYPE": "float32",
        "COCINA_QUANTIZE": "int8",
        "COCINA_DEVICE": "cuda:1",
        "COCINA_KV_CACHE_BYTES": str(4 * 2**20),
        "COCINA_MAX_NUM_SEQS": "3",
        "COCINA_MAX_MODEL_LEN": "9",
    }
    assert engine_env() == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "float64"}, "--dtype must be one of auto, float32, bfloat16, float16; got 'float64'"),
        ({"quantize": "int4"}, "--quantize must be one of none, int8, bnb8, bnb4; got 'int4'"),
        ({"device": "tpu"}, "--device must be auto, cpu, cuda or cuda:N; got 'tpu'"),
        ({"kv_cache": "lots"}, "--kv-cache: not a size: 'lots'"),
        ({"max_num_seqs": 0}, "--max-num-seqs must be >= 1; got 0"),
        ({"max_model_len": -5}, "--max-model-len must be >= 1; got -5"),
    ],
)
def test_engine_env_names_the_bad_flag(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        engine_env(**kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
