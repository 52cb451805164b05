"""Content-addressed file storage for pushed projects: `blobs/sha256/ab/abcdef...`.

A blob is written to a temporary file while its SHA-256 is computed, and renamed into place only when the hash
matches what the client said: an upload cut off half way leaves nothing behind but a temporary file (removed at
the next start), and the next push uploads it again. A blob that is there is whole.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

_HEX = frozenset("0123456789abcdef")


class BlobError(ValueError):
    """A blob that is not what it claims to be (its content does not hash to its name, or its name is bad)."""


def check_digest(digest: str) -> str:
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise BlobError(f"not a SHA-256 hex digest: {digest[:80]!r}")
    return digest


class BlobStore:
    """Blobs under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # uploads a previous life did not finish
            stale.unlink(missing_ok=True)

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / "sha256" / digest[:2] / digest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def missing(self, digests: Iterable[str]) -> list[str]:
        """Of `digests`, those not stored yet (each once, in order)."""
        return [d for d in dict.fromkeys(digests) if not self.has(d)]

    def _tmp(self) -> Path:
        return self.tmp / f"{os.getpid()}-{secrets.token_hex(8)}"

    def _commit(self, tmp: Path, digest: str, actual: str) -> None:
        if actual != digest:
            tmp.unlink(missing_ok=True)
            raise BlobError(f"the content's SHA-256 is {actual}, not {digest}")
        dest = self.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)

    async def put_stream(self, digest: str, chunks: AsyncIterator[bytes]) -> int:
        """Store an upload (checked against `digest`); its size. An interrupted stream stores nothing."""
        check_digest(digest)
        tmp = self._tmp()
        h = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as f:
                async for chunk in chunks:
                    h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
            self._commit(tmp, digest, h.hexdigest())
        finally:
            tmp.unlink(missing_ok=True)
        return size

    def put_file(self, digest: str, source: Path) -> None:
        """Store a local file (a push to the local hub): copied, checked, renamed into place."""
        if self.has(digest):
            return
        tmp = self._tmp()
        try:
            h = hashlib.sha256()
            with source.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(8 * 2**20):
                    h.update(chunk)
                    dst.write(chunk)
            self._commit(tmp, digest, h.hexdigest())
        finally:
            tmp.unlink(missing_ok=True)

    def materialize(self, digest: str, dest: Path, *, executable: bool = False) -> None:
        """Place a blob at `dest` (a hard link when the file system allows, else a copy)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = self.path(digest)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
        if executable:
            dest.chmod(dest.stat().st_mode | 0o111)
