"""cocina's continuous-batching LLM engine, split the nano-vllm way.

``config``, ``sequence``, ``block_manager`` and ``scheduler`` are pure Python (no torch) and unit-tested
without a model; ``sampler``, ``detokenizer``, ``quantize``, ``model_runner`` and ``llm_engine`` hold the
torch side. This package's ``__init__`` deliberately imports nothing, so importing a pure module never
pulls in torch. See ``docs/engine-contract.md`` for the interfaces between the parts.
"""
