"""What a build is made from: `BuildSource`, resolved and checked before anything is written.

Today a source is a project directory (a Cog project, or a language model on cocina's engine). The hub's pushed
versions will be a second kind of source: they carry the same facts (name, version, project files, the model's
weights), so the targets take a `BuildSource` and never look at where it came from.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


class BuildError(Exception):
    """A build cannot be made as asked; the message says what is missing and how to provide it."""


# Left out of every copy of a project, on top of its `.cocinaignore` / `.dockerignore`.
_ALWAYS_SKIP = (".git", ".cocina", "__pycache__", "*.pyc", ".venv", "venv", ".mypy_cache", ".ruff_cache")


@dataclass(frozen=True)
class BuildSource:
    """A model to build: `name` (`owner/name`), `version` (its content hash), `project` (the directory the
    server runs), `requirements` (the project's own Python requirements, pip lines), and for a language model
    on cocina's engine the weights directory to ship (`model_dir`; None for the built-in demo model, which ships
    inside cocina) and the engine's batch capacity (`max_num_seqs`)."""

    name: str
    version: str
    project: Path
    requirements: tuple[str, ...]
    language_model: bool
    model_dir: Path | None
    model_ref: str | None
    max_num_seqs: int
    concurrency: int

    @property
    def slug(self) -> str:
        """A name usable for files, systemd units and Kubernetes objects (DNS-1123)."""
        text = self.name.split("/", 1)[1].lower()
        out = "".join(c if c.isalnum() else "-" for c in text).strip("-")
        return (out or "model")[:50]

    def queue_target(self) -> int:
        """The backlog one replica drains within its latency budget: the engine's batch capacity for a language
        model (its sequences decode together), the predictor's concurrency otherwise."""
        return max(1, self.max_num_seqs if self.language_model else self.concurrency)


def _read_requirements(project: Path, build_requirements: str | None, packages: tuple[str, ...]) -> tuple[str, ...]:
    lines: list[str] = list(packages)
    if build_requirements:
        path = project / build_requirements
        if not path.is_file():
            raise BuildError(f"{path}: python_requirements names a file that does not exist")
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return tuple(lines)


def project_source(directory: Path, *, name: str | None = None) -> BuildSource:
    """A project directory as a build source; `BuildError` when it cannot be built (no project, a language model
    whose weights are not on this machine, a requirements file that is missing)."""
    from cocina.config import ConfigError
    from cocina.serving.spec import LLM_DEFAULT_MODEL, SpecError, is_project, project_spec

    root = directory.resolve()
    if not root.is_dir() or not is_project(root):
        raise BuildError(f"{directory}: not a project (no cocina.yaml or cog.yaml); create one with `cocina init`")
    try:
        spec = project_spec(root, name=name, environ={})
    except (ConfigError, SpecError) as exc:
        raise BuildError(str(exc)) from None
    requirements = _read_requirements(root, spec.project.build.python_requirements, spec.project.build.python_packages)
    model_dir: Path | None = None
    model_ref: str | None = None
    max_num_seqs = 0
    if spec.language_model:
        assert spec.engine is not None
        model_ref = spec.engine.model or LLM_DEFAULT_MODEL
        max_num_seqs = int(spec.engine.config.get("max_num_seqs") or 0)
        if model_ref != LLM_DEFAULT_MODEL:
            local = Path(model_ref)
            if not local.is_dir():
                raise BuildError(
                    f"no model: {model_ref} is not a directory on this machine, and a bundle must carry its "
                    "weights (cocina never downloads at run time); set COCINA_MODEL or `cocina: model:` to a "
                    "local directory with config.json and the weights"
                )
            if not (local / "config.json").is_file():
                raise BuildError(f"no model: {local} has no config.json (a Hugging Face model directory)")
            model_dir = local.resolve()
    if spec.language_model and max_num_seqs <= 0:
        from cocina.engine.config import EngineConfig

        max_num_seqs = EngineConfig().max_num_seqs
    return BuildSource(
        name=spec.name,
        version=spec.version,
        project=root,
        requirements=requirements,
        language_model=spec.language_model,
        model_dir=model_dir,
        model_ref=model_ref,
        max_num_seqs=max_num_seqs,
        concurrency=spec.project.concurrency_max,
    )


def _ignore_patterns(project: Path) -> list[str]:
    patterns = list(_ALWAYS_SKIP)
    for name in (".cocinaignore", ".dockerignore"):
        path = project / name
        if path.is_file():
            patterns += [
                p.strip().rstrip("/") for p in path.read_text().splitlines() if p.strip() and not p.startswith("#")
            ]
    return patterns


def copy_project(source: BuildSource, dest: Path, *, skip: tuple[Path, ...] = ()) -> None:
    """Copy the project's files into `dest`, leaving out what its ignore files say (and `skip`, e.g. the build's
    own output when it is inside the project)."""
    patterns = _ignore_patterns(source.project)
    skipped = {p.resolve() for p in skip}

    def ignore(directory: str, names: list[str]) -> set[str]:
        out = set()
        for n in names:
            full = Path(directory, n)
            rel = os.path.relpath(full, source.project)
            if full.resolve() in skipped or any(fnmatch.fnmatch(n, p) or fnmatch.fnmatch(rel, p) for p in patterns):
                out.add(n)
        return out

    shutil.copytree(source.project, dest, ignore=ignore, symlinks=False)
