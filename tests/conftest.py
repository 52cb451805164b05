"""Every test runs with its own `COCINA_HOME` (the default data directory of `cocina serve` and `cocina push`):
nothing a test starts ever reads or writes the real one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


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
