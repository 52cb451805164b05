"""Indexes with real FAISS and the real default embedding model: build, query, update incrementally, versions by
content, faults (unreadable files skipped and named, a missing index, another model's vectors, a crash while
building)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from cocina import rag
from cocina.rag import (
    EmbedderMismatch,
    IndexCorrupt,
    IndexExists,
    IndexNotFound,
    IndexStore,
    NoDocuments,
    load_embedder,
)
from cocina.rag.chunking import ChunkingConfig
from cocina.rag.index import KEEP_VERSIONS


@pytest.fixture
def store(tmp_path: Path) -> IndexStore:
    return IndexStore(tmp_path / "indexes")


def test_create_query_and_skipped_files_are_named(store: IndexStore, docs: Path) -> None:
    report = store.create("docs", [docs], load_embedder())
    assert report.documents == 4 and report.chunks >= 5
    assert {s["path"] for s in report.skipped} == {"docs/broken.pdf", "docs/latin1.txt"}
    assert all(s["reason"] for s in report.skipped)
    index = store.open("docs")
    ((hit, *_),) = index.query(load_embedder(), ["¿Cómo blanqueo la ropa?"], top_k=3)
    assert hit.document == "docs/limpieza.md" and hit.section == ("Limpieza", "Blanquear la ropa")
    ((hit, *_),) = index.query(load_embedder(), ["What pressure should the boiler have?"], top_k=3)
    assert hit.document == "docs/manual.pdf" and hit.page == 1
    scores = [p.score for p in index.query(load_embedder(), ["tomatoes"], top_k=5)[0]]
    assert scores == sorted(scores, reverse=True)
    assert index.info()["skipped"] == report.skipped


def test_min_score_leaves_out_weak_passages(store: IndexStore, docs: Path) -> None:
    store.create("docs", [docs], load_embedder())
    assert store.open("docs").query(load_embedder(), ["tomatoes"], top_k=5, min_score=0.99)[0] == []


def test_the_version_is_the_content_hash(store: IndexStore, docs: Path, tmp_path: Path) -> None:
    a = store.create("a", [docs], load_embedder())
    b = IndexStore(tmp_path / "elsewhere").create("a", [docs], load_embedder())
    assert a.version == b.version  # same documents, model and chunking: same version anywhere
    c = store.create("c", [docs], load_embedder(), ChunkingConfig(chunk_tokens=32, overlap_tokens=4))
    assert c.version != a.version


def test_update_embeds_only_what_changed(store: IndexStore, docs: Path) -> None:
    first = store.create("docs", [docs], load_embedder())
    again = store.update("docs", None, load_embedder())
    assert again.unchanged and again.embedded == 0
    (docs / "notes.txt").write_text("The office opens at ten now.\n")
    (docs / "new.md").write_text("# Parking\n\nThe car park closes at midnight.\n")
    (docs / "garden" / "tomatoes.html").unlink()
    second = store.update("docs", None, load_embedder())
    assert second.previous == first.version and second.version != first.version
    assert second.added == ["docs/new.md"] and second.changed == ["docs/notes.txt"]
    assert second.removed == ["docs/garden/tomatoes.html"]
    assert second.embedded == 2  # one chunk each for the new and the changed file; the rest reused
    index = store.open("docs")
    ((hit, *_),) = index.query(load_embedder(), ["When does the car park close?"], top_k=1)
    assert hit.document == "docs/new.md"
    assert all(p.document != "docs/garden/tomatoes.html" for p in index.query(load_embedder(), ["sun"], 10)[0])
    # Reused vectors are the very ones the first version had.
    old = store.open("docs", first.version)
    row = next(i for i, c in enumerate(index.chunks) if c["document"] == "docs/limpieza.md")
    old_row = next(i for i, c in enumerate(old.chunks) if c["document"] == "docs/limpieza.md")
    assert np.array_equal(index.vectors()[row], old.vectors()[old_row])
    assert [v["current"] for v in store.versions("docs")].count(True) == 1


def test_faults_missing_index_taken_name_and_nothing_readable(store: IndexStore, docs: Path, tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match="no index named 'nope'"):
        store.open("nope")
    store.create("docs", [docs], load_embedder())
    with pytest.raises(IndexExists):
        store.create("docs", [docs], load_embedder())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "bad.pdf").write_bytes(b"nope")
    with pytest.raises(NoDocuments, match="1 skipped"):
        store.create("empty", [empty], load_embedder())
    with pytest.raises(ValueError, match="invalid index name"):
        store.create("../x", [docs], load_embedder())
    store.delete("docs")
    assert store.names() == []
    with pytest.raises(IndexNotFound):
        store.delete("docs")


def test_an_installed_version_is_checked_kept_and_named_by_its_id(
    store: IndexStore, docs: Path, tmp_path: Path
) -> None:
    """What a push ends in: a version built elsewhere, installed from its files, is kept however many local
    builds follow (models and deployments name it NAME@VERSION); files that are not that version are refused and
    leave nothing behind."""
    built = IndexStore(tmp_path / "elsewhere")
    report = built.create("docs", [docs], load_embedder())
    source = built.open("docs").directory

    def fill(directory: Path) -> None:
        for f in source.iterdir():
            shutil.copy(f, directory / f.name)

    index, created = store.install("docs", report.version, fill)
    assert created and index.version == report.version and store.current_version("docs") == report.version
    assert store.install("docs", report.version, fill)[1] is False  # the id is the content: nothing to do
    for i in range(KEEP_VERSIONS + 1):  # more local builds than are kept
        (docs / "notes.txt").write_text(f"The office opens at {i + 7}.\n")
        store.update("docs", None, load_embedder())
    versions = store.versions("docs")
    assert len(versions) == KEEP_VERSIONS + 1 and [v["pushed"] for v in versions].count(True) == 1
    assert store.open("docs", report.version[:10]).version == report.version
    with pytest.raises(IndexNotFound, match="has no version '0123abcd' here"):
        store.open("docs", "0123abcd")

    def without_chunks(directory: Path) -> None:
        fill(directory)
        (directory / "chunks.jsonl").unlink()

    def extra(directory: Path) -> None:
        fill(directory)
        (directory / "notes.txt").write_text("x")

    for filler, version, message in (
        (fill, "f" * 64, "the manifest says version"),
        (without_chunks, report.version, "an index version is the files"),
        (extra, report.version, "an index version is the files"),
        (fill, "not-hex", "not an index version id"),
    ):
        with pytest.raises(IndexCorrupt, match=message):
            store.install("other", version, filler)
    assert not store.exists("other") and list((store.root / "other" / "versions").iterdir()) == []


def test_an_index_refuses_another_models_vectors(store: IndexStore, docs: Path, tiny_st_model: Path) -> None:
    other = load_embedder(str(tiny_st_model))
    store.create("tiny", [docs], other)  # any local sentence-transformers directory works
    index = store.open("tiny")
    assert index.embedder["dim"] == 32 and index.query(other, ["printer"], 2)[0]
    with pytest.raises(EmbedderMismatch, match="was built with the embedding model"):
        index.query(load_embedder(), ["printer"])
    with pytest.raises(EmbedderMismatch):
        index.search(load_embedder().embed(["printer"], kind="query"), 3, fingerprint=load_embedder().fingerprint)
    with pytest.raises(EmbedderMismatch):
        store.update("tiny", None, load_embedder())


class Exploding:
    """The default model, failing after its first batch: a crash in the middle of embedding."""

    def __init__(self) -> None:
        inner = load_embedder()
        self.name, self.fingerprint, self.dim, self.max_tokens = inner.name, inner.fingerprint, inner.dim, 512
        self.inner = inner
        self.calls = 0

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("killed")
        return self.inner.embed(texts, kind=kind)


def test_a_crash_while_building_leaves_the_previous_version_intact(
    store: IndexStore, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.create("docs", [docs], load_embedder())
    for i in range(80):  # enough new chunks for two embedding batches
        (docs / f"extra{i}.txt").write_text(f"Extra note number {i} about topic {i * 7}.\n")
    with pytest.raises(RuntimeError, match="killed"):
        store.update("docs", None, Exploding())  # type: ignore[arg-type]
    assert store.current_version("docs") == first.version
    assert [p.name for p in (store.root / "docs" / "versions").iterdir()] == [first.version]
    assert store.open("docs").query(load_embedder(), ["boiler pressure"], 1)[0][0].document == "docs/manual.pdf"


KILLED_BUILD = """
import sys, time
from pathlib import Path
from cocina.rag import IndexStore, load_embedder
inner = load_embedder()
class Slow:
    name, fingerprint, dim, max_tokens = inner.name, inner.fingerprint, inner.dim, 512
    def count_tokens(self, texts): return inner.count_tokens(texts)
    def embed(self, texts, kind="document"):
        print("embedding", flush=True)
        time.sleep(60)
IndexStore(Path(sys.argv[1])).update("docs", None, Slow())
"""


def test_a_killed_build_leaves_the_previous_version_current(store: IndexStore, docs: Path) -> None:
    first = store.create("docs", [docs], load_embedder())
    (docs / "more.md").write_text("# More\n\nSomething new.\n")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "embedding"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert store.current_version("docs") == first.version
    assert len(store.open("docs").chunks) == first.chunks
    report = store.update("docs", None, load_embedder())  # the next build works, and uses the new file
    assert report.added == ["docs/more.md"]


def test_python_api(tmp_path: Path, docs: Path) -> None:
    report = rag.create_index("kb", [docs], data_dir=tmp_path)
    passages = rag.query("kb", "When does the office open?", top_k=2, data_dir=tmp_path)
    assert passages[0].document == "docs/notes.txt" and passages[0].source()["score"] > 0
    prompt = rag.augment_question("When does the office open?", passages)
    assert "[1] (docs/notes.txt) The office opens at nine." in prompt and prompt.endswith(
        "Question: When does the office open?"
    )
    assert rag.update_index("kb", data_dir=tmp_path).version == report.version
    assert rag.open_index("kb", data_dir=tmp_path).version == report.version
