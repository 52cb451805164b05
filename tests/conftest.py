"""Fixtures shared by every test package.

Every test runs with its own `COCINA_HOME` (the default data directory of `cocina serve` and `cocina push`):
nothing a test starts ever reads or writes the real one. A throwaway PostgreSQL server (one per test session)
backs the tests that run on PostgreSQL; `where` runs a test on each store (a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cocina.store.throwaway import ThrowawayPostgres

_databases = itertools.count()


@pytest.fixture(autouse=True, scope="session")
def _cocina_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("cocina-home")
    old = os.environ.get("COCINA_HOME")
    os.environ["COCINA_HOME"] = str(home)
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("COCINA_HOME", None)
        else:
            os.environ["COCINA_HOME"] = old


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """A real PostgreSQL on 127.0.0.1 (initdb + pg_ctl, as the `postgres` user when we are root), fsync off."""
    with ThrowawayPostgres(fast=True) as pg:
        yield pg


@pytest.fixture
def postgres_url(postgres_server: ThrowawayPostgres) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database(f"t{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgres"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store lives: a SQLite file, or a fresh database on the throwaway PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "p.db")
    return str(request.getfixturevalue("postgres_url"))
