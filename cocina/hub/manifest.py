"""A project as the hub keeps it: a manifest of its files (path, size, SHA-256, executable bit) whose own hash
is the version id, so the same content is always the same version.

Files are chosen as Cog chooses what goes into an image: everything under the project directory but what
`.cocinaignore` and `.dockerignore` exclude (gitignore-style patterns, read with `pathspec`), and never `.git`,
`.cocina`, virtualenvs or caches. Hashing big files costs seconds, so `ManifestCache` remembers each file's hash
by (size, mtime): pushing an unchanged 500 MB project again reads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec

IGNORE_FILES = (".cocinaignore", ".dockerignore")
ALWAYS_SKIPPED = (".git/", ".cocina/", ".venv/", "venv/", "__pycache__/", ".mypy_cache/", ".ruff_cache/", "*.pyc")
CHUNK = 8 * 2**20


@dataclass(frozen=True)
class FileEntry:
    """One file of a version: its path (POSIX, relative), size, SHA-256 and whether it is executable."""

    path: str
    size: int
    sha256: str
    executable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "executable": self.executable}


@dataclass(frozen=True)
class Manifest:
    """A project's files, sorted by path. `version_id` is the SHA-256 of its canonical JSON."""

    files: tuple[FileEntry, ...]

    @property
    def version_id(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def canonical(self) -> bytes:
        body = [f.to_json() for f in self.files]
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.files]

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Checks every entry (a bad one raises ValueError naming it): paths must stay inside the project."""
        if not isinstance(data, list):
            raise ValueError("a manifest is a list of files")
        files = []
        for i, item in enumerate(data):
            try:
                entry = FileEntry(
                    str(item["path"]), int(item["size"]), str(item["sha256"]), bool(item.get("executable"))
                )
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"manifest entry {i} is not {{path, size, sha256}}") from None
            check_path(entry.path)
            if len(entry.sha256) != 64 or any(c not in "0123456789abcdef" for c in entry.sha256):
                raise ValueError(f"manifest entry {entry.path!r}: sha256 must be 64 lowercase hex characters")
            if entry.size < 0:
                raise ValueError(f"manifest entry {entry.path!r}: a negative size")
            files.append(entry)
        paths = [f.path for f in files]
        if len(set(paths)) != len(paths):
            raise ValueError("a manifest lists a path twice")
        return cls(tuple(sorted(files, key=lambda f: f.path)))


def check_path(path: str) -> None:
    """A manifest path must be relative, normalized and inside the project (no `..`, no absolute paths)."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"manifest path {path!r} is not a relative path inside the project")


def ignore_spec(root: Path) -> pathspec.PathSpec:
    """The project's ignore patterns (both files, when present) and the ones cocina always applies."""
    lines = list(ALWAYS_SKIPPED)
    for name in IGNORE_FILES:
        path = root / name
        if path.is_file():
            lines += path.read_text(errors="replace").splitlines()
    return pathspec.PathSpec.from_lines("gitwildmatch", lines)


def project_files(root: Path) -> Iterator[Path]:
    """The files of the project (not symlinks to outside it), in path order, minus the ignored ones."""
    spec = ignore_spec(root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not spec.match_file(f"{(rel_dir / d).as_posix()}/"))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            if spec.match_file(rel) or not path.is_file():
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
                continue  # a link out of the project is not part of it
            yield path


def sha256_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


class ManifestCache:
    """File hashes by (path, size, mtime), kept in a JSON file: re-hashing only what changed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, list[Any]] = {}
        if path is not None and path.is_file():
            try:
                self._entries = json.loads(path.read_text())
            except ValueError:
                self._entries = {}

    def get(self, file: Path, st: os.stat_result) -> str | None:
        hit = self._entries.get(str(file))
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return str(hit[2])
        return None

    def put(self, file: Path, st: os.stat_result, digest: str) -> None:
        self._entries[str(file)] = [st.st_size, st.st_mtime_ns, digest]

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._entries))
            tmp.replace(self.path)


def build_manifest(
    root: Path, *, cache: ManifestCache | None = None, progress: Callable[[int], None] | None = None
) -> tuple[Manifest, dict[str, Path]]:
    """The manifest of the project at `root`, and where each hash's content is on disk (for uploading)."""
    root = root.resolve()
    entries: list[FileEntry] = []
    sources: dict[str, Path] = {}
    for path in project_files(root):
        st = path.stat()
        digest = cache.get(path, st) if cache is not None else None
        if digest is None:
            digest = sha256_file(path, progress)
            if cache is not None:
                cache.put(path, st, digest)
        elif progress is not None:
            progress(st.st_size)
        rel = path.relative_to(root).as_posix()
        entries.append(FileEntry(rel, st.st_size, digest, bool(st.st_mode & stat.S_IXUSR)))
        sources.setdefault(digest, path)
    if cache is not None:
        cache.save()
    return Manifest(tuple(entries)), sources
