"""Make `import cog` resolve to cocina's SDK, so an unchanged Cog `predict.py` runs under cocina."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

from cocina.sdk.deprecated import DEPRECATED_NAMES, deprecated

__all__ = ["install_cog_shim"]

def install_cog_shim() -> None:
    """Put `cog` and `cog.types` into `sys.modules`, pointing at cocina.sdk.

    Always overrides: if the real `cog` package is installed, its server-side machinery would not work inside
    cocina's worker, and a predictor must see the same `Path`/`Secret` classes the schema module recognizes.
    Idempotent.
    """
    import cocina.sdk as sdk
    from cocina.sdk import types as sdk_types

    existing = sys.modules.get("cog")
    if existing is not None and getattr(existing, "__cocina_shim__", False):
        return
    # Drop any real cog submodules already imported, so `from cog.x import y` cannot mix two SDKs.
    for name in [n for n in sys.modules if n == "cog" or n.startswith("cog.")]:
        del sys.modules[name]

    cog = types.ModuleType("cog", "Cog-compatible SDK provided by cocina.")
    cog.__path__ = []  # a package, so `import cog.types` works through sys.modules
    cog.__cocina_shim__ = True  # type: ignore[attr-defined]
    for name in sdk.__all__:  # the names `cog` exports are exactly the SDK's
        setattr(cog, name, getattr(sdk, name))
    cog.__all__ = [*sdk.__all__, *DEPRECATED_NAMES]  # type: ignore[attr-defined]
    setattr(cog, "__getattr__", _lazy(cog))  # noqa: B010 - PEP 562: a module-level __getattr__

    cog_types = types.ModuleType("cog.types", "Cog's types, provided by cocina.")
    for name in sdk_types.__all__:
        setattr(cog_types, name, getattr(sdk_types, name))
    cog_types.Input = sdk.Input  # type: ignore[attr-defined]  # old predictors import Input from cog.types
    setattr(cog_types, "__getattr__", _lazy(cog_types))  # noqa: B010
    cog.types = cog_types  # type: ignore[attr-defined]

    sys.modules["cog"] = cog
    sys.modules["cog.types"] = cog_types


def _lazy(module: types.ModuleType) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) for Cog's deprecated names: the notice is printed on first use, then the
    object is kept on the module."""

    def getattr_(name: str) -> Any:
        if name in DEPRECATED_NAMES:
            value = deprecated(name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

    return getattr_
