"""Fixtures shared by every test package: a throwaway PostgreSQL server (one per test session)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from cocina.store.throwaway import ThrowawayPostgres

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """A real PostgreSQL on 127.0.0.1 (initdb + pg_ctl, as the `postgres` user when we are root), fsync off."""
    with ThrowawayPostgres(fast=True) as pg:
        yield pg


@pytest.fixture
def postgres_url(postgres_server: ThrowawayPostgres) -> str:
    """A fresh, empty database on the session's server."""
    return postgres_server.create_database(f"t{next(_databases)}")
