"""The built-in LLM predictor: many concurrent predictions on one engine, chat templates, inputs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from cocina.engine.config import EngineConfig
from cocina.llm import LLMPredictor, build_prompt, engine_config_from_env, load_engine
from cocina.models.resolve import ModelNotFoundError
from cocina.models.tiny import make_tiny_model
from cocina.sdk.schema import derive_schema


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("llm") / "llama", arch="llama")


@pytest.fixture
def predictor(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("COCINA_MODEL", str(model_dir))
    monkeypatch.setenv("COCINA_DTYPE", "float32")
    monkeypatch.setenv("COCINA_DEVICE", "cpu")
    monkeypatch.setenv("COCINA_KV_CACHE_BYTES", "4M")
    p = LLMPredictor()
    p.setup()
    yield p
    p.engine.shutdown()


async def _predict(p: LLMPredictor, **inputs: Any) -> str:
    defaults: dict[str, Any] = {
        "prompt": None,
        "pregunta": None,
        "system_prompt": None,
        "max_new_tokens": 16,
        "temperature": 0.7,
        "top_p": 0.95,
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "stop": None,
        "seed": None,
    }
    defaults.update(inputs)
    return "".join([piece async for piece in p.predict(**defaults)])


def test_schema_has_the_generation_inputs() -> None:
    schema = derive_schema(LLMPredictor())
    props = schema["components"]["schemas"]["Input"]["properties"]
    for name in ("prompt", "pregunta", "system_prompt", "max_new_tokens", "temperature", "top_p", "top_k"):
        assert name in props
    for name in ("min_p", "repetition_penalty", "stop", "seed"):
        assert name in props
    assert schema["components"]["schemas"]["Output"]["x-cog-array-display"] == "concatenate"


async def test_concurrent_predictions_share_one_engine(predictor: Any) -> None:
    first = await _predict(predictor, prompt="hola", seed=1)
    seeds = [1, 2, 3, 1]
    outs = await asyncio.gather(*[_predict(predictor, prompt="hola", seed=s) for s in seeds])
    assert outs[0] == outs[3] == first  # the same seed gives the same answer, whatever runs beside it
    st = predictor.engine.stats()
    assert st.num_requests_finished == 5 and st.num_kv_blocks_used == 0
    # The first prompt's full blocks (chat template + question) were reused by the next four.
    assert st.prefix_cache_hits > 0
    greedy = await _predict(predictor, pregunta="hola", temperature=0.0)
    assert greedy == await _predict(predictor, prompt="hola", temperature=0.0)


async def test_stop_and_missing_prompt(predictor: Any) -> None:
    free = await _predict(predictor, prompt="abc", temperature=0.0, max_new_tokens=24)
    stop = free[len(free) // 2 : len(free) // 2 + 2]
    if stop.strip(","):
        cut = await _predict(predictor, prompt="abc", temperature=0.0, max_new_tokens=24, stop=stop)
        assert cut == free[: free.index(stop)]
    with pytest.raises(ValueError, match="give a prompt"):
        await _predict(predictor)


def test_chat_template_and_system_prompt(model_dir: Path) -> None:
    tok: Any = AutoTokenizer.from_pretrained(model_dir)
    assert tok.chat_template
    with_system = tok.decode(build_prompt(tok, "la pregunta", "eres un cocinero"))
    assert "eres un cocinero" in with_system and "la pregunta" in with_system
    assert with_system.index("eres un cocinero") < with_system.index("la pregunta")
    tok.chat_template = None
    plain = build_prompt(tok, "la pregunta", "eres un cocinero")
    assert plain == tok.encode("eres un cocinero\n\nla pregunta")


def test_engine_options_from_env_and_load_engine(model_dir: Path) -> None:
    cfg = engine_config_from_env(
        {"COCINA_DTYPE": "float32", "COCINA_KV_CACHE_BYTES": "2M", "COCINA_QUANTIZE": "none"}, device="cpu"
    )
    assert cfg == EngineConfig(dtype="float32", kv_cache_bytes=2 * 2**20, quantize=None, device="cpu")
    engine = load_engine(model_dir, config=cfg, max_num_seqs=4)
    try:
        assert engine.engine.config.max_num_seqs == 4
        assert engine.engine.runner.kv_cache_bytes <= 2 * 2**20
    finally:
        engine.shutdown()


def test_a_missing_model_says_where_its_name_comes_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that cannot be found: how to provide it (resolve_model's text), then what names it here."""

    class Mine(LLMPredictor):
        model = str(tmp_path / "no-such-model")

    monkeypatch.delenv("COCINA_MODEL", raising=False)
    with pytest.raises(ModelNotFoundError) as info:
        Mine().setup()
    message = str(info.value)
    assert "To provide it" in message and info.value.model_id == Mine.model
    assert f"comes from `model = {Mine.model!r}` in class Mine" in message and "or set COCINA_MODEL" in message
    monkeypatch.setenv("COCINA_MODEL", "someorg/surely-not-cached-model")
    with pytest.raises(ModelNotFoundError, match="comes from the COCINA_MODEL environment variable"):
        Mine().setup()
