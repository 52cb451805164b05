"""docs/internals.md's who-may-import-whom table holds for the code: an AST walk of every module of cocina.

Each row names a package (or top-level module) of `cocina/`, what it may import at import time, and what it may
import only inside functions (lazily: heavy or higher parts that a light import must not pull in). Imports under
`if TYPE_CHECKING:` count as lazy. Anything else is a violation; so is a package the table does not know.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cocina"
DOC = ROOT / "docs" / "internals.md"
HEADING = "## Who may import whom"


def read_table() -> dict[str, tuple[set[str], set[str]]]:
    """package -> (allowed at import time, allowed lazily), from the doc."""
    text = DOC.read_text()
    assert HEADING in text, f"{DOC} has no '{HEADING}' section"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    table: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = [set(re.findall(r"`([a-z_]+)`", c)) for c in cells]
        (package,) = names[0]
        table[package] = (names[1], names[2])
    assert table, "the table has no rows"
    return table


def _unit(path: Path) -> str:
    """The package (or top-level module) of cocina a file belongs to."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(cocina unit imported, lazily?, line) for each import of another unit in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            lazy = True
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lazy = True
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            from_cocina = node.module == "cocina"  # `from cocina import engine` imports a unit too
            modules = [f"cocina.{a.name}" for a in node.names] if from_cocina else [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "cocina" and len(parts) > 1:
                found.append((parts[1], lazy, getattr(node, "lineno", 0)))
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(tree, False)
    return found


def test_the_import_table_holds() -> None:
    table = read_table()
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        if unit == "__init__":
            unit = "cocina"
        assert unit in table, f"{path.relative_to(ROOT)}: `{unit}` is not in the table of {DOC.name}"
        eager, lazy = table[unit]
        for target, is_lazy, line in imports(path):
            if target == unit or target in eager or (is_lazy and target in lazy):
                continue
            how = "inside a function" if is_lazy else "at import time"
            violations.append(f"{path.relative_to(ROOT)}:{line}: `{unit}` imports `{target}` {how}")
    assert not violations, "\n".join(violations)


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself: module-level, lazy, TYPE_CHECKING and `from cocina import x` imports are told apart."""
    sample = tmp_path / "m.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "import cocina.store\n"
        "from cocina import engine\n"
        "if TYPE_CHECKING:\n    from cocina.worker import runner\n"
        "def f():\n    from cocina.server.app import create_app\n"
    )
    assert imports(sample) == [("store", False, 2), ("engine", False, 3), ("worker", True, 5), ("server", True, 7)]
