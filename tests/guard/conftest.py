"""A store and the guard's pieces over it, without a server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cocina.store import Store, open_store


@pytest.fixture
def store(where: str) -> Iterator[Store]:
    """On SQLite and on PostgreSQL (`where`)."""
    s = open_store(where)
    try:
        yield s
    finally:
        s.close()


from tests.server.conftest import tiny_model  # noqa: E402, F401 - the session's tiny GPT-2 (built once)
