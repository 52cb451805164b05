"""Manifests and blobs: which files a version holds, its content-addressed id, hashes remembered between pushes,
and blobs that are stored whole or not at all."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cocina.hub.blobs import BlobError, BlobStore
from cocina.hub.manifest import Manifest, ManifestCache, build_manifest, sha256_file


def _project(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    (root / "predict.py").write_text("x = 1\n")
    (root / "sub" / "data.bin").write_bytes(b"\0" * 1000)
    (root / "notes.log").write_text("ignored by .cocinaignore\n")
    (root / "secret.env").write_text("ignored by .dockerignore\n")
    (root / ".cocinaignore").write_text("*.log\n")
    (root / ".dockerignore").write_text("secret.env\n")
    for skipped in (".git", ".venv", "__pycache__", ".cocina"):
        (root / skipped).mkdir()
        (root / skipped / "f").write_text("never pushed\n")
    return root


def test_the_files_a_version_holds(tmp_path: Path) -> None:
    manifest, sources = build_manifest(_project(tmp_path / "p"))
    paths = [f.path for f in manifest.files]
    assert paths == [".cocinaignore", ".dockerignore", "cog.yaml", "predict.py", "sub/data.bin"]
    data = next(f for f in manifest.files if f.path == "sub/data.bin")
    assert data.size == 1000 and sources[data.sha256] == tmp_path / "p" / "sub" / "data.bin"


def test_the_version_id_is_the_contents_hash(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    first = build_manifest(root)[0].version_id
    assert build_manifest(root)[0].version_id == first and len(first) == 64
    (root / "notes.log").write_text("changed, but ignored\n")
    assert build_manifest(root)[0].version_id == first
    (root / "predict.py").write_text("x = 2\n")
    assert build_manifest(root)[0].version_id != first
    (root / "predict.py").write_text("x = 1\n")
    os.chmod(root / "predict.py", 0o755)
    assert build_manifest(root)[0].version_id != first  # the executable bit is part of the content


def test_a_link_out_of_the_project_is_not_pushed(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    (tmp_path / "outside.txt").write_text("not the project's\n")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    assert "link.txt" not in [f.path for f in build_manifest(root)[0].files]


def test_hashes_are_remembered_between_pushes(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    cache_path = tmp_path / "cache.json"
    read: list[int] = []
    build_manifest(root, cache=ManifestCache(cache_path), progress=read.append)
    cold = sum(read)
    read.clear()
    hashed = []
    import cocina.hub.manifest as m

    real = m.sha256_file
    m.sha256_file = lambda path, progress=None: hashed.append(path) or real(path, progress)  # type: ignore[assignment]
    try:
        again = build_manifest(root, cache=ManifestCache(cache_path), progress=read.append)[0]
        assert hashed == [] and sum(read) == cold  # nothing read again, progress still counts every byte
        assert again.version_id == build_manifest(root)[0].version_id  # the same answer as hashing it all
        hashed.clear()
        (root / "predict.py").write_text("x = 3\n")
        build_manifest(root, cache=ManifestCache(cache_path))
        assert hashed == [root / "predict.py"]  # only what changed
    finally:
        m.sha256_file = real  # type: ignore[assignment]


@pytest.mark.parametrize(
    "bad",
    [
        [{"path": "../etc/passwd", "size": 1, "sha256": "a" * 64}],
        [{"path": "/abs", "size": 1, "sha256": "a" * 64}],
        [{"path": "a/./b", "size": 1, "sha256": "a" * 64}],
        [{"path": "x", "size": 1, "sha256": "nothex"}],
        [{"path": "x", "size": -1, "sha256": "a" * 64}],
        [{"path": "x", "size": 1, "sha256": "a" * 64}, {"path": "x", "size": 1, "sha256": "b" * 64}],
        [{"size": 1}],
        {"not": "a list"},
    ],
)
def test_a_manifest_from_a_client_is_checked(bad: object) -> None:
    with pytest.raises(ValueError):
        Manifest.from_json(bad)


async def _chunks(*parts: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    for i, part in enumerate(parts):
        if fail_after is not None and i == fail_after:
            raise ConnectionError("the client went away")
        yield part
        await asyncio.sleep(0)


async def test_blobs_are_stored_whole_or_not_at_all(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    good = tmp_path / "f"
    good.write_bytes(b"hello " * 1000)
    digest = sha256_file(good)
    assert store.missing([digest, digest]) == [digest]
    with pytest.raises(ConnectionError):
        await store.put_stream(digest, _chunks(b"hello " * 500, b"hello " * 500, fail_after=1))
    assert not store.has(digest) and list(store.tmp.iterdir()) == []
    with pytest.raises(BlobError):
        await store.put_stream(digest, _chunks(b"something else"))
    assert not store.has(digest)
    assert await store.put_stream(digest, _chunks(b"hello " * 500, b"hello " * 500)) == 6000
    assert store.has(digest) and store.missing([digest]) == []
    store.materialize(digest, tmp_path / "out" / "f", executable=True)
    assert (tmp_path / "out" / "f").read_bytes() == good.read_bytes() and os.access(tmp_path / "out" / "f", os.X_OK)
    with pytest.raises(BlobError):
        store.path("../../etc")
    (store.tmp / "left-by-a-crash").write_bytes(b"x")
    BlobStore(tmp_path / "blobs")  # a new life clears unfinished uploads
    assert list(store.tmp.iterdir()) == []
