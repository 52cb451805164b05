"""Whether a project's predictor runs on cocina's engine, read from its files without importing them.

A project whose predictor is `cocina.llm.LLMPredictor` (or a subclass of it) is a language model: besides Cog
and Replicate predictions, the OpenAI API generates on its engine, in the model's own process. Knowing this
before the model loads lets `/v1/models` list it and lets `cocina serve` hand it the model and typed engine
options. A project is a language model when, read from its files:

- `cocina.yaml` has `cocina: model: ID_OR_PATH`, or
- the predict ref is the module reference `cocina.llm:LLMPredictor` (or `cocina.llm.predictor:LLMPredictor`), or
- the predict ref names `LLMPredictor` imported from `cocina.llm` (`from cocina.llm import LLMPredictor`), or
- it names a class whose only base is `LLMPredictor` (its `model = "..."` constant is read when present).

Whatever this says, the model's process tells the truth once loaded (`SetupDone.language_model`).
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
    """A project whose predictor runs on cocina's engine: `model` (None: `LLMPredictor.model`) and why."""

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


def _constant_attributes(cls: ast.ClassDef) -> dict[str, object]:
    """The class's attributes assigned a constant in its body (`model = "org/name"`)."""
    attrs: dict[str, object] = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant):
            attrs.update({t.id: stmt.value.value for t in stmt.targets if isinstance(t, ast.Name)})
        elif (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(stmt.value, ast.Constant)
        ):
            attrs[stmt.target.id] = stmt.value.value
    return attrs


def builtin_llm(project: ProjectConfig) -> BuiltinLLM | None:
    """Whether `project`'s predictor runs on cocina's engine (and with which model), or None."""
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
            model = _constant_attributes(stmt).get("model")
            return BuiltinLLM(
                str(model) if model is not None else None, f"{project.predict_ref} subclasses cocina.llm.LLMPredictor"
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
