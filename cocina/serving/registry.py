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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cocina.serving.config import ServingConfig
from cocina.serving.errors import InvalidModelName, ModelNotFound, ModelUnavailable
from cocina.serving.model import ModelState, ServedModel, process_rss_bytes
from cocina.serving.runtime import ModelRuntime
from cocina.serving.spec import ModelSpec

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


@dataclass(frozen=True)
class Route:
    """Where a deployment sends one request: a version of its model, and the release that decided it."""

    model: str
    version: str
    release: int


class Catalog(Protocol):
    """What the hub knows beyond the models given at start: pushed versions and deployments (serving asks it
    when a reference is not among the runtimes it has; it never imports the hub)."""

    def find(self, name: str, version: str | None) -> ModelSpec | None:
        """A version of a model (None: its newest), or None."""
        ...

    def find_version(self, version: str) -> ModelSpec | None:
        """A version by its id alone, or None."""
        ...

    def route(self, deployment: str, sticky_key: str | None) -> Route | None:
        """Where a deployment's current release sends a request, or None when there is no such deployment."""
        ...

    def warm(self) -> set[tuple[str, str]]:
        """The (model, version) pairs deployments keep loaded (their `min_instances` > 0)."""
        ...


class ModelSet:
    """The runtimes of a server's models, one per (name, version). Each name has a default version (the one it
    was served with, or its newest pushed one); the first model (or `default`) serves Cog's root API.
    `make` builds (and starts) the runtime of a spec found later in the catalog."""

    def __init__(
        self,
        runtimes: list[ModelRuntime],
        config: ServingConfig,
        default: str | None = None,
        *,
        catalog: Catalog | None = None,
        make: Callable[[ModelSpec], ModelRuntime] | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self._make = make
        self.runtimes: dict[tuple[str, str], ModelRuntime] = {}
        self.by_name: dict[str, ModelRuntime] = {}  # each name's default version
        self._checked: dict[str, float] = {}  # when each hub model's newest version was last looked up
        self.aliases: dict[str, str] = {}
        for rt in runtimes:
            self._register(rt, default_version=True)
        if default is not None and default not in self.by_name:
            raise ValueError(f"the default model {default!r} is not one of the models served")
        self.default_name = default or (runtimes[0].model.name if runtimes else None)

    def _register(self, rt: ModelRuntime, *, default_version: bool) -> ModelRuntime:
        self.runtimes[(rt.model.name, rt.model.version)] = rt
        if default_version or rt.model.name not in self.by_name:
            self.by_name[rt.model.name] = rt
        for alias in rt.model.spec.aliases:
            self.aliases.setdefault(alias, rt.model.name)
        return rt

    def add(self, spec: ModelSpec) -> ModelRuntime:
        """The runtime of `spec`, made (and started) if it is new."""
        found = self.runtimes.get((spec.name, spec.version))
        if found is not None:
            return found
        if self._make is None:
            raise ModelNotFound(f"Model {spec.name} not found.")
        return self._register(self._make(spec), default_version=False)

    def remove(self, name: str, version: str) -> ModelRuntime | None:
        """Forget a version (its runtime is the caller's to drain)."""
        rt = self.runtimes.pop((name, version), None)
        if rt is not None and self.by_name.get(name) is rt:
            others = [r for (n, _v), r in self.runtimes.items() if n == name]
            if others:
                self.by_name[name] = others[-1]
            else:
                self.by_name.pop(name, None)
        return rt

    def __iter__(self) -> Iterator[ModelRuntime]:
        return iter(list(self.runtimes.values()))

    def __len__(self) -> int:
        return len(self.runtimes)

    @property
    def default(self) -> ModelRuntime:
        if self.default_name is None:
            raise ModelNotFound("This server serves no model.")
        return self.get(self.default_name)

    def get(self, name: str, field: str = "model") -> ModelRuntime:
        """The default version of the model named `owner/name` (`ModelNotFound` otherwise): the one it was served
        with, or for a hub model its newest version (looked up at most once a second: a push made by another
        process is seen within that second)."""
        runtime = self.by_name.get(name)
        if self.catalog is not None and (runtime is None or runtime.model.spec.pushed):
            now = time.monotonic()
            if runtime is None or now - self._checked.get(name, 0.0) > 1.0:
                self._checked[name] = now
                spec = self.catalog.find(name, None)
                if spec is not None and (runtime is None or spec.version != runtime.model.version):
                    runtime = self.add(spec)
                    self.by_name[name] = runtime
        if runtime is None:
            raise ModelNotFound(f"Model {name} not found.", param=field)
        return runtime

    def version(self, name: str, version: str, field: str = "version") -> ModelRuntime:
        """One version of a model (loaded from the catalog if it is not among the runtimes yet)."""
        runtime = self.runtimes.get((name, version))
        if runtime is None and self.catalog is not None:
            spec = self.catalog.find(name, version)
            if spec is not None:
                runtime = self.add(spec)
        if runtime is None:
            if name not in self.by_name and (self.catalog is None or self.catalog.find(name, None) is None):
                raise ModelNotFound(f"Model {name} not found.", param=field)
            raise ModelNotFound(f"Version {version} of {name} not found.", param=field)
        return runtime

    def resolve(self, ref: str, field: str = "version") -> ModelRuntime:
        """The model a Replicate reference names: `owner/name` (its default version), `owner/name:version`,
        or a version id."""
        name, version = parse_reference(ref, field)
        if name is None:
            assert version is not None
            for (_n, v), runtime in self.runtimes.items():
                if v == version:
                    return runtime
            spec = self.catalog.find_version(version) if self.catalog is not None else None
            if spec is None:
                raise ModelNotFound(f"Version {version} not found.", param=field)
            return self.add(spec)
        if version is None:
            return self.get(name, field)
        return self.version(name, version, field)

    def resolve_deployment(self, name: str, sticky_key: str | None) -> tuple[ModelRuntime, int | None]:
        """Where a deployment sends this request, and the release that decided (None: a deployment named
        like a model, which routes to that model's default version)."""
        route = self.catalog.route(name, sticky_key) if self.catalog is not None else None
        if route is not None:
            return self.version(route.model, route.version), route.release
        if name in self.by_name:
            return self.by_name[name], None
        raise ModelNotFound(f"Deployment {name} not found.", param="deployment")

    def resolve_language_model(self, name: str) -> ModelRuntime:
        """The language model OpenAI's `model` names: its `owner/name` (or `owner/name:version`) or an alias."""
        if not name or len(name) > 1024 or any(ord(c) < 32 for c in name):
            raise InvalidModelName("model must be a non-empty model name.", param="model")
        try:
            runtime = self.resolve(self.aliases.get(name, name), "model")
        except (ModelNotFound, InvalidModelName):
            raise ModelNotFound(f"The model `{name}` does not exist.", param="model") from None
        if not runtime.model.is_language_model:
            raise ModelNotFound(f"The model `{name}` does not exist.", param="model")
        return runtime

    def language_models(self) -> list[ModelRuntime]:
        """Each name's default version that is a language model."""
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
                rt for rt in self._loaded(model) if rt.model.state is ModelState.READY and rt.idle and not rt.model.warm
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
