"""`cocina doctor [DIR] [--fix]`: check a Cog or cocina project for what Cog deprecated or refuses, and fix what is
safe to fix (as `cog doctor` does; experimental, like Cog's).

Checks, in order (each a `Check`: what it looks at, its findings, and its fix if it has one):

| group  | check                                | severity | --fix                                                  |
| ------ | ------------------------------------ | -------- | ------------------------------------------------------ |
| Config | Config file (found, YAML, a mapping) | error    | —                                                      |
| Config | Deprecated fields (cog.yaml)         | warning  | —                                                      |
| Config | Predict reference (file, name)       | error    | —                                                      |
| Config | Deprecated predict interface names   | warning  | predict.py:Predictor -> run.py:Runner(BaseRunner).run  |
| Python | Deprecated imports                   | error    | removes ExperimentalFeatureWarning and its filters     |
| Python | Pydantic BaseModel workaround        | error    | pydantic.BaseModel + arbitrary_types_allowed -> cog's  |

Python files are read with `ast`, never imported. Fixes edit the source by the positions `ast` gives, so everything
else in the file stays as it was. The exit status is 1 when an error is left (or a fix could not be made).
"""

from __future__ import annotations

import ast
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import typer

__all__ = ["Finding", "register", "run_doctor"]

Severity = Literal["error", "warning"]
_PREDICT_KEY = re.compile(r"(?m)^predict\s*:")
_RUN_KEY = re.compile(r"(?m)^run\s*:")
_STARTER_PREDICT_REF = re.compile(r"""(?m)^predict:[ \t]*["']?predict\.py:Predictor["']?[ \t]*(?:#.*)?$""")
_DEPRECATION = re.compile(r'^deprecated field "([^"]+)": use "([^"]+)" instead$')  # cocina.config's wording
_DEPRECATED_IMPORTS = {
    "ExperimentalFeatureWarning": "ExperimentalFeatureWarning was removed in Cog 0.17 (cocina still accepts it, "
    "with a deprecation notice); nothing is experimental any more"
}


class FixError(Exception):
    """A fix that cannot be made safely; the message says why."""


@dataclass
class Finding:
    severity: Severity
    message: str
    remediation: str = ""
    file: str = ""
    line: int = 0


@dataclass
class Project:
    """What the checks read: the config file's text and values, and the Python files of the entry points."""

    root: pathlib.Path
    config_path: pathlib.Path | None = None
    config_text: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def config_name(self) -> str:
        return self.config_path.name if self.config_path is not None else "cog.yaml"

    def reference(self) -> str | None:
        value = self.config.get("run", self.config.get("predict"))
        return value if isinstance(value, str) else None

    def python_files(self) -> list[str]:
        """The files of the predictor and trainer references that exist (relative to the project)."""
        names: list[str] = []
        for value in (self.reference(), self.config.get("train")):
            if isinstance(value, str) and ":" in value:
                name = value.partition(":")[0]
                if name.endswith(".py") and (self.root / name).is_file() and name not in names:
                    names.append(name)
        return names


@dataclass
class Check:
    group: str
    description: str
    find: Callable[[Project], list[Finding]]
    fix: Callable[[Project, list[Finding]], None] | None = None


# --- config checks --------------------------------------------------------------------------------------------


def _config_file(project: Project) -> list[Finding]:
    import yaml

    from cocina.config import CONFIG_FILES

    if project.config_path is None:
        return [
            Finding(
                "error",
                f"no {' or '.join(CONFIG_FILES)} in {project.root}",
                "Run `cocina init`, or run cocina doctor in the project's folder",
            )
        ]
    try:
        document = yaml.safe_load(project.config_text)
    except yaml.YAMLError as exc:
        return [Finding("error", f"not valid YAML: {exc}", "Fix the YAML syntax", project.config_name)]
    if not isinstance(document, dict):
        return [Finding("error", "must be a mapping of keys", "See Cog's cog.yaml reference", project.config_name)]
    project.config = document
    return []


def _deprecated_fields(project: Project) -> list[Finding]:
    from cocina.config import cog_deprecations

    if project.config_path is None:
        return []
    findings = []
    for warning in cog_deprecations(project.config_path, project.config):
        if '"predict"' in warning:
            continue  # the predict-to-run check has its own finding and fix
        match = _DEPRECATION.match(warning)
        field_name, replacement = match.groups() if match else (warning, "")
        findings.append(
            Finding(
                "warning",
                f'"{field_name}" is deprecated: use "{replacement}" instead',
                f'Use "{replacement}" instead of "{field_name}" in {project.config_name}',
                project.config_name,
            )
        )
    return findings


def _predict_reference(project: Project) -> list[Finding]:
    if project.config_path is None:
        return []
    ref = project.reference()
    key = "run" if "run" in project.config else "predict"
    if ref is None:
        return [
            Finding(
                "error", "no predictor: neither run nor predict is set", 'Add run: "run.py:Runner"', project.config_name
            )
        ]
    file_part, sep, name = ref.partition(":")
    if not sep or not file_part.endswith(".py") or not name.isidentifier():
        return [
            Finding(
                "error",
                f"{key} reference {ref!r} must be in the form 'file.py:ClassName'",
                f'Set {key} to "predict.py:Predictor" in {project.config_name}',
                project.config_name,
            )
        ]
    path = project.root / file_part
    if not path.is_file():
        return [
            Finding(
                "error",
                f"{file_part} not found",
                f"Create {file_part} or update the {key} field in {project.config_name}",
                project.config_name,
            )
        ]
    try:
        tree = ast.parse(path.read_text(), filename=file_part)
    except SyntaxError as exc:
        return [
            Finding("error", f"cannot parse {file_part}: {exc.msg}", "Fix the syntax error", file_part, exc.lineno or 0)
        ]
    if name not in _top_level_names(tree):
        return [
            Finding(
                "error",
                f"{name} not found in {file_part}",
                f"Add class {name} to {file_part} or update the {key} field in {project.config_name}",
                file_part,
            )
        ]
    return []


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        elif isinstance(stmt, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in stmt.names)
    return names


def _predict_names(project: Project) -> list[Finding]:
    if project.config_path is None or project.config_path.name != "cog.yaml":
        return []  # in cocina.yaml, `predict:` is cocina's own key
    findings = []
    if _PREDICT_KEY.search(project.config_text):
        findings.append(
            Finding(
                "warning",
                "predict in cog.yaml is deprecated; use run with run.py:Runner",
                "Run cocina doctor --fix to migrate predict: to run:",
                project.config_name,
            )
        )
    if _STARTER_PREDICT_REF.search(project.config_text) and _predictor_class(project) is not None:
        findings.append(
            Finding(
                "warning",
                "predict.py uses deprecated Predictor/BasePredictor/predict() names",
                "Run cocina doctor --fix to migrate to Runner/BaseRunner/run()",
                "predict.py",
            )
        )
    return findings


def _predictor_class(project: Project) -> ast.ClassDef | None:
    path = project.root / "predict.py"
    if not path.is_file():
        return None
    try:
        tree = ast.parse(path.read_text())
    except SyntaxError:
        return None
    classes = [s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == "Predictor"]
    return classes[0] if len(classes) == 1 else None


def _fix_predict_names(project: Project, findings: list[Finding]) -> None:
    """predict.py:Predictor with predict() becomes run.py:Runner with run(), on BaseRunner."""
    if _RUN_KEY.search(project.config_text):
        raise FixError("automatic migration cannot run when run is already set")
    if not _STARTER_PREDICT_REF.search(project.config_text):
        raise FixError("Manual migration required: automatic migration only supports predict.py:Predictor")
    if (project.root / "run.py").exists():
        raise FixError("cannot migrate predict.py to run.py because run.py already exists")
    old = project.root / "predict.py"
    if not old.is_file():
        raise FixError("cannot migrate predict.py to run.py because predict.py was not found")
    source = old.read_text()
    tree = ast.parse(source)
    classes = [s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == "Predictor"]
    cls = classes[0] if len(classes) == 1 else None
    if cls is None:
        raise FixError("Manual migration required: automatic migration only supports a single Predictor class")
    methods = [s for s in cls.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)]
    if [m.name for m in methods].count("predict") != 1 or any(m.name == "run" for m in methods):
        raise FixError(
            "Manual migration required: automatic migration only supports a single Predictor class with a single "
            "predict method"
        )
    edits = _Edits(source)
    edits.rename_definition(cls, "Predictor", "Runner")
    edits.rename_definition(next(m for m in methods if m.name == "predict"), "predict", "run")
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id == "BasePredictor":
            edits.replace(base, "BaseRunner")
    used_elsewhere = any(
        isinstance(node, ast.Name) and node.id == "BasePredictor" and node not in cls.bases for node in ast.walk(tree)
    )
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "cog":
            for alias in stmt.names:
                if alias.name == "BasePredictor" and alias.asname is None:
                    edits.rename_import(
                        stmt, "BasePredictor", "BasePredictor, BaseRunner" if used_elsewhere else "BaseRunner"
                    )
    new_config = _STARTER_PREDICT_REF.sub('run: "run.py:Runner"', project.config_text)
    new = project.root / "run.py"
    new.write_text(edits.apply())
    old.unlink()
    assert project.config_path is not None
    project.config_path.write_text(new_config)
    project.config_text = new_config
    project.config = {k: v for k, v in project.config.items() if k != "predict"} | {"run": "run.py:Runner"}


# --- python checks --------------------------------------------------------------------------------------------


def _python_sources(project: Project) -> list[tuple[str, str, ast.Module]]:
    sources = []
    for name in project.python_files():
        text = (project.root / name).read_text()
        try:
            sources.append((name, text, ast.parse(text)))
        except SyntaxError:
            continue  # reported by the predict reference check
    return sources


def _deprecated_imports(project: Project) -> list[Finding]:
    findings = []
    for name, _, tree in _python_sources(project):
        for stmt in ast.walk(tree):
            if isinstance(stmt, ast.ImportFrom) and stmt.module in ("cog", "cog.types"):
                for alias in stmt.names:
                    if alias.name in _DEPRECATED_IMPORTS:
                        findings.append(
                            Finding(
                                "error",
                                _DEPRECATED_IMPORTS[alias.name],
                                f"Remove the import of {alias.name} from {stmt.module}",
                                name,
                                stmt.lineno,
                            )
                        )
    return findings


def _fix_deprecated_imports(project: Project, findings: list[Finding]) -> None:
    for name, source, tree in _python_sources(project):
        edits = _Edits(source)
        for stmt in tree.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module in ("cog", "cog.types"):
                edits.drop_imported(stmt, set(_DEPRECATED_IMPORTS))
            elif isinstance(stmt, ast.Expr) and _mentions(stmt, set(_DEPRECATED_IMPORTS)):
                edits.delete_statement(stmt)  # warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)
        if edits:
            (project.root / name).write_text(edits.apply())


def _mentions(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _pydantic_models(tree: ast.Module) -> list[tuple[ast.ClassDef, list[ast.stmt]]]:
    """Classes on pydantic's BaseModel with arbitrary_types_allowed, and the statements that allow it."""
    pydantic_names = {
        alias.asname or alias.name
        for stmt in tree.body
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "pydantic"
        for alias in stmt.names
        if alias.name == "BaseModel"
    }
    found = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.ClassDef):
            continue
        on_pydantic = any(
            (isinstance(b, ast.Name) and b.id in pydantic_names)
            or (isinstance(b, ast.Attribute) and b.attr == "BaseModel" and _is_name(b.value, "pydantic"))
            for b in stmt.bases
        )
        allowing = [s for s in stmt.body if _allows_arbitrary_types(s)]
        if on_pydantic and allowing:
            found.append((stmt, allowing))
    return found


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _allows_arbitrary_types(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Assign) and any(_is_name(t, "model_config") for t in stmt.targets):
        return "arbitrary_types_allowed" in ast.unparse(stmt.value)
    if isinstance(stmt, ast.ClassDef) and stmt.name == "Config":
        return "arbitrary_types_allowed" in ast.unparse(stmt)
    return False


def _pydantic_basemodel(project: Project) -> list[Finding]:
    findings = []
    for name, _, tree in _python_sources(project):
        for cls, _ in _pydantic_models(tree):
            findings.append(
                Finding(
                    "error",
                    f"{cls.name} inherits from pydantic.BaseModel with arbitrary_types_allowed; use cog.BaseModel "
                    "instead",
                    "Replace pydantic.BaseModel with cog.BaseModel and remove ConfigDict(arbitrary_types_allowed=True)",
                    name,
                    cls.lineno,
                )
            )
    return findings


def _fix_pydantic_basemodel(project: Project, findings: list[Finding]) -> None:
    for name, source, tree in _python_sources(project):
        models = _pydantic_models(tree)
        if not models:
            continue
        if any(isinstance(b, ast.Attribute) for cls, _ in models for b in cls.bases):
            raise FixError(f"{name}: Manual migration required for `pydantic.BaseModel` written as an attribute")
        edits = _Edits(source)
        for _, allowing in models:
            for stmt in allowing:
                edits.delete_statement(stmt)
        config_dict_left = any(
            isinstance(n, ast.Name) and n.id == "ConfigDict" and not any(n in ast.walk(s) for _, a in models for s in a)
            for n in ast.walk(tree)
        )
        drop = {"BaseModel"} | (set() if config_dict_left else {"ConfigDict"})
        cog_import = next(
            (s for s in tree.body if isinstance(s, ast.ImportFrom) and s.module == "cog" and s.level == 0), None
        )
        for stmt in tree.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module == "pydantic":
                edits.drop_imported(stmt, drop)
        if cog_import is not None:
            edits.add_imported(cog_import, "BaseModel")
        else:
            edits.insert_line(1, "from cog import BaseModel\n")
        (project.root / name).write_text(edits.apply())


CHECKS = [
    Check("Config", "Config file", _config_file),
    Check("Config", "Deprecated fields", _deprecated_fields),
    Check("Config", "Predict reference", _predict_reference),
    Check("Config", "Deprecated predict interface names", _predict_names, _fix_predict_names),
    Check("Python", "Deprecated imports", _deprecated_imports, _fix_deprecated_imports),
    Check("Python", "Pydantic BaseModel workaround", _pydantic_basemodel, _fix_pydantic_basemodel),
]


# --- source edits ---------------------------------------------------------------------------------------------


class _Edits:
    """Replacements of character ranges of one source, by the (line, column) positions `ast` reports."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._line_starts = [0]
        for line in source.splitlines(keepends=True):
            self._line_starts.append(self._line_starts[-1] + len(line))
        self._edits: list[tuple[int, int, str]] = []

    def __bool__(self) -> bool:
        return bool(self._edits)

    def _offset(self, line: int, col: int) -> int:
        # ast columns count UTF-8 bytes
        start = self._line_starts[line - 1]
        text = self.source[start : self._line_starts[line] if line < len(self._line_starts) else len(self.source)]
        return start + len(text.encode()[:col].decode(errors="ignore"))

    def _span(self, node: ast.AST) -> tuple[int, int]:
        end_line = getattr(node, "end_lineno", None) or node.lineno  # type: ignore[attr-defined]
        end_col = getattr(node, "end_col_offset", None) or 0
        return self._offset(node.lineno, node.col_offset), self._offset(end_line, end_col)  # type: ignore[attr-defined]

    def replace(self, node: ast.AST, text: str) -> None:
        start, end = self._span(node)
        self._edits.append((start, end, text))

    def rename_definition(
        self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef, old: str, new: str
    ) -> None:
        start = self._offset(node.lineno, node.col_offset)
        at = self.source.index(old, start)
        self._edits.append((at, at + len(old), new))

    def delete_statement(self, stmt: ast.stmt) -> None:
        """Remove a statement with its whole line(s)."""
        start = self._line_starts[stmt.lineno - 1]
        end_line = stmt.end_lineno or stmt.lineno
        end = self._line_starts[end_line] if end_line < len(self._line_starts) else len(self.source)
        self._edits.append((start, end, ""))

    def drop_imported(self, stmt: ast.ImportFrom, names: set[str]) -> None:
        kept = [alias for alias in stmt.names if alias.name not in names]
        if len(kept) == len(stmt.names):
            return
        if not kept:
            self.delete_statement(stmt)
            return
        listed = ", ".join(f"{a.name} as {a.asname}" if a.asname else a.name for a in kept)
        self.replace(stmt, f"from {'.' * stmt.level}{stmt.module} import {listed}")

    def rename_import(self, stmt: ast.ImportFrom, old: str, new: str) -> None:
        listed = ", ".join(
            (new if a.name == old and a.asname is None else (f"{a.name} as {a.asname}" if a.asname else a.name))
            for a in stmt.names
        )
        self.replace(stmt, f"from {'.' * stmt.level}{stmt.module} import {listed}")

    def add_imported(self, stmt: ast.ImportFrom, name: str) -> None:
        if any(a.name == name for a in stmt.names):
            return
        listed = ", ".join([*(f"{a.name} as {a.asname}" if a.asname else a.name for a in stmt.names), name])
        self.replace(stmt, f"from {'.' * stmt.level}{stmt.module} import {listed}")

    def insert_line(self, line: int, text: str) -> None:
        at = self._line_starts[line - 1]
        self._edits.append((at, at, text))

    def apply(self) -> str:
        out = self.source
        for start, end, text in sorted(self._edits, key=lambda e: (e[0], e[1]), reverse=True):
            out = out[:start] + text + out[end:]
        return out


# --- running --------------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    check: Check
    findings: list[Finding]
    fixed: bool = False
    fix_error: str | None = None


def load(root: pathlib.Path) -> Project:
    from cocina.config import CONFIG_FILES

    project = Project(root.resolve())
    for name in CONFIG_FILES:
        if (project.root / name).is_file():
            project.config_path = project.root / name
            project.config_text = project.config_path.read_text()
            break
    return project


def run_doctor(root: pathlib.Path, *, fix: bool) -> list[CheckResult]:
    """Run every check on the project in `root` (fixing what can be fixed with `fix`); the results in order."""
    project = load(root)
    results = []
    for check in CHECKS:
        findings = check.find(project)
        result = CheckResult(check, findings)
        if fix and findings and check.fix is not None:
            try:
                check.fix(project, findings)
            except FixError as exc:
                result.fix_error = str(exc)
            else:
                result.fixed = True
        results.append(result)
        if check.description == "Config file" and findings:
            break  # nothing else can be read
    return results


def report(results: list[CheckResult], *, fix: bool, echo: Callable[[str], None]) -> int:
    """Print the results as `cog doctor` does; the exit status (1 when an error is left)."""
    errors = warnings = fixed = 0
    group = ""
    for result in results:
        if result.check.group != group:
            group = result.check.group
            echo(group)
        if not result.findings:
            echo(f"  ✓ {result.check.description}")
            continue
        if result.fixed:
            echo(f"  ✓ Fixed: {result.check.description}")
            fixed += len(result.findings)
        else:
            worst = "error" if any(f.severity == "error" for f in result.findings) else "warning"
            echo(f"  {'✗' if worst == 'error' else '⚠'} {result.check.description}")
            errors += sum(f.severity == "error" for f in result.findings)
            warnings += sum(f.severity == "warning" for f in result.findings)
        for finding in result.findings:
            where = (
                f"{finding.file}:{finding.line} — " if finding.line else (f"{finding.file} — " if finding.file else "")
            )
            echo(f"    {where}{finding.message}")
            if fix and not result.fixed:
                echo(
                    f"    Remediation: {finding.remediation}" if finding.remediation else "    (no auto-fix available)"
                )
        if result.fix_error is not None:
            echo(f"    Could not fix: {result.fix_error}")
            errors += 1
    echo("")
    fixable = any(r.check.fix is not None and r.findings and not r.fixed for r in results)
    if fixed:
        parts = [f"Fixed {fixed} issue{'s' if fixed != 1 else ''}"]
        if warnings:
            parts.append(f"{warnings} warning{'s' if warnings != 1 else ''} remaining")
        if errors:
            parts.append(f"{errors} unfixed error{'s' if errors != 1 else ''}")
        echo(". ".join(parts) + ".")
    elif errors or warnings:
        counted = [f"{n} {word}{'s' if n != 1 else ''}" for n, word in ((errors, "error"), (warnings, "warning")) if n]
        hint = ' Run "cocina doctor --fix" to auto-fix.' if fixable and not fix else ""
        echo(f"Found {', '.join(counted)}.{hint}")
    else:
        echo("no issues found")
    return 1 if errors else 0


def doctor_command(
    directory: Annotated[pathlib.Path, typer.Argument(help="Project folder (cocina.yaml or cog.yaml).")] = pathlib.Path(
        "."
    ),
    fix: Annotated[bool, typer.Option("--fix", help="Apply the fixes that are safe to make.")] = False,
) -> None:
    """Check a project for what Cog deprecated or refuses (experimental), and fix it with --fix."""

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    echo("note: cocina doctor is experimental; its checks may change.")
    echo("Running cocina doctor --fix..." if fix else "Running cocina doctor...")
    echo("")
    raise typer.Exit(report(run_doctor(directory, fix=fix), fix=fix, echo=echo))


def register(app: typer.Typer) -> None:
    """Add `doctor` to the `cocina` command."""
    app.command("doctor")(doctor_command)
