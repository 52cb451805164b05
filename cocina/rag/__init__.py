"""`cocina.rag`: indexes of your own documents, offline embeddings and retrieval for language models.

The Python API a predictor (or a notebook) uses directly::

    from cocina import rag

    rag.create_index("docs", ["./manuals"])                 # text, Markdown, HTML, PDF
    for p in rag.query("docs", "¿Cómo blanqueo la ropa?", top_k=3):
        print(p.score, p.document, p.chunk, p.text)
    prompt = rag.augment_question(question, passages)       # the one RAG prompt template

Indexes live under `<data dir>/indexes/` (`$COCINA_HOME` or `~/.cocina`; pass `data_dir=` to choose). The
`cocina index` commands and `cocina serve` use the same functions. Heavy libraries (FAISS, torch,
sentence-transformers) are imported when first needed, not by `import cocina.rag`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cocina.rag.chunking import ChunkingConfig
from cocina.rag.embedders import DEFAULT_EMBEDDER, Embedder, load_embedder
from cocina.rag.errors import (
    EmbedderMismatch,
    EmbedderNotFound,
    IndexCorrupt,
    IndexExists,
    IndexNotFound,
    InvalidIndexName,
    NoDocuments,
    RagError,
)
from cocina.rag.index import BuildReport, IndexStore, IndexVersion, Passage, Progress
from cocina.rag.prompt import TEMPLATE, RagConfig, augment_question


def index_store(data_dir: Path | str | None = None) -> IndexStore:
    """The indexes of `data_dir` (default: `$COCINA_HOME` or `~/.cocina`)."""
    from cocina.config import default_data_dir

    return IndexStore(Path(data_dir or default_data_dir()) / "indexes")


def create_index(
    name: str,
    paths: Sequence[Path | str],
    *,
    embedder: str | None = None,
    chunk_tokens: int = 200,
    overlap_tokens: int = 40,
    data_dir: Path | str | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Index the documents under `paths` as `name` with the embedding model `embedder` (default: the packaged
    multilingual-e5-small; also all-MiniLM-L6-v2 or a local sentence-transformers directory)."""
    return index_store(data_dir).create(
        name, [Path(p) for p in paths], load_embedder(embedder), ChunkingConfig(chunk_tokens, overlap_tokens), progress
    )


def update_index(
    name: str,
    paths: Sequence[Path | str] | None = None,
    *,
    data_dir: Path | str | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """A new version of `name`: new and changed documents embedded, removed ones dropped, the rest reused."""
    store = index_store(data_dir)
    current = store.open(name)
    return store.update(
        name, [Path(p) for p in paths] if paths else None, load_embedder(current.embedder["name"]), progress
    )


def open_index(name: str, *, data_dir: Path | str | None = None, version: str | None = None) -> IndexVersion:
    """The current (or given: an id or a unique prefix) version of an index, ready to search."""
    return index_store(data_dir).open(name, version)


def query(
    name: str,
    text: str,
    *,
    top_k: int = 5,
    min_score: float | None = None,
    data_dir: Path | str | None = None,
) -> list[Passage]:
    """The `top_k` passages of index `name` closest to `text`, best first, with their scores (cosine)."""
    index = open_index(name, data_dir=data_dir)
    embedder = load_embedder(index.embedder["name"])
    return index.query(embedder, [text], top_k, min_score)[0]


__all__ = [
    "DEFAULT_EMBEDDER",
    "TEMPLATE",
    "BuildReport",
    "ChunkingConfig",
    "Embedder",
    "EmbedderMismatch",
    "EmbedderNotFound",
    "IndexCorrupt",
    "IndexExists",
    "IndexNotFound",
    "IndexStore",
    "IndexVersion",
    "InvalidIndexName",
    "NoDocuments",
    "Passage",
    "Progress",
    "RagConfig",
    "RagError",
    "augment_question",
    "create_index",
    "index_store",
    "load_embedder",
    "open_index",
    "query",
    "update_index",
]
