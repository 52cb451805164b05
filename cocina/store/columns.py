"""How a `PredictionRecord` maps to the `predictions` table's columns, shared by every store (SQLite, PostgreSQL).

JSON fields are stored as text, `data_removed` as an integer and `status` as its name, in both databases: the
migrations define one schema for all stores.
"""

from __future__ import annotations

import json
from typing import Any

from cocina.store.records import KeyRecord, PredictionRecord, PredictionStatus

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
    "guard",  # what the guard decided (verdicts, disclosure marker, keyed hashes)
)
COLUMNS = FIXED + MUTABLE
JSON_COLUMNS = frozenset(
    {"input", "run_input", "output", "metrics", "webhook_events_filter", "context", "sources", "retrieval", "guard"}
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
    kwargs["guard"] = kwargs["guard"] or {}
    return PredictionRecord(seq=seq, **kwargs)


# API keys (the guard): `models` and `scopes` as JSON text, the hashes as bytes.
KEY_COLUMNS = (
    "id",
    "name",
    "lookup",
    "secret_hash",
    "models",
    "scopes",
    "rpm",
    "tpm",
    "monthly_tokens",
    "created_at",
    "expires_at",
    "revoked_at",
    "rotated_at",
    "last_used_at",
    "previous_lookup",
    "previous_hash",
    "previous_expires_at",
)
KEY_SELECT = f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys"


def key_values(key: KeyRecord) -> list[Any]:
    return [json.dumps(getattr(key, c)) if c in ("models", "scopes") else getattr(key, c) for c in KEY_COLUMNS]


def decode_key(row: tuple[Any, ...]) -> KeyRecord:
    kwargs = dict(zip(KEY_COLUMNS, row, strict=True))
    kwargs["models"] = json.loads(kwargs["models"] or "[]")
    kwargs["scopes"] = json.loads(kwargs["scopes"] or "[]")
    for blob in ("secret_hash", "previous_hash"):
        if kwargs[blob] is not None:
            kwargs[blob] = bytes(kwargs[blob])
    return KeyRecord(**kwargs)
