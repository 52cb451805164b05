"""The txtar archive format (golang.org/x/tools/txtar, as rogpeppe/go-internal reads it).

An archive is a comment (for testscript: the script) followed by files, each introduced by a marker line
`-- name --`. A file's data runs to the next marker; a final newline is added to the comment and to each file when
missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Archive", "File", "parse"]

_MARKER = b"-- "
_MARKER_END = b" --"
_NEWLINE_MARKER = b"\n-- "


@dataclass(frozen=True)
class File:
    """One embedded file: its name as written in the marker, and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Archive:
    """A parsed archive: the comment (the script) and the files, in order."""

    comment: bytes
    files: list[File] = field(default_factory=list)


def _fix_newline(data: bytes) -> bytes:
    return data if not data or data.endswith(b"\n") else data + b"\n"


def _is_marker(data: bytes) -> tuple[str, bytes]:
    """(name, rest after the marker line) when `data` starts with a marker line, else ("", b"")."""
    if not data.startswith(_MARKER):
        return "", b""
    line, newline, after = data.partition(b"\n")
    if newline and line.endswith(b"\r"):
        line = line[:-1]
    if not line.endswith(_MARKER_END):
        return "", b""
    name = line[len(_MARKER) : len(line) - len(_MARKER_END)].decode("utf-8").strip()
    return name, after


def _find_marker(data: bytes) -> tuple[bytes, str, bytes]:
    """(data before the next marker, its name, data after its line); name "" when there is none."""
    i = 0
    while True:
        name, after = _is_marker(data[i:])
        if name:
            return data[:i], name, after
        j = data.find(_NEWLINE_MARKER, i)
        if j < 0:
            return _fix_newline(data), "", b""
        i = j + 1


def parse(data: bytes) -> Archive:
    """Parse the serialized form of an archive."""
    comment, name, rest = _find_marker(data)
    files: list[File] = []
    while name:
        body, next_name, rest = _find_marker(rest)
        files.append(File(name, body))
        name = next_name
    return Archive(comment, files)
