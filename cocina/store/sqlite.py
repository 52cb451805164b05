"""`SQLiteStore`: predictions and versions in one SQLite database in WAL mode.

WAL with `synchronous=NORMAL` survives a killed process (the WAL is in the OS page cache); only a power loss can
drop the last transactions. Several servers on one machine may share the file: leases (`claim_expired`) are
taken with one conditional UPDATE each, so two of them never take the same prediction. Calls are short and
synchronous; one connection per store, serialized by a lock (the server's event loop and test threads share it).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cocina.store.base import StoreError
from cocina.store.columns import COLUMNS, MUTABLE, decode, encode
from cocina.store.migrate import migrate
from cocina.store.records import PredictionRecord, PredictionStatus, VersionRecord

_SELECT = f"SELECT seq, {', '.join(COLUMNS)} FROM predictions"
_UNFINISHED = (PredictionStatus.STARTING.value, PredictionStatus.PROCESSING.value)


class SQLiteStore:
    """The default `Store`. `SQLiteStore(path)` migrates the file to the newest schema; `close()` when done."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        migrate(f"sqlite:///{path}")
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise StoreError(f"could not open {path}: {exc}") from exc
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- predictions

    def insert(self, rec: PredictionRecord) -> bool:
        marks = ", ".join("?" for _ in COLUMNS)
        values = [encode(c, getattr(rec, c)) for c in COLUMNS]
        try:
            with self._locked() as db:
                cur = db.execute(f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({marks})", values)
        except sqlite3.IntegrityError:
            return False
        rec.seq = int(cur.lastrowid or 0)
        return True

    def update(self, rec: PredictionRecord, *, owner: str | None = None) -> bool:
        sets = ", ".join(f"{c} = ?" for c in MUTABLE)
        values = [encode(c, getattr(rec, c)) for c in MUTABLE]
        query = f"UPDATE predictions SET {sets} WHERE id = ?"
        values.append(rec.id)
        if owner is not None:
            query += " AND lease_owner = ?"
            values.append(owner)
        with self._locked() as db:
            cur = db.execute(query, values)
        return cur.rowcount > 0

    def get(self, prediction_id: str) -> PredictionRecord | None:
        with self._locked() as db:
            row = db.execute(f"{_SELECT} WHERE id = ?", (prediction_id,)).fetchone()
        return None if row is None else decode(row)

    def page(self, before_seq: int | None, limit: int, *, model: str | None = None) -> list[PredictionRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._locked() as db:
            rows = db.execute(f"{_SELECT}{where} ORDER BY seq DESC LIMIT ?", [*params, limit]).fetchall()
        return [decode(r) for r in rows]

    # ---- leases

    def renew_leases(self, owner: str, until: float) -> int:
        with self._locked() as db:
            cur = db.execute(
                "UPDATE predictions SET lease_expires_at = ? WHERE lease_owner = ? AND status IN (?, ?)",
                (until, owner, *_UNFINISHED),
            )
        return cur.rowcount

    def claim_expired(
        self, models: list[str], owner: str, now: float, until: float, *, dead_owners: tuple[str, ...] = ()
    ) -> list[PredictionRecord]:
        if not models:
            return []
        model_marks = ", ".join("?" for _ in models)
        dead_marks = ", ".join("?" for _ in dead_owners) or "NULL"
        expired = (
            f"status IN (?, ?) AND model IN ({model_marks}) AND (lease_expires_at IS NULL "
            f"OR lease_expires_at < ? OR lease_owner IN ({dead_marks}))"
        )
        claimed: list[PredictionRecord] = []
        with self._locked() as db:
            rows = db.execute(
                f"{_SELECT} WHERE {expired} ORDER BY seq", (*_UNFINISHED, *models, now, *dead_owners)
            ).fetchall()
            for row in rows:
                rec = decode(row)
                # Conditional on the lease we saw: another instance that claimed it first wins.
                cur = db.execute(
                    "UPDATE predictions SET lease_owner = ?, lease_expires_at = ? WHERE id = ? "
                    "AND lease_owner IS ? AND lease_expires_at IS ?",
                    (owner, until, rec.id, rec.lease_owner, rec.lease_expires_at),
                )
                if cur.rowcount:
                    rec.lease_owner, rec.lease_expires_at = owner, until
                    claimed.append(rec)
        return claimed

    def lease_owners(self) -> list[str]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT DISTINCT lease_owner FROM predictions WHERE status IN (?, ?) AND lease_owner IS NOT NULL",
                _UNFINISHED,
            ).fetchall()
        return [str(r[0]) for r in rows]

    def adopt_unowned(self, model: str) -> int:
        """Give predictions that name no model (made before models were recorded) to `model`; how many."""
        with self._locked() as db:
            cur = db.execute("UPDATE predictions SET model = ? WHERE model IS NULL", (model,))
        return cur.rowcount

    def watch(self, prediction_id: str, on_change: Callable[[], None]) -> Callable[[], None]:
        # Servers sharing a file have no channel to tell each other: the follower polls.
        return lambda: None

    # ---- retention and counts

    def remove_data_before(self, completed_before: str) -> int:
        with self._locked() as db:
            cur = db.execute(
                "UPDATE predictions SET input = NULL, run_input = NULL, output = NULL, data_removed = 1 "
                "WHERE completed_at IS NOT NULL AND completed_at < ? AND data_removed = 0",
                (completed_before,),
            )
        return cur.rowcount

    def run_counts(self) -> dict[str, int]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT model, COUNT(*) FROM predictions WHERE model IS NOT NULL GROUP BY model"
            ).fetchall()
        return {str(m): int(n) for m, n in rows}

    # ---- versions

    def put_version(self, version: VersionRecord) -> None:
        with self._locked() as db:
            db.execute(
                "INSERT INTO versions (model, id, created_at, openapi_schema, info) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (model, id) DO UPDATE SET openapi_schema = excluded.openapi_schema, "
                "info = excluded.info",
                (
                    version.model,
                    version.id,
                    version.created_at,
                    json.dumps(version.openapi_schema),
                    json.dumps(version.info),
                ),
            )

    def get_version(self, model: str, version_id: str) -> VersionRecord | None:
        with self._locked() as db:
            row = db.execute(
                "SELECT model, id, created_at, openapi_schema, info FROM versions WHERE model = ? AND id = ?",
                (model, version_id),
            ).fetchone()
        if row is None:
            return None
        return VersionRecord(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]))
