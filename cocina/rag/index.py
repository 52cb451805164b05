"""Indexes on disk: FAISS vectors with their chunks and sources, versioned by content hash, switched atomically.

Layout under the indexes directory (`<data dir>/indexes/`)::

    NAME/CURRENT                    the current version's id (replaced atomically: write, fsync, rename)
    NAME/versions/VERSION/manifest.json   embedder (name, fingerprint, dim), chunking, roots, documents, skipped
    NAME/versions/VERSION/chunks.jsonl    one line per chunk: document, chunk number, section, page, text
    NAME/versions/VERSION/index.faiss     the vectors (inner product over L2-normalized vectors: cosine)

A version's id is the SHA-256 of what determines its content: the embedder's fingerprint, the chunking options
and every document's name and content hash. Building writes a new version into a temporary directory, renames it
into place and only then points `CURRENT` at it, so a crash at any moment leaves the previous version current
and whole; the two versions before the current one are kept, older ones removed. A version pushed to a server
(`install`, what `cocina index push` ends in) is kept until the index is deleted: `NAME/KEEP` lists them, since
models and deployments name them as `NAME@VERSION`.

`update` reuses the vectors of documents whose content did not change (read back from the previous version's
FAISS index), embeds new and changed ones, and drops documents that are gone.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cocina.rag.chunking import Chunk, ChunkingConfig, chunk_blocks
from cocina.rag.documents import Document, UnreadableFile, document_files, read_document
from cocina.rag.errors import (
    EmbedderMismatch,
    IndexCorrupt,
    IndexExists,
    IndexNotFound,
    InvalidIndexName,
    NoDocuments,
)

if TYPE_CHECKING:
    import numpy as np

    from cocina.rag.embedders import Embedder

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEEP_VERSIONS = 3  # the current one and the two before it
EMBED_BATCH = 64
VERSION_FILES = ("chunks.jsonl", "index.faiss", "manifest.json")  # a version is these files and nothing else


def check_index_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidIndexName(
            f"invalid index name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, starting with a "
            "letter or digit)"
        )
    return name


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: where it comes from, how well it matched, and its text."""

    index: str
    version: str
    document: str
    chunk: int
    score: float
    text: str
    section: tuple[str, ...] = ()
    page: int | None = None

    def source(self) -> dict[str, Any]:
        """The JSON a prediction's `sources` holds for this passage (documented in docs/rag.md)."""
        out: dict[str, Any] = {
            "index": self.index,
            "version": self.version,
            "document": self.document,
            "chunk": self.chunk,
            "score": round(self.score, 4),
            "text": self.text,
        }
        if self.section:
            out["section"] = " > ".join(self.section)
        if self.page is not None:
            out["page"] = self.page
        return out


@dataclass
class Progress:
    """Callbacks for long work (the CLI draws progress bars with them); each is optional."""

    on_read: Callable[[int, int], None] | None = None  # (files done, files total)
    on_embed: Callable[[int, int], None] | None = None  # (chunks done, chunks total)


@dataclass
class BuildReport:
    """What a create or update did."""

    name: str
    version: str
    previous: str | None
    documents: int
    chunks: int
    embedded: int  # chunks embedded now (the rest were reused)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"path", "reason"}]
    seconds: float = 0.0

    @property
    def unchanged(self) -> bool:
        return self.version == self.previous


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_file_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so a reader sees the old or the new content, never a part (write, fsync,
    rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    _write_file(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class IndexVersion:
    """One built version of an index, opened for search (its vectors and chunks in memory)."""

    def __init__(self, name: str, directory: Path) -> None:
        import faiss

        self.name = name
        self.directory = directory
        try:
            self.manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
            self.faiss = faiss.read_index(str(directory / "index.faiss"))
            with (directory / "chunks.jsonl").open(encoding="utf-8") as f:
                self.chunks: list[dict[str, Any]] = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexCorrupt(f"index {name!r} version {directory.name[:12]} cannot be read: {exc}") from None
        if self.faiss.ntotal != len(self.chunks):
            raise IndexCorrupt(f"index {name!r} version {directory.name[:12]}: vectors and chunks disagree")
        self.version: str = self.manifest["version"]
        self.embedder: dict[str, Any] = self.manifest["embedder"]

    @property
    def dim(self) -> int:
        return int(self.embedder["dim"])

    def vectors(self) -> np.ndarray:
        import numpy as np

        if self.faiss.ntotal == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.faiss.reconstruct_n(0, self.faiss.ntotal)

    def check_embedder(self, fingerprint: str, name: str | None = None) -> None:
        """Refuse vectors of another model: the fingerprints must be equal."""
        if fingerprint != self.embedder["fingerprint"]:
            raise EmbedderMismatch(
                f"index {self.name!r} was built with the embedding model {self.embedder['name']!r} "
                f"(fingerprint {self.embedder['fingerprint'][:12]}); the query was embedded with "
                f"{name or 'another model'!r} (fingerprint {fingerprint[:12]}). Query it with the model it was "
                "built with, or rebuild it with `cocina index create --embedder ...`"
            )

    def search(
        self, vectors: np.ndarray, top_k: int, *, fingerprint: str, min_score: float | None = None
    ) -> list[list[Passage]]:
        """The `top_k` best passages for each query vector (best first), those under `min_score` left out.
        `fingerprint` is the model that embedded the queries: another model's vectors are refused."""
        import numpy as np

        self.check_embedder(fingerprint)
        q = np.ascontiguousarray(vectors, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise EmbedderMismatch(f"index {self.name!r} holds {self.dim}-dimensional vectors; got shape {q.shape}")
        k = max(1, min(top_k, self.faiss.ntotal))
        if self.faiss.ntotal == 0:
            return [[] for _ in range(len(q))]
        scores, ids = self.faiss.search(q, k)
        results: list[list[Passage]] = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            found: list[Passage] = []
            for score, i in zip(row_scores, row_ids, strict=True):
                if i < 0 or (min_score is not None and score < min_score):
                    continue
                c = self.chunks[int(i)]
                found.append(
                    Passage(
                        self.name,
                        self.version,
                        c["document"],
                        c["chunk"],
                        float(score),
                        c["text"],
                        tuple(c.get("section") or ()),
                        c.get("page"),
                    )
                )
            results.append(found)
        return results

    def query(
        self, embedder: Embedder, texts: Sequence[str], top_k: int = 5, min_score: float | None = None
    ) -> list[list[Passage]]:
        """Embed `texts` as queries with `embedder` and search."""
        self.check_embedder(embedder.fingerprint, embedder.name)
        return self.search(
            embedder.embed(texts, kind="query"), top_k, fingerprint=embedder.fingerprint, min_score=min_score
        )

    def info(self) -> dict[str, Any]:
        """What `cocina index show` prints and `GET /v1/indexes/NAME` answers."""
        m = self.manifest
        return {
            "name": self.name,
            "version": self.version,
            "created_at": m.get("created_at"),
            "embedder": {
                "name": m["embedder"]["name"],
                "fingerprint": m["embedder"]["fingerprint"],
                "dim": m["embedder"]["dim"],
            },
            "chunking": m.get("chunking"),
            "roots": m.get("roots", []),
            "num_documents": len(m.get("documents", [])),
            "num_chunks": m.get("num_chunks", len(self.chunks)),
            "documents": [
                {"path": d["path"], "format": d["format"], "chunks": d["chunks"], "sha256": d["sha256"]}
                for d in m.get("documents", [])
            ],
            "skipped": m.get("skipped", []),
            "previous": m.get("previous"),
            "bytes": sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file()),
        }


class IndexStore:
    """The indexes of one data directory (`root` is its `indexes/` folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, name: str) -> Path:
        return self.root / check_index_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "CURRENT").is_file() and _NAME.match(p.name))

    def exists(self, name: str) -> bool:
        return (self._dir(name) / "CURRENT").is_file()

    def current_version(self, name: str) -> str:
        try:
            return (self._dir(name) / "CURRENT").read_text().strip()
        except FileNotFoundError:
            raise IndexNotFound(name) from None

    def resolve_version(self, name: str, version: str) -> str:
        """The full id of a version of `name` kept here, from the id or a unique prefix of it."""
        versions = self._dir(name) / "versions"
        if (versions / version / "manifest.json").is_file():
            return version
        matches = [
            p.name
            for p in versions.glob(f"{glob.escape(version)}*")
            if not p.name.startswith(".") and (p / "manifest.json").is_file()
        ]
        if not matches:
            raise IndexNotFound(name, version)
        if len(matches) > 1:
            raise IndexCorrupt(f"version {version!r} of index {name!r} is ambiguous: give more of it")
        return matches[0]

    def open(self, name: str, version: str | None = None) -> IndexVersion:
        """The current version of `name` (or the version given: a full id or a unique prefix)."""
        version = self.resolve_version(name, version) if version else self.current_version(name)
        return IndexVersion(name, self._dir(name) / "versions" / version)

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every kept version of `name`, newest first, with the current one marked."""
        current = self.current_version(name)
        kept = self.kept(name)
        out = []
        for p in (self._dir(name) / "versions").iterdir():
            if p.name.startswith(".") or not (p / "manifest.json").is_file():
                continue
            m = json.loads((p / "manifest.json").read_text())
            out.append(
                {
                    "version": p.name,
                    "created_at": m.get("created_at"),
                    "num_chunks": m.get("num_chunks"),
                    "current": p.name == current,
                    "pushed": p.name in kept,
                }
            )
        return sorted(out, key=lambda v: v["created_at"] or "", reverse=True)

    def kept(self, name: str) -> set[str]:
        """The versions of `name` that were installed (pushed): never collected."""
        try:
            return set((self._dir(name) / "KEEP").read_text().split())
        except FileNotFoundError:
            return set()

    def install(
        self, name: str, version: str, fill: Callable[[Path], None], *, make_current: bool = True
    ) -> tuple[IndexVersion, bool]:
        """Add a built version of `name` from elsewhere (a push): `fill(directory)` puts its files in a temporary
        directory, which is checked (exactly `VERSION_FILES`, readable, its manifest's version is `version`, as
        many vectors as chunks) and renamed into place; the version is kept until the index is deleted and, with
        `make_current` (or when the index had none), becomes current. Returns the version and whether it was new
        here. A version already here is not replaced (the id is the content). Raises `IndexCorrupt` for files
        that are not a version."""
        if not re.fullmatch(r"[0-9a-f]{64}", version):
            raise IndexCorrupt(f"{version!r} is not an index version id (64 lowercase hex digits)")
        directory = self._dir(name)
        versions = directory / "versions"
        final = versions / version
        created = not (final / "manifest.json").is_file()
        if created:
            versions.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=versions))
            try:
                fill(tmp)
                found = sorted(p.name for p in tmp.iterdir())
                if found != sorted(VERSION_FILES):
                    raise IndexCorrupt(f"an index version is the files {', '.join(VERSION_FILES)}; got {found}")
                opened = IndexVersion(name, tmp)
                if opened.version != version:
                    raise IndexCorrupt(f"the manifest says version {opened.version[:12]}, not {version[:12]}")
                for p in tmp.iterdir():
                    with p.open("rb") as f:
                        os.fsync(f.fileno())
                _fsync_dir(tmp)
                if final.exists():
                    shutil.rmtree(final)  # an incomplete leftover (no manifest): replace it
                os.rename(tmp, final)
                _fsync_dir(versions)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        kept = self.kept(name)
        if version not in kept:
            _write_file_atomic(directory / "KEEP", "".join(f"{v}\n" for v in sorted(kept | {version})).encode())
        if make_current or not (directory / "CURRENT").is_file():  # the first version is current anyway
            self._switch(directory, version)
        return IndexVersion(name, final), created

    def delete(self, name: str) -> None:
        directory = self._dir(name)
        if not (directory / "CURRENT").is_file():
            raise IndexNotFound(name)
        # CURRENT goes first: a crash halfway leaves no half-index that looks alive.
        (directory / "CURRENT").unlink()
        shutil.rmtree(directory, ignore_errors=True)

    # ---- building

    def create(
        self,
        name: str,
        paths: Sequence[Path],
        embedder: Embedder,
        chunking: ChunkingConfig | None = None,
        progress: Progress | None = None,
    ) -> BuildReport:
        """A new index of the documents under `paths`; `IndexExists` if the name is taken."""
        if self.exists(name):
            raise IndexExists(f"an index named {name!r} exists; change it with `cocina index update {name}`")
        return self._build(name, paths, embedder, chunking or ChunkingConfig(), None, progress)

    def update(
        self,
        name: str,
        paths: Sequence[Path] | None,
        embedder: Embedder,
        progress: Progress | None = None,
    ) -> BuildReport:
        """A new version of `name` from `paths` (None: the roots it was built from): unchanged documents keep
        their vectors, new and changed ones are embedded, documents no longer there are dropped. The embedder
        must be the index's (a different one means a new index: `delete` and `create`)."""
        previous = self.open(name)
        previous.check_embedder(embedder.fingerprint, embedder.name)
        roots = list(paths) if paths else [Path(r) for r in previous.manifest.get("roots", [])]
        chunking = ChunkingConfig(**previous.manifest["chunking"])
        return self._build(name, roots, embedder, chunking, previous, progress)

    def _build(
        self,
        name: str,
        roots: Sequence[Path],
        embedder: Embedder,
        chunking: ChunkingConfig,
        previous: IndexVersion | None,
        progress: Progress | None,
    ) -> BuildReport:
        import numpy as np

        started = time.perf_counter()
        progress = progress or Progress()
        roots = [Path(r).expanduser().resolve() for r in roots]
        missing = [str(r) for r in roots if not r.exists()]
        files = list(document_files(roots))
        docs, skipped = _read_all(files, roots, progress)
        skipped = [{"path": m, "reason": "no such file or directory"} for m in missing] + skipped
        if not docs:
            raise NoDocuments(
                "nothing to index: no readable text, Markdown, HTML or PDF file under "
                + ", ".join(str(r) for r in roots)
                + (f" ({len(skipped)} skipped)" if skipped else "")
            )
        fingerprint = embedder.fingerprint
        version = _version_id(fingerprint, chunking, docs)
        old_docs = {d["path"]: d for d in (previous.manifest["documents"] if previous else [])}
        report = BuildReport(name, version, previous.version if previous else None, len(docs), 0, 0, skipped=skipped)
        new_paths = {d.path for d in docs}
        report.removed = sorted(p for p in old_docs if p not in new_paths)
        for d in docs:
            if d.path not in old_docs:
                report.added.append(d.path)
            elif old_docs[d.path]["sha256"] != d.sha256:
                report.changed.append(d.path)
        directory = self._dir(name)
        if previous is not None and version == previous.version:
            report.chunks = len(previous.chunks)
            report.seconds = time.perf_counter() - started
            return report
        final = directory / "versions" / version
        if final.is_dir() and (final / "manifest.json").is_file():
            # The same content was built before (an earlier version kept): point CURRENT at it again.
            report.chunks = json.loads((final / "manifest.json").read_text())["num_chunks"]
            self._switch(directory, version)
            report.seconds = time.perf_counter() - started
            return report

        # Chunk every document; reuse vectors of unchanged ones.
        old_vectors = previous.vectors() if previous is not None else None
        rows: list[dict[str, Any]] = []
        reuse: dict[int, int] = {}  # row -> previous chunk row
        doc_entries: list[dict[str, Any]] = []
        for d in docs:
            old = old_docs.get(d.path)
            start = len(rows)
            if old is not None and old["sha256"] == d.sha256 and previous is not None:
                lo, hi = old["rows"]
                for j in range(lo, hi):
                    reuse[len(rows)] = j
                    rows.append(previous.chunks[j])
            else:
                for k, c in enumerate(chunk_blocks(d.blocks, chunking, embedder.count_tokens)):
                    rows.append(_chunk_row(d, k, c))
            doc_entries.append(
                {
                    "path": d.path,
                    "format": d.format,
                    "sha256": d.sha256,
                    "bytes": d.size,
                    "chunks": len(rows) - start,
                    "rows": [start, len(rows)],
                }
            )
        to_embed = [i for i in range(len(rows)) if i not in reuse]
        report.chunks = len(rows)
        report.embedded = len(to_embed)
        vectors = np.zeros((len(rows), embedder.dim), dtype=np.float32)
        if reuse and old_vectors is not None:
            dst = np.fromiter(reuse.keys(), dtype=np.int64)
            src = np.fromiter(reuse.values(), dtype=np.int64)
            vectors[dst] = old_vectors[src]
        if progress.on_embed:
            progress.on_embed(0, len(to_embed))
        for b in range(0, len(to_embed), EMBED_BATCH):
            batch = to_embed[b : b + EMBED_BATCH]
            vectors[batch] = embedder.embed([_embed_text(rows[i]) for i in batch], kind="document")
            if progress.on_embed:
                progress.on_embed(min(b + EMBED_BATCH, len(to_embed)), len(to_embed))

        manifest = {
            "format": 1,
            "name": name,
            "version": version,
            "created_at": _now(),
            "previous": previous.version if previous else None,
            "embedder": {"name": embedder.name, "fingerprint": fingerprint, "dim": embedder.dim},
            "chunking": asdict(chunking),
            "roots": [str(r) for r in roots],
            "documents": doc_entries,
            "skipped": skipped,
            "num_chunks": len(rows),
        }
        self._write_version(directory, version, manifest, rows, vectors)
        self._switch(directory, version)
        self._collect(directory, version)
        report.seconds = time.perf_counter() - started
        return report

    def _write_version(
        self, directory: Path, version: str, manifest: dict[str, Any], rows: list[dict[str, Any]], vectors: np.ndarray
    ) -> None:
        """Write a version into a temporary directory, fsync it, then rename it into place."""
        import faiss

        versions = directory / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=versions))
        try:
            index = faiss.IndexFlatIP(int(manifest["embedder"]["dim"]))
            if len(vectors):
                index.add(vectors)
            _write_file(tmp / "index.faiss", faiss.serialize_index(index).tobytes())
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            _write_file(tmp / "chunks.jsonl", lines.encode())
            _write_file(tmp / "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False).encode())
            _fsync_dir(tmp)
            final = versions / version
            if final.exists():
                shutil.rmtree(final)  # an incomplete leftover (no manifest): replace it
            os.rename(tmp, final)
            _fsync_dir(versions)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _switch(self, directory: Path, version: str) -> None:
        _write_file_atomic(directory / "CURRENT", (version + "\n").encode())

    def _collect(self, directory: Path, current: str) -> None:
        """Keep the current version, the two before it and installed ones; remove older ones and leftovers of
        crashed builds."""
        versions = directory / "versions"
        kept = self.kept(directory.name)
        entries = []
        for p in versions.iterdir():
            if p.name.startswith(".tmp-"):
                if time.time() - p.stat().st_mtime > 3600:  # a build that crashed (not one running now)
                    shutil.rmtree(p, ignore_errors=True)
                continue
            entries.append((p.stat().st_mtime, p))
        entries.sort(reverse=True)
        recent = 0
        for _, p in entries:
            if p.name in kept:
                continue  # installed (pushed): models and deployments may name it
            if p.name == current or recent < KEEP_VERSIONS - 1:
                recent += p.name != current
                continue
            shutil.rmtree(p, ignore_errors=True)


def _read_all(
    files: list[Path], roots: Sequence[Path], progress: Progress
) -> tuple[list[Document], list[dict[str, str]]]:
    docs: list[Document] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, path in enumerate(files):
        name = _doc_name(path, roots)
        if name in seen:
            continue
        seen.add(name)
        try:
            docs.append(read_document(path, name))
        except UnreadableFile as exc:
            skipped.append({"path": name, "reason": str(exc)})
        if progress.on_read:
            progress.on_read(i + 1, len(files))
    return docs, skipped


def _doc_name(path: Path, roots: Sequence[Path]) -> str:
    """A document's name in the index: its path relative to the root it was found under (the root's own name
    first, so two roots cannot collide), or the file's name when it was given directly."""
    path = path.resolve()
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return (Path(root.name) / path.relative_to(root)).as_posix()
    return path.name


def _chunk_row(d: Document, k: int, c: Chunk) -> dict[str, Any]:
    row: dict[str, Any] = {"document": d.path, "chunk": k, "text": c.text, "tokens": c.tokens}
    if c.section:
        row["section"] = list(c.section)
    if c.page is not None:
        row["page"] = c.page
    return row


def _embed_text(row: dict[str, Any]) -> str:
    """What is embedded for a chunk: its section headings, then its text."""
    section = row.get("section")
    return (" > ".join(section) + "\n" + row["text"]) if section else row["text"]


def _version_id(fingerprint: str, chunking: ChunkingConfig, docs: Iterable[Document]) -> str:
    h = hashlib.sha256()
    h.update(f"cocina-index 1\n{fingerprint}\n{json.dumps(asdict(chunking), sort_keys=True)}\n".encode())
    for d in sorted(docs, key=lambda d: d.path):
        h.update(f"{d.path}\0{d.sha256}\n".encode())
    return h.hexdigest()


__all__ = [
    "BuildReport",
    "IndexStore",
    "IndexVersion",
    "Passage",
    "Progress",
    "check_index_name",
]
