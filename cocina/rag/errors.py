"""What can go wrong with indexes and embedding models; messages are safe to show to users and clients."""

from __future__ import annotations


class RagError(Exception):
    """Base of the errors of `cocina.rag`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class IndexNotFound(RagError):
    """No index of that name (or no current version of it, or not the version asked for) in the data
    directory."""

    def __init__(self, name: str, version: str | None = None) -> None:
        if version is None:
            message = f"no index named {name!r}; create it with `cocina index create {name} PATH...`"
        else:
            message = (
                f"index {name!r} has no version {version!r} here; push it with `cocina index push {name}@{version} "
                "URL` (or build it here)"
            )
        super().__init__(message)
        self.name = name
        self.version = version


class IndexExists(RagError):
    """`create` of a name that is taken (`update` changes an existing index)."""


class InvalidIndexName(RagError, ValueError):
    """A name that cannot name an index (letters, digits, `.`, `_`, `-`; at most 64)."""


class EmbedderNotFound(RagError):
    """No embedding model at that name or path (cocina never downloads one)."""


class EmbedderMismatch(RagError):
    """Vectors from one embedding model asked of an index built with another."""


class NoDocuments(RagError):
    """Nothing to index: no readable file among the paths given."""


class IndexCorrupt(RagError):
    """An index version whose files are missing or unreadable."""
