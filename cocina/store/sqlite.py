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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cocina.store.base import StoreError, UsageCell, Write, write_each
from cocina.store.columns import COLUMNS, KEY_COLUMNS, KEY_SELECT, MUTABLE, decode, decode_key, encode, key_values
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

_SELECT = f"SELECT seq, {', '.join(COLUMNS)} FROM predictions"
_UNFINISHED = (PredictionStatus.STARTING.value, PredictionStatus.PROCESSING.value)


def _blob(value: Any) -> bytes:
    """A BLOB column's value as bytes, also when someone rewrote it as TEXT (the audit verifier must be able to
    read a tampered row in order to report it)."""
    return value.encode() if isinstance(value, str) else bytes(value)


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
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once (BEGIN IMMEDIATE): other connections to the file wait for it."""
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

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
        with self._locked() as db:
            return self._insert(db, rec)

    def update(self, rec: PredictionRecord, *, owner: str | None = None) -> bool:
        with self._locked() as db:
            return self._update(db, rec, owner)

    def write_many(self, writes: Sequence[Write]) -> list[bool | StoreError]:
        try:
            with self._transaction() as db:
                results: list[bool | StoreError] = [
                    self._insert(db, w.record) if w.insert else self._update(db, w.record, w.owner) for w in writes
                ]
        except StoreError:
            if len(writes) <= 1:
                raise
            return write_each(self, writes)
        return results

    @staticmethod
    def _insert(db: sqlite3.Connection, rec: PredictionRecord) -> bool:
        marks = ", ".join("?" for _ in COLUMNS)
        values = [encode(c, getattr(rec, c)) for c in COLUMNS]
        try:
            cur = db.execute(f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({marks})", values)
        except sqlite3.IntegrityError:
            return False
        rec.seq = int(cur.lastrowid or 0)
        return True

    @staticmethod
    def _update(db: sqlite3.Connection, rec: PredictionRecord, owner: str | None) -> bool:
        sets = ", ".join(f"{c} = ?" for c in MUTABLE)
        values = [encode(c, getattr(rec, c)) for c in MUTABLE]
        query = f"UPDATE predictions SET {sets} WHERE id = ?"
        values.append(rec.id)
        if owner is not None:
            query += " AND lease_owner = ?"
            values.append(owner)
        return db.execute(query, values).rowcount > 0

    def get(self, prediction_id: str) -> PredictionRecord | None:
        with self._locked() as db:
            row = db.execute(f"{_SELECT} WHERE id = ?", (prediction_id,)).fetchone()
        return None if row is None else decode(row)

    def page(
        self,
        before_seq: int | None,
        limit: int,
        *,
        model: str | None = None,
        version: str | None = None,
        status: str | None = None,
        source: str | None = None,
        principal: str | None = None,
        kind: str | None = None,
    ) -> list[PredictionRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        for column, value in (
            ("model", model),
            ("version", version),
            ("status", status),
            ("source", source),
            ("principal", principal),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._locked() as db:
            rows = db.execute(f"{_SELECT}{where} ORDER BY seq DESC LIMIT ?", [*params, limit]).fetchall()
        return [decode(r) for r in rows]

    def of_deployment(self, deployment: str, limit: int = 10_000) -> list[PredictionRecord]:
        """A deployment's predictions, newest first (its live traffic)."""
        with self._locked() as db:
            rows = db.execute(
                f"{_SELECT} WHERE deployment = ? ORDER BY seq DESC LIMIT ?", (deployment, limit)
            ).fetchall()
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
        """Examples and predictions shared by a link still open keep their data (as Replicate keeps them)."""
        with self._locked() as db:
            cur = db.execute(
                "UPDATE predictions SET input = NULL, run_input = NULL, output = NULL, data_removed = 1 "
                "WHERE completed_at IS NOT NULL AND completed_at < ? AND data_removed = 0 "
                "AND id NOT IN (SELECT prediction_id FROM examples) "
                "AND id NOT IN (SELECT prediction_id FROM shares WHERE revoked_at IS NULL "
                "AND (expires_at IS NULL OR expires_at > ?))",
                (completed_before, utc_now()),
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
        """Insert a version, or update what is learnt of it (schema, info; a push's manifest and environment);
        its creation time stays the first one."""
        with self._locked() as db:
            db.execute(
                "INSERT INTO versions (model, id, created_at, openapi_schema, info, manifest, environment) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, id) DO UPDATE SET "
                "openapi_schema = excluded.openapi_schema, info = excluded.info, "
                "manifest = COALESCE(excluded.manifest, versions.manifest), "
                "environment = COALESCE(excluded.environment, versions.environment)",
                (
                    version.model,
                    version.id,
                    version.created_at,
                    json.dumps(version.openapi_schema),
                    json.dumps(version.info),
                    None if version.manifest is None else json.dumps(version.manifest),
                    None if version.environment is None else json.dumps(version.environment),
                ),
            )

    _VERSION = "SELECT model, id, created_at, openapi_schema, info, manifest, environment FROM versions"

    @staticmethod
    def _version(row: tuple[Any, ...]) -> VersionRecord:
        return VersionRecord(
            row[0],
            row[1],
            row[2],
            json.loads(row[3]),
            json.loads(row[4]),
            None if row[5] is None else json.loads(row[5]),
            None if row[6] is None else json.loads(row[6]),
        )

    def get_version(self, model: str, version_id: str) -> VersionRecord | None:
        with self._locked() as db:
            row = db.execute(f"{self._VERSION} WHERE model = ? AND id = ?", (model, version_id)).fetchone()
        return None if row is None else self._version(row)

    def list_versions(self, model: str | None = None, *, pushed_only: bool = False) -> list[VersionRecord]:
        """Newest first (by creation time); `pushed_only`: versions with files in the hub."""
        clauses, params = [], []
        if model is not None:
            clauses.append("model = ?")
            params.append(model)
        if pushed_only:
            clauses.append("manifest IS NOT NULL")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._locked() as db:
            rows = db.execute(f"{self._VERSION}{where} ORDER BY created_at DESC, rowid DESC", params).fetchall()
        return [self._version(r) for r in rows]

    def delete_version(self, model: str, version_id: str) -> bool:
        with self._locked() as db:
            cur = db.execute("DELETE FROM versions WHERE model = ? AND id = ?", (model, version_id))
        return cur.rowcount > 0

    def count_unfinished(self, model: str, version: str | None = None) -> int:
        """Predictions of a model (or one version of it) that have not ended."""
        query = "SELECT COUNT(*) FROM predictions WHERE model = ? AND status IN (?, ?)"
        params: list[Any] = [model, *_UNFINISHED]
        if version is not None:
            query += " AND version = ?"
            params.append(version)
        with self._locked() as db:
            return int(db.execute(query, params).fetchone()[0])

    # ---- models

    def put_model(self, model: ModelRecord) -> bool:
        """Create a model; False when it exists (nothing changed)."""
        try:
            with self._locked() as db:
                db.execute(
                    "INSERT INTO models (name, description, visibility, created_at) VALUES (?, ?, ?, ?)",
                    (model.name, model.description, model.visibility, model.created_at),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def get_model(self, name: str) -> ModelRecord | None:
        with self._locked() as db:
            row = db.execute(
                "SELECT name, description, visibility, created_at FROM models WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else ModelRecord(*row)

    def list_models(self) -> list[ModelRecord]:
        with self._locked() as db:
            rows = db.execute("SELECT name, description, visibility, created_at FROM models ORDER BY name").fetchall()
        return [ModelRecord(*r) for r in rows]

    def delete_model(self, name: str) -> bool:
        with self._locked() as db:
            cur = db.execute("DELETE FROM models WHERE name = ?", (name,))
        return cur.rowcount > 0

    # ---- deployments and releases

    def create_deployment(self, deployment: DeploymentRecord, configuration: dict[str, Any], by: str | None) -> bool:
        """A deployment with its first release, in one transaction; False when the name is taken."""
        with self._locked() as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO deployments (name, model, created_at) VALUES (?, ?, ?)",
                    (deployment.name, deployment.model, deployment.created_at),
                )
                db.execute(
                    "INSERT INTO releases (deployment, number, created_at, created_by, configuration) "
                    "VALUES (?, 1, ?, ?, ?)",
                    (deployment.name, deployment.created_at, by, json.dumps(configuration)),
                )
                db.execute("COMMIT")
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                return False
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return True

    def add_release(self, deployment: str, configuration: dict[str, Any], by: str | None) -> ReleaseRecord:
        """The next release of a deployment (its number one more than the last), atomically."""
        created = ReleaseRecord(deployment, 0, configuration, created_by=by)
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT MAX(number) FROM releases WHERE deployment = ?", (deployment,)).fetchone()
                created.number = int(row[0] or 0) + 1
                db.execute(
                    "INSERT INTO releases (deployment, number, created_at, created_by, configuration) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (deployment, created.number, created.created_at, by, json.dumps(configuration)),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return created

    _RELEASE = "SELECT deployment, number, configuration, created_at, created_by FROM releases"

    @staticmethod
    def _release(row: tuple[Any, ...]) -> ReleaseRecord:
        return ReleaseRecord(row[0], int(row[1]), json.loads(row[2]), row[3], row[4])

    def list_releases(self, deployment: str) -> list[ReleaseRecord]:
        """Newest first."""
        with self._locked() as db:
            rows = db.execute(f"{self._RELEASE} WHERE deployment = ? ORDER BY number DESC", (deployment,)).fetchall()
        return [self._release(r) for r in rows]

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        with self._locked() as db:
            row = db.execute("SELECT name, model, created_at FROM deployments WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            rel = db.execute(f"{self._RELEASE} WHERE deployment = ? ORDER BY number DESC LIMIT 1", (name,)).fetchone()
        return DeploymentRecord(row[0], row[1], row[2], None if rel is None else self._release(rel))

    def list_deployments(self, model: str | None = None) -> list[DeploymentRecord]:
        with self._locked() as db:
            query = "SELECT name FROM deployments" + (" WHERE model = ?" if model else "") + " ORDER BY name"
            names = [r[0] for r in db.execute(query, (model,) if model else ()).fetchall()]
        found = [self.get_deployment(n) for n in names]
        return [d for d in found if d is not None]

    def delete_deployment(self, name: str) -> bool:
        with self._locked() as db:
            db.execute("DELETE FROM releases WHERE deployment = ?", (name,))
            cur = db.execute("DELETE FROM deployments WHERE name = ?", (name,))
        return cur.rowcount > 0

    # ---- the web page: shares and examples

    _SHARE = "SELECT id, prediction_id, digest, created_at, expires_at, revoked_at, created_by FROM shares"

    def put_share(self, share: ShareRecord) -> bool:
        try:
            with self._locked() as db:
                db.execute(
                    "INSERT INTO shares (id, prediction_id, digest, created_at, expires_at, revoked_at, created_by) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        share.id,
                        share.prediction_id,
                        share.digest,
                        share.created_at,
                        share.expires_at,
                        share.revoked_at,
                        share.created_by,
                    ),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def get_share(self, share_id: str) -> ShareRecord | None:
        with self._locked() as db:
            row = db.execute(f"{self._SHARE} WHERE id = ?", (share_id,)).fetchone()
        return None if row is None else ShareRecord(*row)

    def find_share(self, digest: str) -> ShareRecord | None:
        with self._locked() as db:
            row = db.execute(f"{self._SHARE} WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else ShareRecord(*row)

    def list_shares(self, prediction_id: str) -> list[ShareRecord]:
        with self._locked() as db:
            rows = db.execute(
                f"{self._SHARE} WHERE prediction_id = ? ORDER BY created_at DESC, rowid DESC", (prediction_id,)
            ).fetchall()
        return [ShareRecord(*r) for r in rows]

    def revoke_share(self, share_id: str, when: str) -> bool:
        with self._locked() as db:
            cur = db.execute("UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (when, share_id))
        return cur.rowcount > 0

    _EXAMPLE = "SELECT model, prediction_id, is_default, created_at, created_by FROM examples"

    @staticmethod
    def _example(row: tuple[Any, ...]) -> ExampleRecord:
        return ExampleRecord(row[0], row[1], bool(row[2]), row[3], row[4])

    def put_example(self, example: ExampleRecord) -> bool:
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if example.is_default:
                    db.execute("UPDATE examples SET is_default = 0 WHERE model = ?", (example.model,))
                db.execute(
                    "INSERT INTO examples (model, prediction_id, is_default, created_at, created_by) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        example.model,
                        example.prediction_id,
                        int(example.is_default),
                        example.created_at,
                        example.created_by,
                    ),
                )
                db.execute("COMMIT")
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                return False
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return True

    def list_examples(self, model: str) -> list[ExampleRecord]:
        with self._locked() as db:
            rows = db.execute(
                f"{self._EXAMPLE} WHERE model = ? ORDER BY is_default DESC, created_at DESC, rowid DESC", (model,)
            ).fetchall()
        return [self._example(r) for r in rows]

    def set_default_example(self, model: str, prediction_id: str) -> bool:
        with self._locked() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                found = db.execute(
                    "SELECT 1 FROM examples WHERE model = ? AND prediction_id = ?", (model, prediction_id)
                ).fetchone()
                if found is not None:
                    db.execute(
                        "UPDATE examples SET is_default = (prediction_id = ?) WHERE model = ?", (prediction_id, model)
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return found is not None

    def delete_example(self, model: str, prediction_id: str) -> bool:
        with self._locked() as db:
            cur = db.execute("DELETE FROM examples WHERE model = ? AND prediction_id = ?", (model, prediction_id))
        return cur.rowcount > 0

    # ---- API keys

    def insert_key(self, key: KeyRecord) -> bool:
        marks = ", ".join("?" for _ in KEY_COLUMNS)
        try:
            with self._locked() as db:
                db.execute(f"INSERT INTO api_keys ({', '.join(KEY_COLUMNS)}) VALUES ({marks})", key_values(key))
        except sqlite3.IntegrityError:
            return False
        return True

    def update_key(self, key: KeyRecord) -> None:
        sets = ", ".join(f"{c} = ?" for c in KEY_COLUMNS[1:])
        with self._locked() as db:
            db.execute(f"UPDATE api_keys SET {sets} WHERE id = ?", [*key_values(key)[1:], key.id])

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._locked() as db:
            row = db.execute(f"{KEY_SELECT} WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else decode_key(row)

    def find_key(self, lookup: str) -> KeyRecord | None:
        with self._locked() as db:
            row = db.execute(f"{KEY_SELECT} WHERE lookup = ? OR previous_lookup = ?", (lookup, lookup)).fetchone()
        return None if row is None else decode_key(row)

    def list_keys(self) -> list[KeyRecord]:
        with self._locked() as db:
            rows = db.execute(f"{KEY_SELECT} ORDER BY created_at, id").fetchall()
        return [decode_key(r) for r in rows]

    def count_keys(self) -> int:
        with self._locked() as db:
            return int(db.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0])

    def touch_key(self, key_id: str, when: float) -> None:
        with self._locked() as db:
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (when, key_id))

    # ---- usage counters

    def usage_update(
        self,
        key_id: str,
        cells: list[UsageCell],
        decide: Callable[[dict[UsageCell, int]], dict[UsageCell, int] | None],
    ) -> dict[UsageCell, int] | None:
        with self._transaction() as db:
            current: dict[UsageCell, int] = {}
            for kind, window in cells:
                row = db.execute(
                    "SELECT amount FROM key_usage WHERE key_id = ? AND kind = ? AND window = ?",
                    (key_id, kind, window),
                ).fetchone()
                current[(kind, window)] = int(row[0]) if row else 0
            deltas = decide(current)
            for (kind, window), delta in (deltas or {}).items():
                if delta:
                    db.execute(
                        "INSERT INTO key_usage (key_id, kind, window, amount) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (key_id, kind, window) DO UPDATE SET amount = amount + excluded.amount",
                        (key_id, kind, window, delta),
                    )
        return deltas

    def usage_rows(self, key_id: str) -> list[tuple[str, int, int]]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT kind, window, amount FROM key_usage WHERE key_id = ? ORDER BY kind, window", (key_id,)
            ).fetchall()
        return [(str(k), int(w), int(a)) for k, w, a in rows]

    def usage_prune(self, kind: str, before_window: int) -> int:
        with self._locked() as db:
            cur = db.execute("DELETE FROM key_usage WHERE kind = ? AND window < ?", (kind, before_window))
        return cur.rowcount

    # ---- the audit log

    def audit_size(self) -> int:
        with self._locked() as db:
            row = db.execute("SELECT MAX(idx) FROM audit_entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def audit_append(self, entry: AuditEntry, nodes: list[tuple[int, int, bytes]]) -> bool:
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO audit_entries (idx, prediction_id, entry, leaf_hash) VALUES (?, ?, ?, ?)",
                    (entry.idx, entry.prediction_id, entry.entry, entry.leaf_hash),
                )
                db.executemany("INSERT OR REPLACE INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
        except sqlite3.IntegrityError:
            return False
        return True

    def audit_entries(self, start: int, end: int) -> list[AuditEntry]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT idx, prediction_id, entry, leaf_hash FROM audit_entries WHERE idx >= ? AND idx < ? "
                "ORDER BY idx",
                (start, end),
            ).fetchall()
        return [AuditEntry(int(i), p, _blob(e), _blob(h)) for i, p, e, h in rows]

    def audit_entry_for(self, prediction_id: str) -> AuditEntry | None:
        with self._locked() as db:
            row = db.execute(
                "SELECT idx, prediction_id, entry, leaf_hash FROM audit_entries WHERE prediction_id = ? "
                "ORDER BY idx DESC LIMIT 1",
                (prediction_id,),
            ).fetchone()
        return None if row is None else AuditEntry(int(row[0]), row[1], _blob(row[2]), _blob(row[3]))

    def audit_nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        with self._locked() as db:
            for level, idx in keys:
                if level == 0:
                    row = db.execute("SELECT leaf_hash FROM audit_entries WHERE idx = ?", (idx,)).fetchone()
                else:
                    row = db.execute(
                        "SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, idx)
                    ).fetchone()
                if row is not None:
                    found[(level, idx)] = _blob(row[0])
        return found

    def audit_put_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        with self._locked() as db:
            db.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)",
                (checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.created_at),
            )

    def audit_checkpoint(self, size: int | None = None) -> CheckpointRecord | None:
        query = "SELECT size, root, note, created_at FROM audit_checkpoints"
        with self._locked() as db:
            if size is None:
                row = db.execute(f"{query} ORDER BY size DESC LIMIT 1").fetchone()
            else:
                row = db.execute(f"{query} WHERE size = ?", (size,)).fetchone()
        return None if row is None else CheckpointRecord(int(row[0]), _blob(row[1]), str(row[2]), float(row[3]))

    def audit_checkpoints(self) -> list[CheckpointRecord]:
        with self._locked() as db:
            rows = db.execute("SELECT size, root, note, created_at FROM audit_checkpoints ORDER BY size").fetchall()
        return [CheckpointRecord(int(s), _blob(r), str(n), float(c)) for s, r, n, c in rows]
