"""A store and the guard's pieces over it, without a server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cocina.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "predictions.db")
    try:
        yield s
    finally:
        s.close()


from tests.server.conftest import tiny_model  # noqa: E402, F401 - the session's tiny GPT-2 (built once)
