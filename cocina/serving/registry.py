"""`ModelSet`: the models a server holds, found by name; and room made before one loads.

Every name comparison of every API goes through `resolve` (Replicate's `owner/name`, `owner/name:version`, or a
bare version id) or `resolve_language_model` (OpenAI's `model`, which also accepts a model's aliases). Loading
goes through `load`, which first unloads the least recently used idle models when `max_loaded` or the memory
budget would be passed; models kept warm are never unloaded to make room.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

from cocina.serving.config import ServingConfig
from cocina.serving.errors import InvalidModelName, ModelNotFound, ModelUnavailable
from cocina.serving.model import ModelState, ServedModel, process_rss_bytes
from cocina.serving.runtime import ModelRuntime

log = logging.getLogger("cocina.serving")

_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def parse_reference(ref: str, field: str) -> tuple[str | None, str | None]:
    """`owner/name`, `owner/name:version` or a bare 64-hex version id -> (model name, version id).

    Raises `InvalidModelName` naming `field` when `ref` cannot be any of those."""
    model, colon, version = ref.partition(":")
    if "/" not in model:
        if not colon and _VERSION_ID.match(ref):
            return None, ref
        raise InvalidModelName(
            f"{field} must be a version id (64 hex characters), owner/name or owner/name:version; got {ref!r}",
            param=field,
        )
    owner, _, name = model.partition("/")
    if not _NAME_PART.match(owner) or not _NAME_PART.match(name) or (colon and not version):
        raise InvalidModelName(f"{field} is not a valid model reference: {ref!r}", param=field)
    return model, version or None


class ModelSet:
    """The runtimes of a server's models, by name. The first one (or `default`) serves Cog's root API."""

    def __init__(self, runtimes: list[ModelRuntime], config: ServingConfig, default: str | None = None) -> None:
        self.config = config
        self.by_name: dict[str, ModelRuntime] = {rt.model.name: rt for rt in runtimes}
        self.aliases: dict[str, str] = {}
        for rt in runtimes:
            for alias in rt.model.spec.aliases:
                self.aliases.setdefault(alias, rt.model.name)
        if default is not None and default not in self.by_name:
            raise ValueError(f"the default model {default!r} is not one of the models served")
        self.default_name = default or (runtimes[0].model.name if runtimes else None)

    def __iter__(self) -> Iterator[ModelRuntime]:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    @property
    def default(self) -> ModelRuntime:
        if self.default_name is None:
            raise ModelNotFound("This server serves no model.")
        return self.by_name[self.default_name]

    def get(self, name: str) -> ModelRuntime:
        """The model named `owner/name` (`ModelNotFound` otherwise)."""
        runtime = self.by_name.get(name)
        if runtime is None:
            raise ModelNotFound(f"Model {name} not found.", param="model")
        return runtime

    def resolve(self, ref: str, field: str = "version") -> ModelRuntime:
        """The model a Replicate reference names, its version checked."""
        name, version = parse_reference(ref, field)
        if name is None:
            for runtime in self.by_name.values():
                if runtime.model.version == version:
                    return runtime
            raise ModelNotFound(f"Version {version} not found.", param=field)
        found = self.by_name.get(name)
        if found is None:
            raise ModelNotFound(f"Model {name} not found.", param=field)
        runtime = found
        if version is not None and version != runtime.model.version:
            raise ModelNotFound(
                f"Version {version} of {name} not found; this server runs version {runtime.model.version}.",
                param=field,
            )
        return runtime

    def resolve_language_model(self, name: str) -> ModelRuntime:
        """The language model OpenAI's `model` names: its `owner/name` or one of its aliases."""
        if not name or len(name) > 1024 or any(ord(c) < 32 for c in name):
            raise InvalidModelName("model must be a non-empty model name.", param="model")
        runtime = self.by_name.get(self.aliases.get(name, name))
        if runtime is None or not runtime.model.is_language_model:
            raise ModelNotFound(f"The model `{name}` does not exist.", param="model")
        return runtime

    def language_models(self) -> list[ModelRuntime]:
        return [rt for rt in self.by_name.values() if rt.model.is_language_model]

    # ---- loading with room

    async def load(self, model: ServedModel) -> None:
        """Load `model`, first unloading idle models if it would not fit (`max_loaded`, the memory budget)."""
        if model.state not in (ModelState.READY, ModelState.LOADING):
            try:
                await self._make_room(model)
            except ModelUnavailable as exc:
                log.error("cannot load %s: %s", model.name, exc.message)
                raise
        await model.start_loading()

    def _loaded(self, besides: ServedModel) -> list[ModelRuntime]:
        return [
            rt
            for rt in self.by_name.values()
            if rt.model is not besides and rt.model.state in (ModelState.READY, ModelState.LOADING)
        ]

    def _over(self, model: ServedModel) -> str | None:
        """Why loading `model` now would pass a limit, or None."""
        loaded = self._loaded(model)
        if self.config.max_loaded is not None and len(loaded) + 1 > self.config.max_loaded:
            return f"--max-loaded {self.config.max_loaded} models are loaded"
        budget = self.config.memory_budget_bytes
        if budget is not None and loaded:
            used = 0
            for rt in loaded:
                rss = process_rss_bytes(rt.model.pid)
                if rss is not None:
                    rt.model.rss_bytes = rss
                used += rt.model.rss_bytes or 0
            need = estimate_bytes(model)
            if used + need > budget:
                return (
                    f"the memory budget of {budget / 2**20:.0f} MiB would be passed ({used / 2**20:.0f} MiB in "
                    f"use, {model.name} needs about {need / 2**20:.0f} MiB)"
                )
        return None

    async def _make_room(self, model: ServedModel) -> None:
        deadline = time.monotonic() + self.config.load_timeout_s
        while (reason := self._over(model)) is not None:
            victims = [
                rt
                for rt in self._loaded(model)
                if rt.model.state is ModelState.READY and rt.idle and not rt.model.spec.warm
            ]
            if victims:
                victim = min(victims, key=lambda rt: rt.model.last_used)
                log.info("unloading %s (least recently used) to load %s: %s", victim.model.name, model.name, reason)
                await victim.model.unload()
                continue
            if time.monotonic() > deadline:
                raise ModelUnavailable(f"No room to load {model.name}: {reason}.", retry_after_s=5)
            await asyncio.sleep(0.1)  # every loaded model is busy or kept warm: wait for one to become idle


def estimate_bytes(model: ServedModel) -> int:
    """The memory a model is expected to take: as much as last time, else the size of its weights on disk."""
    if model.rss_bytes:
        return model.rss_bytes
    engine = model.spec.engine
    if engine is not None and engine.model and model.spec.language_model:
        path = Path(engine.model)
        if path.is_dir():
            return sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".pt"))
    return 0
