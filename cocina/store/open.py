"""`open_store(where)`: the store a server was told to use, SQLite by path or PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path

from cocina.store.base import Store, StoreError


def is_store_url(where: str) -> bool:
    """Whether `--store` names a database server (else it is a SQLite file path)."""
    return where.startswith(("postgresql://", "postgres://", "postgresql+psycopg://", "sqlite:///"))


def open_store(where: str | Path) -> Store:
    """`postgresql://user@host:port/db` -> `PostgresStore`; `sqlite:///path` or a path -> `SQLiteStore`.

    Raises `StoreError` for a scheme no store speaks, a missing driver, or a database that cannot be reached."""
    text = str(where)
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        try:
            from cocina.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreError(
                "a PostgreSQL store needs psycopg: pip install 'cocina[postgres]' (or psycopg[binary])"
            ) from exc
        return PostgresStore(text)
    if "://" in text and not text.startswith("sqlite:///"):
        scheme = text.split("://", 1)[0]
        raise StoreError(f"{scheme}://...: not a store cocina has (postgresql://... or a SQLite file path)")
    from cocina.store.sqlite import SQLiteStore

    return SQLiteStore(Path(text.removeprefix("sqlite:///")))
