"""What `cocina keys` and `cocina audit` share: where the server's data is (its data directory, or its
`--store` when replicas share PostgreSQL), as options and as the store they open."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from cocina.store import Store

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="The server's data directory (default: $COCINA_HOME or ~/.cocina)"),
]
StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="The server's --store when it has one (postgresql://...; default: DATA_DIR/predictions.db)",
    ),
]
DEFAULT_DIR = None  # the server's default: cocina.config.default_data_dir()


def data_dir_of(given: Path | None) -> Path:
    from cocina.config import default_data_dir

    return given if given is not None else default_data_dir()


def open_server_store(data_dir: Path, store_url: str | None, command: str) -> Store:
    """The store the server uses: `--store` (PostgreSQL, shared by replicas) or the data directory's SQLite file."""
    from cocina.store import SQLiteStore, StoreError, open_store

    try:
        return open_store(store_url) if store_url is not None else SQLiteStore(data_dir / "predictions.db")
    except StoreError as exc:
        typer.echo(f"cocina {command}: {'--store: ' if store_url is not None else ''}{exc}", err=True)
        raise typer.Exit(1) from None
