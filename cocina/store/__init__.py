"""The durable state of a cocina server: prediction records, model versions, and the `Store` that keeps them.

This package imports nothing of cocina: serving, the hub and the guard build on it. SQLite is the default store
(`SQLiteStore`); the schema is created and upgraded by Alembic migrations (`migrate`), which any later store
(PostgreSQL) shares.
"""

from cocina.store.base import Store, StoreError, UsageCell
from cocina.store.migrate import migrate
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
    "migrate",
    "utc_now",
]
