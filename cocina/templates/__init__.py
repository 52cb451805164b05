"""Files written by `cocina init`: one folder per template (`llm`, `blank`), read with `template_files()`."""

from __future__ import annotations

from pathlib import Path

__all__ = ["TEMPLATES", "template_files"]

TEMPLATES = ("llm", "blank")

# Template file name -> the name written into the project. Dotfiles and .py files are stored under other
# names so
# that packaging keeps them (package-data patterns) and linters do not read template code as package code.
_TARGET_NAMES = {
    "cocina.yaml": "cocina.yaml",
    "predict.py.tmpl": "predict.py",
    "requirements.txt": "requirements.txt",
    "cocinaignore.txt": ".cocinaignore",
}


def template_files(name: str, values: dict[str, str] | None = None) -> dict[str, str]:
    """The files of template `name` as {project-relative name: text}, `{{key}}` placeholders filled in."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose one of: {', '.join(TEMPLATES)}")
    folder = Path(__file__).parent / name
    files: dict[str, str] = {}
    for source, target in _TARGET_NAMES.items():
        path = folder / source
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for key, value in (values or {}).items():
            text = text.replace("{{" + key + "}}", value)
        files[target] = text
    return files
