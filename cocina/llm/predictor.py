"""``LLMPredictor``: a Cog predictor whose predictions all run on one :class:`AsyncLLMEngine`.

The engine options come from the caller (``load_engine(...)``) or, for a predictor started by
``cocina serve`` / ``cocina predict``, from environment variables read in ``setup`` (never at import):

=========================  ================================================================
``COCINA_MODEL``           model id or directory (default: the class's ``model``)
``COCINA_DTYPE``           auto | float32 | bfloat16 | float16
``COCINA_QUANTIZE``        int8 (CPU) | bnb8 | bnb4 (CUDA)
``COCINA_DEVICE``          auto | cpu | cuda | cuda:N
``COCINA_KV_CACHE_BYTES``  KV cache budget in bytes (suffixes K, M, G accepted: ``512M``)
``COCINA_MAX_NUM_SEQS``    sequences decoded together
``COCINA_MAX_MODEL_LEN``   prompt + output limit
=========================  ================================================================
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cocina.engine.config import EngineConfig
from cocina.engine.llm_engine import AsyncLLMEngine, ErrorEvent, LLMEngine, TokenEvent
from cocina.engine.sequence import SamplingParams
from cocina.engine_options import parse_bytes
from cocina.llm.chat import chat_prompt_ids, messages_for
from cocina.sdk import AsyncConcatenateIterator, BasePredictor, Input

__all__ = ["LLMPredictor", "build_prompt", "engine_config_from_env", "load_engine"]

log = logging.getLogger(__name__)

def engine_config_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> EngineConfig:
    """An :class:`EngineConfig` from ``COCINA_*`` variables (see the module docstring), then ``overrides``."""
    env = os.environ if env is None else env
    kw: dict[str, Any] = {}
    if env.get("COCINA_DTYPE"):
        kw["dtype"] = env["COCINA_DTYPE"]
    if env.get("COCINA_QUANTIZE"):
        q = env["COCINA_QUANTIZE"]
        kw["quantize"] = None if q.lower() in ("none", "off", "") else q
    if env.get("COCINA_DEVICE"):
        kw["device"] = env["COCINA_DEVICE"]
    if env.get("COCINA_KV_CACHE_BYTES"):
        kw["kv_cache_bytes"] = parse_bytes(env["COCINA_KV_CACHE_BYTES"])
    if env.get("COCINA_MAX_NUM_SEQS"):
        kw["max_num_seqs"] = int(env["COCINA_MAX_NUM_SEQS"])
    if env.get("COCINA_MAX_MODEL_LEN"):
        kw["max_model_len"] = int(env["COCINA_MAX_MODEL_LEN"])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return EngineConfig(**kw)


def load_engine(
    model: str | Path,
    *,
    dtype: str | None = None,
    quantize: str | None = None,
    kv_cache_bytes: int | None = None,
    device: str | None = None,
    config: EngineConfig | None = None,
    **engine_options: Any,
) -> AsyncLLMEngine:
    """Resolve ``model`` (never downloading), load it into an engine and log the memory it uses.

    ``config`` is the base configuration (default: :func:`engine_config_from_env`); the keyword arguments
    that are not None override it.
    """
    import dataclasses

    from cocina.models.resolve import resolve_model

    path = resolve_model(str(model))
    base = config if config is not None else engine_config_from_env()
    overrides: dict[str, Any] = {
        "dtype": dtype,
        "quantize": quantize,
        "kv_cache_bytes": kv_cache_bytes,
        "device": device,
    }
    overrides.update(engine_options)
    cfg = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    engine = LLMEngine.from_pretrained(path, cfg)
    # Printed as well as logged: `cocina predict` / `serve` show setup output to the user.
    print(f"cocina engine: {engine.memory_report().describe()}", flush=True)
    return AsyncLLMEngine(engine)


def build_prompt(tokenizer: Any, prompt: str, system_prompt: str | None = None) -> list[int]:
    """Token ids for ``prompt`` and an optional system prompt: :func:`cocina.llm.chat.chat_prompt_ids` of the
    two messages, so the Cog input and an OpenAI chat request with the same messages read the same prompt."""
    return chat_prompt_ids(tokenizer, messages_for(prompt, system_prompt))


class LLMPredictor(BasePredictor):
    """A language model behind Cog's interface, on cocina's engine; subclass and set ``model``.

    ``cocina serve`` and ``cocina predict`` hand it the model and a typed :class:`EngineConfig` through
    :meth:`use_engine` before ``setup``; run any other way, ``setup`` reads the ``COCINA_*`` variables.
    """

    model: str = "cocina/demo"
    engine: AsyncLLMEngine
    engine_config: EngineConfig | None = None
    model_path: str = ""  # the directory the model was loaded from (set by setup)

    def use_engine(self, model: str | None, config: EngineConfig) -> None:
        """Load ``model`` (None: the class's ``model``) with ``config`` in ``setup``, ignoring ``COCINA_*``."""
        if model:
            self.model = model
        self.engine_config = config

    def setup(self) -> None:
        """Load the model into a shared engine (options from :meth:`use_engine`, else ``COCINA_*``)."""
        from cocina.models.resolve import ModelNotFoundError, resolve_model

        chosen = None if self.engine_config is not None else os.environ.get("COCINA_MODEL")
        try:
            self.model_path = str(resolve_model(chosen or self.model))
            self.engine = load_engine(self.model_path, config=self.engine_config)
        except ModelNotFoundError as exc:
            # Say where the model's name came from, so that the user knows what to change.
            if chosen:
                origin = "the COCINA_MODEL environment variable"
            else:
                origin = (
                    f"`model = {self.model!r}` in class {type(self).__name__} (predict.py, in a `cocina init` "
                    "project): point it at a local model directory or a cached hub id, or set COCINA_MODEL"
                )
            raise ModelNotFoundError(exc.model_id, f"{exc}\nThis model name comes from {origin}.") from None

    async def predict(  # type: ignore[misc]  # Cog's marker type for an async generator of text
        self,
        prompt: str = Input(description="The prompt (the user message, for chat models)", default=None),
        pregunta: str = Input(description="The same as prompt (the seed project's name)", default=None),
        system_prompt: str = Input(description="System prompt (the system message for chat models)", default=None),
        max_new_tokens: int = Input(description="The most tokens to generate", default=128, ge=1, le=8192),
        temperature: float = Input(
            description="Sampling temperature; 0 picks the likeliest token", default=0.7, ge=0, le=5
        ),
        top_p: float = Input(
            description="Nucleus sampling: the smallest token set with this probability",
            default=0.95,
            ge=0.01,
            le=1,
        ),
        top_k: int = Input(description="Keep only the k likeliest tokens; 0 keeps all", default=0, ge=0),
        min_p: float = Input(
            description="Drop tokens less likely than min_p times the likeliest", default=0.0, ge=0, le=1
        ),
        repetition_penalty: float = Input(
            description="Penalty for tokens already seen; 1 is none", default=1.0, ge=0.01, le=5
        ),
        stop: str = Input(description="Stop sequences, separated by commas", default=None),
        seed: int = Input(description="Random seed for repeatable answers; empty for a random one", default=None),
    ) -> AsyncConcatenateIterator[str]:
        """Stream the model's answer, piece by piece, as the engine generates it."""
        text = prompt if prompt is not None else pregunta
        if text is None:
            raise ValueError("give a prompt (or pregunta)")
        if seed is None:
            seed = random.randint(0, 2**31 - 1)
        print(f"seed: {seed}")
        params = SamplingParams(
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            stop=tuple(s for s in (stop or "").split(",") if s),
            seed=seed,
        )
        token_ids = build_prompt(self.engine.engine.tokenizer, text, system_prompt)
        room = self.engine.engine.max_model_len - len(token_ids)
        if room < 1:
            raise ValueError(
                f"the prompt is {len(token_ids)} tokens; this model reads at most "
                f"{self.engine.engine.max_model_len - 1}"
            )
        if params.max_tokens > room:
            params = SamplingParams(**{**params.__dict__, "max_tokens": room})
        from cocina.sdk.scope import current_scope

        scope = current_scope()
        # Replicate's names for a language model's metrics: token counts beside predict_time.
        scope.record_metric("input_token_count", len(token_ids))
        generated = 0
        # Leaving this generator early (a cancelled prediction) closes the engine's stream: abort.
        async for ev in self.engine.generate(token_ids, params):
            if isinstance(ev, TokenEvent):
                generated += len(ev.token_ids)
                scope.record_metric("output_token_count", generated)
                if ev.text:
                    yield ev.text
            elif isinstance(ev, ErrorEvent):
                raise RuntimeError(ev.message)
