"""Tests for cocina.models.resolve: offline model resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocina.demo import demo_model_dir
from cocina.models.resolve import ModelNotFoundError, resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fake_cache(cache: Path, repo_id: str) -> Path:
    """Lay out a Hugging Face hub cache entry for ``repo_id`` the way huggingface_hub writes one."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.mark.parametrize("name", ["cocina/demo", "demo", " demo "])
def test_demo_aliases(name: str) -> None:
    assert resolve_model(name) == demo_model_dir()


def test_local_directory_is_returned(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == tmp_path.resolve()
    assert resolve_model(tmp_path) == tmp_path.resolve()


def test_hub_id_found_in_local_cache(tmp_path: Path) -> None:
    snapshot = _fake_cache(tmp_path / "hub", "tiiuae/falcon-rw-1b")
    assert resolve_model("tiiuae/falcon-rw-1b", cache_dir=tmp_path / "hub") == snapshot


def test_hub_id_found_through_hf_hub_cache_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = _fake_cache(tmp_path / "hub", "org/model")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model("org/model") == snapshot


def test_missing_hub_id_explains_how_to_provide_it(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("tiiuae/falcon-rw-1b", cache_dir=tmp_path)
    msg = str(info.value)
    assert "isn't in the local Hugging Face cache" in msg
    assert "never downloads" in msg and "cannot be reached" in msg
    assert "huggingface-cli download tiiuae/falcon-rw-1b" in msg
    assert "HF_HOME" in msg and "local directory" in msg
    assert info.value.model_id == "tiiuae/falcon-rw-1b"
    assert isinstance(info.value, FileNotFoundError)


def test_missing_revision(tmp_path: Path) -> None:
    _fake_cache(tmp_path, "org/model")
    with pytest.raises(ModelNotFoundError, match="revision 'v2'"):
        resolve_model("org/model", revision="v2", cache_dir=tmp_path)


@pytest.mark.parametrize("value", ["/no/such/dir", "./nope", "a/b/c", ""])
def test_missing_paths(value: str, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="local directory"):
        resolve_model(value, cache_dir=tmp_path)


def test_invalid_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download"):
        resolve_model("not a valid id!!", cache_dir=tmp_path)
