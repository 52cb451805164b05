"""Which backend serves a project directory: the worker child, or the built-in LLM predictor in-process.

A project whose predictor is cocina's own `LLMPredictor` runs trusted, built-in code; the server runs it in its
own process on one engine shared by the Cog, Replicate and OpenAI surfaces (as `cocina serve --model` does).
Any other predictor is user code and stays in the worker child (Cog's isolation), with no OpenAI surface.

A project is served by the built-in LLM predictor when, read from its files without importing them:

- `cocina.yaml` has `cocina: model: ID_OR_PATH`, or
- the predict ref is the module reference `cocina.llm:LLMPredictor` (or `cocina.llm.predictor:LLMPredictor`), or
- the predict ref names `LLMPredictor` imported from `cocina.llm` (`from cocina.llm import LLMPredictor`), or
- it names a configuration-only subclass of it: a class whose body is only a docstring and constant class
  attributes (e.g. `model = "org/name"`). A subclass with methods is user code: worker.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cocina.config import ProjectConfig

_LLM_MODULES = frozenset({"cocina.llm", "cocina.llm.predictor"})


@dataclass(frozen=True)
class BuiltinLLM:
    """A project served by the built-in LLM predictor: `model` (None: `LLMPredictor.model`) and why."""

    model: str | None
    reason: str


def _llm_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names bound to `LLMPredictor` (`from cocina.llm import LLMPredictor [as X]`) and module aliases of
    `cocina.llm` (`import cocina.llm as llm`)."""
    names: set[str] = set()
    modules: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module in _LLM_MODULES:
            names.update(a.asname or a.name for a in stmt.names if a.name == "LLMPredictor")
        elif isinstance(stmt, ast.Import):
            modules.update(a.asname or a.name for a in stmt.names if a.name in _LLM_MODULES)
    return names, modules


def _is_llm_base(node: ast.expr, names: set[str], modules: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.Attribute) and node.attr == "LLMPredictor":
        return ast.unparse(node.value) in modules
    return False


def _constant_attributes(cls: ast.ClassDef) -> dict[str, object] | None:
    """The class's constant attributes, or None when its body has anything else (methods: user code)."""
    attrs: dict[str, object] = {}
    for i, stmt in enumerate(cls.body):
        if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # docstring
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant):
            attrs.update({t.id: stmt.value.value for t in stmt.targets if isinstance(t, ast.Name)})
            continue
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and (stmt.value is None or isinstance(stmt.value, ast.Constant))
        ):
            if stmt.value is not None:
                attrs[stmt.target.id] = stmt.value.value
            continue
        return None
    return attrs


def builtin_llm(project: ProjectConfig) -> BuiltinLLM | None:
    """How `project` is served by the built-in LLM predictor, or None if its predictor is user code."""
    if project.model is not None:
        return BuiltinLLM(project.model, "cocina.model in the project's config")
    if project.predict_module in _LLM_MODULES and project.predict_name == "LLMPredictor":
        return BuiltinLLM(None, f"{project.predict_ref} is cocina.llm.LLMPredictor")
    if project.predict_module is not None and (
        project.predict_module.split(".")[0] == "cocina" or project.predict_file.suffix != ".py"
    ):
        return None  # another cocina module, or a module without source: never a configured LLMPredictor
    # A file, or a user module with source (`myproject.llm:Predictor`): read its text, as for a file.
    try:
        tree = ast.parse(project.predict_file.read_text(), filename=str(project.predict_file))
    except (OSError, SyntaxError):
        return None  # load_project checked it; if it changed since, the worker reports the problem
    names, modules = _llm_names(tree)
    if not names and not modules:
        return None
    target = project.predict_name
    if target in names:
        return BuiltinLLM(None, f"{project.predict_ref} is cocina.llm.LLMPredictor")
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == target:
            if not any(_is_llm_base(b, names, modules) for b in stmt.bases) or len(stmt.bases) != 1:
                return None
            attrs = _constant_attributes(stmt)
            if attrs is None:
                return None  # methods of its own: user code, run in the worker
            model = attrs.get("model")
            return BuiltinLLM(
                str(model) if model is not None else None,
                f"{project.predict_ref} only configures cocina.llm.LLMPredictor",
            )
        is_target = isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == target for t in stmt.targets
        )
        if is_target and _is_llm_base(stmt.value, names, modules):  # type: ignore[attr-defined]
            return BuiltinLLM(None, f"{project.predict_ref} is cocina.llm.LLMPredictor")  # Predictor = LLMPredictor
    return None


def resolve_project_model(
    project: ProjectConfig, llm: BuiltinLLM, default: str, env: Mapping[str, str] | None = None
) -> str:
    """The model to load: `COCINA_MODEL` (the project's `environment:` first, as the worker child would see
    it, then the server's), else the project's choice, else `default`; a relative path is the project's."""
    environ = {**(os.environ if env is None else env), **project.environment}
    chosen = environ.get("COCINA_MODEL") or llm.model or default
    local = project.root / chosen
    if not Path(chosen).is_absolute() and local.exists():
        return str(local)
    return chosen
