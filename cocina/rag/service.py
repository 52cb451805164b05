"""`RagService`: a server's indexes and embedding models, for retrieval and `/v1/embeddings`.

Indexes are opened on first use and reopened when their `CURRENT` changes (an `update` from the CLI while the
server runs is picked up by the next query). Embedding runs in a worker thread, never on the event loop; requests
that arrive together are embedded in one batch (`EmbeddingBatcher`): the first waits a few milliseconds for
company, up to `max_batch` texts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cocina.rag.embedders import DEFAULT_EMBEDDER, Embedder, load_embedder
from cocina.rag.errors import EmbedderNotFound, InvalidIndexName
from cocina.rag.index import IndexStore, IndexVersion, Passage
from cocina.rag.prompt import RagConfig, split_index_ref

if TYPE_CHECKING:
    import numpy as np


@dataclass
class _Pending:
    texts: list[str]
    kind: str
    future: asyncio.Future[Any] = field(repr=False)


class EmbeddingBatcher:
    """Embeds the texts of concurrent requests together (one forward pass), in a thread."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 256, max_wait_s: float = 0.004) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # forward passes run (tests and benchmarks read it)

    async def embed(self, texts: Sequence[str], kind: str = "document") -> tuple[np.ndarray, list[int]]:
        """Vectors and token counts of `texts`."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(list(texts), kind, fut))
        return await fut

    async def _run(self) -> None:
        import numpy as np

        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            group = [first]
            size = len(first.texts)
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), timeout)
                except TimeoutError:
                    break
                group.append(nxt)
                size += len(nxt.texts)
            for kind in dict.fromkeys(p.kind for p in group):
                members = [p for p in group if p.kind == kind and not p.future.cancelled()]
                texts = [t for p in members for t in p.texts]
                try:
                    vectors, counts = await asyncio.to_thread(self._embed, texts, kind)
                except Exception as exc:
                    for p in members:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                self.batches += 1
                start = 0
                for p in members:
                    end = start + len(p.texts)
                    if not p.future.done():
                        p.future.set_result((np.array(vectors[start:end]), counts[start:end]))
                    start = end

    def _embed(self, texts: list[str], kind: str) -> tuple[np.ndarray, list[int]]:
        return self.embedder.embed(texts, kind=kind), self.embedder.count_tokens(texts)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self._queue = None


class RagService:
    """Indexes under `indexes_dir` and the embedding models a server holds.

    `embedding_models` maps the names `/v1/embeddings` answers to (a built-in name or a model directory); the
    default embedding model is always held under its own name."""

    def __init__(self, indexes_dir: Path, embedding_models: Mapping[str, str] | None = None) -> None:
        self.store = IndexStore(indexes_dir)
        self.models: dict[str, str] = {DEFAULT_EMBEDDER: DEFAULT_EMBEDDER, **dict(embedding_models or {})}
        self._open: dict[str, tuple[str, IndexVersion]] = {}
        self._lock = threading.Lock()
        self._batchers: dict[str, EmbeddingBatcher] = {}

    # ---- indexes

    def index(self, ref: str) -> IndexVersion:
        """The version `ref` names: `NAME` (its current version, reopened when `CURRENT` changed since last
        time) or `NAME@VERSION` (that version, pinned); raises `IndexNotFound`, `InvalidIndexName`."""
        try:
            name, pinned = split_index_ref(ref)
        except ValueError as exc:
            raise InvalidIndexName(str(exc)) from None
        version = self.store.resolve_version(name, pinned) if pinned else self.store.current_version(name)
        with self._lock:
            cached = self._open.get(ref)
            if cached is not None and cached[0] == version:
                return cached[1]
        opened = self.store.open(name, version)
        with self._lock:
            self._open[ref] = (version, opened)
        return opened

    def embedder_for(self, index: IndexVersion) -> Embedder:
        """The embedding model the index was built with, loaded here (by its built-in name, a name this server
        holds, or its directory); `EmbedderMismatch` if what is found here is another model."""
        name = str(index.embedder["name"])
        ref = self.models.get(name, name)
        try:
            embedder = load_embedder(ref)
        except EmbedderNotFound:
            raise EmbedderNotFound(
                f"index {index.name!r} needs the embedding model {name!r}, which this server cannot load"
            ) from None
        index.check_embedder(embedder.fingerprint, embedder.name)
        return embedder

    def _retrieve(self, config: RagConfig, query: str) -> tuple[str, list[Passage]]:
        index = self.index(config.index)
        embedder = self.embedder_for(index)
        return index.version, index.query(embedder, [query], config.top_k, config.min_score)[0]

    async def retrieve(self, config: RagConfig, query: str) -> tuple[str, list[Passage]]:
        """The version of `config.index` searched and its passages for `query` (in a thread: embedding and
        search are CPU work)."""
        return await asyncio.to_thread(self._retrieve, config, query)

    async def query(self, name: str, text: str, top_k: int, min_score: float | None) -> list[Passage]:
        """`POST /v1/indexes/NAME/query`."""

        def run() -> list[Passage]:
            index = self.index(name)
            return index.query(self.embedder_for(index), [text], top_k, min_score)[0]

        return await asyncio.to_thread(run)

    # ---- embeddings

    def embedding_model(self, name: str) -> Embedder:
        """A model `/v1/embeddings` may use: a name this server holds; raises `EmbedderNotFound`."""
        ref = self.models.get(name)
        if ref is None:
            raise EmbedderNotFound(
                f"The model `{name}` does not exist: this server's embedding models are "
                + ", ".join(sorted(self.models))
            )
        return load_embedder(ref)

    async def embed(self, name: str, texts: Sequence[str], kind: str = "document") -> tuple[np.ndarray, list[int]]:
        """Vectors and token counts of `texts` with the embedding model `name`, batched with other requests."""
        batcher = self._batchers.get(name)
        if batcher is None:
            embedder = await asyncio.to_thread(self.embedding_model, name)
            batcher = self._batchers.setdefault(name, EmbeddingBatcher(embedder))
        return await batcher.embed(texts, kind)

    def close(self) -> None:
        for b in self._batchers.values():
            b.close()
        self._batchers.clear()


__all__ = ["EmbeddingBatcher", "RagService"]
