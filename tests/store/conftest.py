"""The store tests' fixtures: each test runs on SQLite and on PostgreSQL (`where`, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cocina.store import Store, open_store


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
