"""cocina's own model code for the families it supports (see :mod:`.spec`), on the engine's paged KV cache.

``spec.py`` reads a model's shape from its transformers config, ``weights.py`` gathers its weights into fused
projections, ``decoder.py`` runs a step (one C call on CPU with cocina's kernels, PyTorch ops otherwise).
"""

from cocina.engine.models.decoder import CocinaModel, NativeStep
from cocina.engine.models.spec import FAMILIES, ModelSpec, UnsupportedModel, model_spec

__all__ = ["FAMILIES", "CocinaModel", "ModelSpec", "NativeStep", "UnsupportedModel", "model_spec"]
