"""The store tests' fixtures: each test runs on SQLite and on PostgreSQL (a fresh database on the session's
throwaway server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cocina.store import Store, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: a SQLite file, or a fresh database on the throwaway PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "p.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def opener(where: str) -> Iterator[Callable[[], Store]]:
    """Opens stores on `where` (several: several servers sharing it); closes them at the end."""
    opened: list[Store] = []

    def open_one() -> Store:
        opened.append(open_store(where))
        return opened[-1]

    yield open_one
    for s in opened:
        s.close()


@pytest.fixture
def store(opener: Callable[[], Store]) -> Store:
    return opener()
