"""The built-in LLM predictor on cocina's engine: many predictions share one continuous-batching engine.

``LLMPredictor`` is a Cog predictor (``setup`` loads the model into an :class:`AsyncLLMEngine`; an async
``predict`` streams text), so Cog's concurrency runs many predictions at once against one engine.
``load_engine`` is the same loading step for callers that use the engine directly (the HTTP server).
"""

from cocina.llm.predictor import LLMPredictor, build_prompt, engine_config_from_env, load_engine

__all__ = ["LLMPredictor", "build_prompt", "engine_config_from_env", "load_engine"]
