"""Schema migrations, run with Alembic: `migrate(url)` brings a database to the newest schema.

The revisions live in `cocina/store/migrations/versions/`; every store (SQLite now, PostgreSQL later) runs the
same ones. A database made by cocina before migrations existed (a `predictions` table and no
`alembic_version`) is recognised and stamped at the first revision, which is exactly that schema, then upgraded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cocina.store.base import StoreError

_SCRIPTS = Path(__file__).resolve().parent / "migrations"
LEGACY_REVISION = "0001"


def migrate(url: str) -> None:
    """Upgrade the database at SQLAlchemy `url` to the newest revision (creating it if empty)."""
    # Alembic logs its plugins and every revision at INFO; a server start should not print them.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    import sqlalchemy
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("sqlalchemy.url", url)
    try:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                tables = set(sqlalchemy.inspect(connection).get_table_names())
                if "predictions" in tables and "alembic_version" not in tables:
                    command.stamp(config, LEGACY_REVISION)
                command.upgrade(config, "head")
        finally:
            engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StoreError(f"could not migrate the store at {url}: {exc}") from exc
