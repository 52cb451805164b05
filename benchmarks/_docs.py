"""docs/benchmarks.md: each benchmark script owns one `## ` section and rewrites only that one."""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def replace_section(title: str, section: str, path: Path = DOCS) -> None:
    """Put `section` (which starts with the line `title`) in place of the section of that title, or at the end."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(title)
    if start == -1:
        path.write_text(text.rstrip("\n") + "\n\n" + section, encoding="utf-8")
        return
    end = text.find("\n## ", start + len(title))
    rest = text[end + 1 :] if end != -1 else ""
    path.write_text(text[:start] + section + ("\n" + rest if rest else ""), encoding="utf-8")
