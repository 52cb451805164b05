"""The durable store of predictions: SQLite in WAL mode in the data directory.

Every accepted prediction is inserted before the client gets an answer, and every state change is written, so after
`kill -9` and a restart `recoverable()` names the predictions that were queued or running: the runtime re-runs them
(or fails them with a clear error) — none is lost or left `processing`.

WAL with `synchronous=NORMAL` survives a killed process (the WAL is in the OS page cache); only a power loss can
drop the last transactions. Calls are synchronous and short; they run on the event loop thread, which serializes
them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cocina.server.backend import PredictionStatus


def utc_now() -> str:
    """ISO 8601 UTC timestamp, the format Cog and Replicate use."""
    return datetime.now(UTC).isoformat()


@dataclass
class PredictionRecord:
    """One prediction as stored; the API surfaces render it in their own shapes.

    `input` is what the client sent (shown back); `run_input` is the validated, normalized input the backend gets
    (kept so a prediction can be re-run after a crash). `surface` is the API that created it ("cog" or "replicate"),
    which decides the shape of its webhooks.
    """

    id: str
    status: PredictionStatus = PredictionStatus.STARTING
    surface: str = "cog"
    input: dict[str, Any] | None = None
    run_input: dict[str, Any] | None = None
    output: Any = None
    logs: str = ""
    error: str | None = None
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    completed_at: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    webhook: str | None = None
    webhook_events_filter: list[str] = field(default_factory=list)
    deadline: float | None = None  # epoch seconds (Cancel-After); past it the prediction is canceled
    data_removed: bool = False
    attempts: int = 0
    seq: int = 0  # insertion order: the list cursor


_COLUMNS = (
    "id",
    "status",
    "surface",
    "input",
    "run_input",
    "output",
    "logs",
    "error",
    "created_at",
    "started_at",
    "completed_at",
    "metrics",
    "webhook",
    "webhook_events_filter",
    "deadline",
    "data_removed",
    "attempts",
)
_JSON_COLUMNS = frozenset({"input", "run_input", "output", "metrics", "webhook_events_filter"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    surface TEXT NOT NULL,
    input TEXT,
    run_input TEXT,
    output TEXT,
    logs TEXT NOT NULL DEFAULT '',
    error TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    metrics TEXT,
    webhook TEXT,
    webhook_events_filter TEXT,
    deadline REAL,
    data_removed INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS predictions_status ON predictions(status);
CREATE INDEX IF NOT EXISTS predictions_completed ON predictions(completed_at);
"""


class PredictionStore:
    """SQLite-backed predictions. Open with `PredictionStore(path)`; `close()` when done."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the server's threads (uvicorn's loop, test threads); the lock serializes
        # it.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _to_row(rec: PredictionRecord) -> list[Any]:
        values: list[Any] = []
        for col in _COLUMNS:
            v = getattr(rec, col)
            if col in _JSON_COLUMNS:
                v = None if v is None else json.dumps(v)
            elif col == "status":
                v = str(v.value)
            elif col == "data_removed":
                v = int(v)
            values.append(v)
        return values

    @staticmethod
    def _from_row(row: sqlite3.Row | tuple[Any, ...]) -> PredictionRecord:
        seq, *values = row
        kwargs: dict[str, Any] = {}
        for col, v in zip(_COLUMNS, values, strict=True):
            if col in _JSON_COLUMNS:
                v = None if v is None else json.loads(v)
            elif col == "status":
                v = PredictionStatus(v)
            elif col == "data_removed":
                v = bool(v)
            kwargs[col] = v
        kwargs["metrics"] = kwargs["metrics"] or {}
        kwargs["webhook_events_filter"] = kwargs["webhook_events_filter"] or []
        return PredictionRecord(seq=seq, **kwargs)

    def insert(self, rec: PredictionRecord) -> bool:
        """Insert a new prediction; False (and nothing written) if its id exists already."""
        cols = ", ".join(_COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._lock:
            try:
                cur = self._db.execute(
                    f"INSERT INTO predictions ({cols}) VALUES ({marks})", self._to_row(rec)
                )
            except sqlite3.IntegrityError:
                return False
        rec.seq = int(cur.lastrowid or 0)
        return True

    def update(self, rec: PredictionRecord) -> None:
        """Write every field of `rec` (by id)."""
        sets = ", ".join(f"{c} = ?" for c in _COLUMNS[1:])
        values = self._to_row(rec)
        with self._lock:
            self._db.execute(f"UPDATE predictions SET {sets} WHERE id = ?", [*values[1:], rec.id])

    def get(self, prediction_id: str) -> PredictionRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT seq, {', '.join(_COLUMNS)} FROM predictions WHERE id = ?", (prediction_id,)
            ).fetchone()
        return None if row is None else self._from_row(row)

    def page(self, before_seq: int | None, limit: int) -> list[PredictionRecord]:
        """Newest first; `before_seq` is the cursor (the `seq` of the last item of the previous page)."""
        query = f"SELECT seq, {', '.join(_COLUMNS)} FROM predictions"
        params: list[Any] = []
        if before_seq is not None:
            query += " WHERE seq < ?"
            params.append(before_seq)
        query += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        return [self._from_row(r) for r in rows]

    def unfinished(self) -> list[PredictionRecord]:
        """Predictions a previous life of the server accepted but did not finish, oldest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq, {', '.join(_COLUMNS)} FROM predictions WHERE status IN (?, ?) ORDER BY seq",
                (PredictionStatus.STARTING.value, PredictionStatus.PROCESSING.value),
            ).fetchall()
        return [self._from_row(r) for r in rows]

    def remove_data_before(self, completed_before: str) -> int:
        """Retention: drop inputs and outputs of predictions completed before this timestamp; how many."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE predictions SET input = NULL, run_input = NULL, output = NULL, data_removed = 1 "
                "WHERE completed_at IS NOT NULL AND completed_at < ? AND data_removed = 0",
                (completed_before,),
            )
        return cur.rowcount

    def count_by_status(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM predictions GROUP BY status").fetchall()
        return {str(s): int(n) for s, n in rows}
