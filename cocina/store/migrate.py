"""Schema migrations, run with Alembic: `migrate(url)` brings a database to the newest schema.

The revisions live in `cocina/store/migrations/versions/`; every store (SQLite, PostgreSQL) runs the same ones.
A database made by cocina before migrations existed (a `predictions` table and no `alembic_version`) is
recognised and stamped at the first revision, which is exactly that schema, then upgraded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cocina.store.base import StoreError

_SCRIPTS = Path(__file__).resolve().parent / "migrations"
LEGACY_REVISION = "0001"
_MIGRATION_LOCK = 0x636F63696E61  # "cocina": the advisory lock id migrations hold on PostgreSQL


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
                if connection.dialect.name == "postgresql":
                    # Replicas starting together: one migrates, the others wait, then find nothing to do
                    # (PostgreSQL's DDL is transactional; the lock is released at commit).
                    connection.execute(sqlalchemy.text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
                config.attributes["connection"] = connection
                tables = set(sqlalchemy.inspect(connection).get_table_names())
                if "predictions" in tables and "alembic_version" not in tables:
                    command.stamp(config, LEGACY_REVISION)
                command.upgrade(config, "head")
        finally:
            engine.dispose()
    except sqlalchemy.exc.SQLAlchemyError as exc:
        # The driver's own first line (not SQLAlchemy's wrapper with its link), and never the password.
        cause = getattr(exc, "orig", None) or exc
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise StoreError(f"could not migrate the store at {redact_url(url)}: {reason}") from exc


def redact_url(url: str) -> str:
    """`scheme://user:password@host/db` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
