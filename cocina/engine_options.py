"""The engine options of `cocina serve` and `cocina predict`, defined once.

`engine_overrides` turns the flags into typed `EngineConfig` fields (checked here, before anything loads, so a
typo fails at once with one line); the commands hand the built config to the model's process as data.
`engine_env` gives the same options as `COCINA_*` variables, for a predictor run outside cocina's commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "int8", "bnb8", "bnb4")
_SUFFIXES = {"K": 2**10, "M": 2**20, "G": 2**30}

DtypeOption = Annotated[
    str | None, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16 (GPU); auto picks bf16 where fast")
]
QuantizeOption = Annotated[
    str | None, typer.Option("--quantize", help="none | int8 (CPU) | bnb8 | bnb4 (CUDA, bitsandbytes)")
]
DeviceOption = Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
KvCacheOption = Annotated[
    str | None, typer.Option("--kv-cache", help="KV cache budget, e.g. 512M or 2G (default 512M)")
]
MaxNumSeqsOption = Annotated[int | None, typer.Option("--max-num-seqs", help="Sequences decoded together")]
MaxModelLenOption = Annotated[int | None, typer.Option("--max-model-len", help="Prompt + output token limit")]


def parse_bytes(text: str) -> int:
    """`512M`, `2G`, `1.5GiB` or a plain number of bytes."""
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if cleaned and cleaned[-1] in _SUFFIXES:
            value = int(float(cleaned[:-1]) * _SUFFIXES[cleaned[-1]])
        else:
            value = int(cleaned)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (examples: 512M, 2G, 1073741824)") from None
    if value <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return value


def engine_overrides(
    *,
    dtype: str | None = None,
    quantize: str | None = None,
    device: str | None = None,
    kv_cache: str | None = None,
    max_num_seqs: int | None = None,
    max_model_len: int | None = None,
) -> dict[str, Any]:
    """The `EngineConfig` fields the options given set (None: not set), typed. Raises `ValueError` naming the
    option."""
    env = engine_env(
        dtype=dtype,
        quantize=quantize,
        device=device,
        kv_cache=kv_cache,
        max_num_seqs=max_num_seqs,
        max_model_len=max_model_len,
    )
    return config_fields_from_env(env)


def config_fields_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The `EngineConfig` fields that `COCINA_*` variables in `env` set, typed (`quantize: none` is None)."""
    fields: dict[str, Any] = {}
    for variable, key in ENV_TO_ENGINE_KEY.items():
        value = env.get(variable)
        if not value:
            continue
        if key == "quantize":
            fields[key] = None if value.lower() in ("none", "off") else value
        elif key == "kv_cache_bytes":
            fields[key] = parse_bytes(value)
        elif key in ("max_num_seqs", "max_model_len"):
            try:
                fields[key] = int(value)
            except ValueError:
                raise ValueError(f"{variable} must be an integer; got {value!r}") from None
        else:
            fields[key] = value
    return fields


def engine_env(
    *,
    dtype: str | None = None,
    quantize: str | None = None,
    device: str | None = None,
    kv_cache: str | None = None,
    max_num_seqs: int | None = None,
    max_model_len: int | None = None,
) -> dict[str, str]:
    """The `COCINA_*` variables for the options given (None: not set). Raises `ValueError` naming the option."""
    env: dict[str, str] = {}
    if dtype is not None:
        if dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
        env["COCINA_DTYPE"] = dtype
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
        env["COCINA_QUANTIZE"] = quantize
    if device is not None:
        if not (device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ValueError(f"--device must be auto, cpu, cuda or cuda:N; got {device!r}")
        env["COCINA_DEVICE"] = device
    if kv_cache is not None:
        try:
            env["COCINA_KV_CACHE_BYTES"] = str(parse_bytes(kv_cache))
        except ValueError as exc:
            raise ValueError(f"--kv-cache: {exc}") from None
    for flag, value in (("--max-num-seqs", max_num_seqs), ("--max-model-len", max_model_len)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1; got {value}")
    if max_num_seqs is not None:
        env["COCINA_MAX_NUM_SEQS"] = str(max_num_seqs)
    if max_model_len is not None:
        env["COCINA_MAX_MODEL_LEN"] = str(max_model_len)
    return env


# `cocina: engine:` keys in cocina.yaml that each variable stands for: a command-line flag wins over the file.
ENV_TO_ENGINE_KEY = {
    "COCINA_DTYPE": "dtype",
    "COCINA_QUANTIZE": "quantize",
    "COCINA_DEVICE": "device",
    "COCINA_KV_CACHE_BYTES": "kv_cache_bytes",
    "COCINA_MAX_NUM_SEQS": "max_num_seqs",
    "COCINA_MAX_MODEL_LEN": "max_model_len",
}
