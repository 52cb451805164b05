"""Serving without HTTP: a `Serving` over real worker processes (the server tests' echo fixtures)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cocina.serving import ModelSpec, Serving, ServingConfig
from cocina.serving.spec import project_spec

PROJECTS = Path(__file__).parent.parent / "server" / "fixtures" / "projects"


def echo(name: str = "acme/echo", *, warm: bool = False, env: dict[str, str] | None = None) -> ModelSpec:
    return project_spec(PROJECTS / "echo", name=name).replace(warm=warm, env=dict(env or {}))


def plain(name: str = "acme/plain", *, warm: bool = False) -> ModelSpec:
    return project_spec(PROJECTS / "echo_plain", name=name).replace(warm=warm)


def config(tmp_path: Path, **kw: Any) -> ServingConfig:
    fields: dict[str, Any] = {"data_dir": tmp_path / "data", "lease_s": 5.0, "load_timeout_s": 30.0, "max_queue": 8}
    return ServingConfig(**{**fields, **kw})


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[Serving]:
    """Two models: `acme/echo` (default) and `acme/plain`, neither loaded yet."""
    s = Serving(config(tmp_path), [echo(), plain()])
    await s.start()
    try:
        yield s
    finally:
        await s.drain(1.0)
