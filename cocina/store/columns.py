"""How a `PredictionRecord` maps to the `predictions` table's columns, shared by every store (SQLite, PostgreSQL).

JSON fields are stored as text, `data_removed` as an integer and `status` as its name, in both databases: the
migrations define one schema for all stores.
"""

from __future__ import annotations

import json
from typing import Any

from cocina.store.records import PredictionRecord, PredictionStatus

# Written once, at insert.
FIXED = (
    "id",
    "model",
    "version",
    "deployment",
    "principal",
    "source",
    "surface",
    "input",
    "run_input",
    "created_at",
    "webhook",
    "webhook_events_filter",
    "deadline",
    "release",  # the deployment's release that routed it
    "kind",  # prediction or training
    "destination",  # a training's destination model
    "context",  # the request's context
    "sources",  # what retrieval cited
    "retrieval",  # how retrieval ran
)
# Written by every update.
MUTABLE = (
    "status",
    "output",
    "logs",
    "error",
    "started_at",
    "completed_at",
    "metrics",
    "data_removed",
    "attempts",
    "lease_owner",
    "lease_expires_at",
)
COLUMNS = FIXED + MUTABLE
JSON_COLUMNS = frozenset(
    {"input", "run_input", "output", "metrics", "webhook_events_filter", "context", "sources", "retrieval"}
)


def encode(col: str, value: Any) -> Any:
    if col in JSON_COLUMNS:
        return None if value is None else json.dumps(value)
    if col == "data_removed":
        return int(value)
    if col == "status":
        return str(value.value)
    return value


def decode(row: tuple[Any, ...]) -> PredictionRecord:
    seq, *values = row
    kwargs: dict[str, Any] = {}
    for col, v in zip(COLUMNS, values, strict=True):
        if col in JSON_COLUMNS:
            v = None if v is None else json.loads(v)
        elif col == "status":
            v = PredictionStatus(v)
        elif col == "data_removed":
            v = bool(v)
        kwargs[col] = v
    kwargs["metrics"] = kwargs["metrics"] or {}
    kwargs["webhook_events_filter"] = kwargs["webhook_events_filter"] or []
    kwargs["source"] = kwargs["source"] or "api"
    kwargs["kind"] = kwargs["kind"] or "prediction"
    kwargs["context"] = kwargs["context"] or {}
    return PredictionRecord(seq=seq, **kwargs)
