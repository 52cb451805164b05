"""The durable state of a cocina server: prediction records, model versions, and the `Store` that keeps them.

This package imports nothing of cocina: serving, the hub and the guard build on it. SQLite is the default store
(`SQLiteStore`); `PostgresStore` (`cocina.store.postgres`, needs psycopg) lets several replicas share one database.
Both run the same Alembic migrations (`migrate`). `open_store(path_or_url)` picks one.
"""

from cocina.store.base import Store, StoreError, UsageCell, Write
from cocina.store.migrate import migrate
from cocina.store.open import is_store_url, open_store
from cocina.store.records import (
    AuditEntry,
    CheckpointRecord,
    DeploymentRecord,
    ExampleRecord,
    KeyRecord,
    ModelRecord,
    PredictionRecord,
    PredictionStatus,
    ReleaseRecord,
    ShareRecord,
    VersionRecord,
    utc_now,
)
from cocina.store.sqlite import SQLiteStore

__all__ = [
    "AuditEntry",
    "CheckpointRecord",
    "DeploymentRecord",
    "ExampleRecord",
    "KeyRecord",
    "ModelRecord",
    "PredictionRecord",
    "PredictionStatus",
    "ReleaseRecord",
    "SQLiteStore",
    "ShareRecord",
    "Store",
    "StoreError",
    "UsageCell",
    "VersionRecord",
    "Write",
    "is_store_url",
    "migrate",
    "open_store",
    "utc_now",
]
