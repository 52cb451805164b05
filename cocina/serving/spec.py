"""What to serve: `ModelSpec`, one per model, built from a project directory or a language model's id or path.

A spec names the model (`owner/name`), its version (a content hash), the project its process runs (a Cog project,
or `cocina.llm:LLMPredictor` for `--model`), and for a language model the model to load with its typed engine
options. Building specs checks everything that can be checked without loading: the project's config, engine
option names and values, names and their uniqueness (`check_unique`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocina.config import ConfigError, ProjectConfig, load_project
from cocina.serving.project import builtin_llm, resolve_project_model

LLM_DEFAULT_MODEL = "cocina/demo"  # `cocina.llm.LLMPredictor.model`; a test checks they agree
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SKIP_DIRS = {".git", ".cocina", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".ruff_cache"}
PROJECT_FILES = ("cocina.yaml", "cog.yaml")


class SpecError(ValueError):
    """A model cannot be served as given: the message says what and where."""


@dataclass(frozen=True)
class EngineSpec:
    """The language model a `cocina.llm.LLMPredictor` loads (None: the class's `model`) and its options
    (`EngineConfig` fields, already validated)."""

    model: str | None
    config: Mapping[str, Any]

    def to_child(self) -> dict[str, Any]:
        """What the worker child receives (`Runner(engine=...)`)."""
        return {"model": self.model, "config": dict(self.config)}


@dataclass(frozen=True)
class ModelSpec:
    """One model to serve.

    `language_model` says, before loading, that the predictor runs on cocina's engine (read from the files);
    `aliases` are further names the OpenAI API accepts for it (`--model PATH` also answers to `PATH`, as vLLM
    does); `warm` models load at start and are never unloaded to make room.
    """

    name: str
    version: str
    project: ProjectConfig
    source: str
    engine: EngineSpec | None = None
    language_model: bool = False
    aliases: tuple[str, ...] = ()
    warm: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    python: str | None = None  # the interpreter of the model's process (a pushed version's environment)
    pushed: bool = False  # a version of the hub (its model's default version is then its newest one)

    @property
    def owner(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split("/", 1)[1]

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)


def check_name(name: str, what: str = "model name") -> str:
    """`owner/name`, each part letters, digits, `.`, `_`, `-` (at most 128); raises `SpecError`."""
    owner, sep, short = name.partition("/")
    if not sep or not _PART.match(owner) or not _PART.match(short):
        raise SpecError(
            f"invalid {what} {name!r}: use owner/name, each part of letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "model"
    return slug[:128]


def version_id(root: Path) -> str:
    """A version id: a SHA-256 over the project's files (relative paths and contents), so editing predict.py or
    cog.yaml gives a new version and an unchanged project keeps its id across restarts. Files over 64 MiB
    (weights) are hashed by name and size: reading gigabytes at every start is too slow."""
    h = hashlib.sha256()
    if root.is_file():
        h.update(root.read_bytes())
        return h.hexdigest()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix == ".pyc":
                continue
            size = path.stat().st_size
            if size > 64 * 2**20:
                h.update(f"{path.relative_to(root)}:{size}\n".encode())
                continue
            h.update(f"{path.relative_to(root)}\n".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _engine_config(layers: Iterable[Mapping[str, Any]], where: str) -> dict[str, Any]:
    """Engine options merged in order (later wins), checked against `EngineConfig`."""
    from cocina.engine.config import EngineConfig

    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    try:
        return dataclasses.asdict(EngineConfig(**merged))
    except (TypeError, ValueError) as exc:  # an option EngineConfig does not have, or a bad value
        raise SpecError(f"invalid engine option in {where}: {exc}") from None


def model_spec(
    model: str,
    *,
    name: str | None = None,
    engine_options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    warm: bool = False,
    cwd: Path | None = None,
) -> ModelSpec:
    """`cocina serve --model ID_OR_PATH`: the built-in `LLMPredictor` on that model.

    Named `name`, else the id when it is `owner/name`, else `local/<directory name>`; the OpenAI API also
    accepts `model` as given (and `name` without an owner). Engine options: `COCINA_*` in `environ` (the
    server's environment), then `engine_options` (the command line)."""
    from cocina.config import ProjectConfig
    from cocina.engine_options import config_fields_from_env

    local = Path(model).expanduser()
    if name is None:
        owner, slash, short = model.partition("/")
        if not local.exists() and slash and _PART.match(owner) and _PART.match(short):
            name = model  # a hub id, `org/model`: its own name
        else:
            name = f"local/{_slug(local.name or model)}"  # a directory (there or not), or a bare id
    aliases = [model]
    if "/" not in name:
        aliases.append(name)
        name = f"local/{name}"
    check_name(name, "served model name")
    root = (cwd or Path.cwd()).resolve()
    project = ProjectConfig(root=root, config_file=root / "cocina.yaml", predict_ref="cocina.llm:LLMPredictor")
    version = version_id(local) if local.exists() else hashlib.sha256(model.encode()).hexdigest()
    try:
        from_env = config_fields_from_env(environ or {})
    except ValueError as exc:
        raise SpecError(f"invalid engine option in the environment: {exc}") from None
    config = _engine_config([from_env, engine_options or {}], "the command line")
    path = str(local.resolve()) if local.exists() else model
    return ModelSpec(
        name=name,
        version=version,
        project=project,
        source=f"--model {model}",
        engine=EngineSpec(path, config),
        language_model=True,
        aliases=tuple(a for a in dict.fromkeys(aliases) if a != name),
        warm=warm,
    )


def project_spec(
    directory: Path,
    *,
    name: str | None = None,
    engine_options: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    warm: bool = False,
    version: str | None = None,
) -> ModelSpec:
    """A Cog project directory (cog.yaml or cocina.yaml): its predictor in a worker process.

    Named `name`, else `local/<directory name>`. For a predictor on cocina's engine, the engine options are,
    later winning: `COCINA_*` in `environ` (the server's environment), then in the project's `environment:`,
    then `cocina: engine:`, then `engine_options` (the command line). `version`: the id when it is known (a
    pushed version's), instead of hashing the directory."""
    from cocina.engine_options import config_fields_from_env

    root = directory.resolve()
    try:
        project = load_project(root)
    except FileNotFoundError as exc:
        raise SpecError(str(exc)) from None
    name = check_name(name or f"local/{_slug(root.name)}")
    llm = builtin_llm(project)
    where = str(project.config_file)
    try:
        layers = [
            config_fields_from_env(environ or {}),
            config_fields_from_env(project.environment),
            dict(project.engine),
            dict(engine_options or {}),
        ]
    except ValueError as exc:
        raise SpecError(f"invalid engine option in {where}: {exc}") from None
    config = _engine_config(layers, f"`cocina: engine:` of {where}" if project.engine else where)
    model = resolve_project_model(project, llm, LLM_DEFAULT_MODEL, env=environ) if llm is not None else None
    return ModelSpec(
        name=name,
        version=version or version_id(root),
        project=project,
        source=f"project {root}",
        engine=EngineSpec(model, config),
        language_model=llm is not None,
        warm=warm,
    )


def is_project(directory: Path) -> bool:
    return any((directory / f).is_file() for f in PROJECT_FILES)


def projects_in(directory: Path) -> list[Path]:
    """The project directories directly inside `directory` (a directory of projects), by name."""
    return sorted(p for p in directory.iterdir() if p.is_dir() and is_project(p))


def check_unique(specs: list[ModelSpec]) -> None:
    """Two models with one name (or an OpenAI alias naming another model) is an error naming both sources."""
    seen: dict[str, ModelSpec] = {}
    for spec in specs:
        for key in (spec.name, *spec.aliases):
            other = seen.get(key)
            if other is not None and other is not spec:
                raise SpecError(
                    f"two models are named {key!r}: {other.source} and {spec.source}; "
                    "give one another name (NAME=PATH, --name or --served-model-name)"
                )
            seen[key] = spec


__all__ = [
    "LLM_DEFAULT_MODEL",
    "ConfigError",
    "EngineSpec",
    "ModelSpec",
    "SpecError",
    "check_name",
    "check_unique",
    "is_project",
    "model_spec",
    "project_spec",
    "projects_in",
    "version_id",
]
