"""A hub on a real store in a temporary data directory, and projects to push to it."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocina.hub import Hub
from cocina.hub.envs import EnvironmentBuilder
from cocina.hub.manifest import build_manifest
from cocina.store import SQLiteStore

ECHO = """
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="what to echo"), shout: bool = Input(default=False)) -> str:
        return text.upper() if shout else text
"""


def write_project(
    root: Path, predict: str = ECHO, config: str = 'predict: "predict.py:Predictor"\n', **files: str
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(predict))
    (root / "cog.yaml").write_text(config)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    store = SQLiteStore(tmp_path / "data" / "predictions.db")
    builder = EnvironmentBuilder(
        tmp_path / "data" / "hub" / "envs", find_links=[str(tmp_path / "wheels")], no_index=True
    )
    (tmp_path / "wheels").mkdir()
    yield Hub(store, tmp_path / "data" / "hub", builder=builder)
    store.close()


async def push(hub: Hub, root: Path, name: str = "acme/echo") -> tuple[str, bool]:
    """Push a project to `hub` as a local push does: its files, then the version."""
    manifest, sources = build_manifest(root)
    hub.store_files(manifest, sources)
    result = await hub.create_version(name, manifest)
    return result.version.id, result.created
