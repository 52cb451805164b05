"""`PostgresStore`: the `Store` in PostgreSQL, for several cocina replicas sharing their predictions.

The same Alembic migrations as SQLite create and upgrade the schema (`migrate` serializes concurrent replicas with an
advisory lock). The columns, their encoding (JSON as text) and the protocol are SQLite's, so a table added for one
store is there for the other.

What differs from SQLite, and why:
- **Claims** take expired leases with one `UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED)`: replicas
  racing for orphans never wait on each other's locked rows, and never take the same one.
- **LISTEN/NOTIFY**: every write of a prediction notifies `cocina_predictions` with its id, in the same statement,
  so a replica following a prediction another replica runs (a stream re-attached by id) wakes when it changes
  instead of polling (`wait_for_change`).
- **Connection loss** (PostgreSQL restarted, a network cut) is a `StoreError` for the call that met it, never a
  crash; the next call reconnects. Admission turns it into 503 + Retry-After; nothing accepted is forgotten, since a
  row is only accepted once it is committed.
- **Durability per write**: the insert that accepts a prediction and the write of its final state commit
  synchronously; intermediate writes (running, partial output, lease renewals) commit with
  `synchronous_commit = off`, since losing one to a database crash only means a prediction is re-run or its
  partial output shown a little older.

Calls are short and synchronous, on the calling thread's own connection: serving makes the hot path's calls
(acceptance, running, final state) from a small pool of threads so that concurrent predictions' round trips overlap
and PostgreSQL commits them together; the others from its event loop.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg

from cocina.store.base import StoreError, UsageCell, Write, write_each
from cocina.store.columns import COLUMNS, KEY_COLUMNS, KEY_SELECT, MUTABLE, decode, decode_key, encode, key_values
from cocina.store.migrate import migrate, redact_url
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

log = logging.getLogger("cocina.store.postgres")

CHANNEL = "cocina_predictions"
_SELECT = f"SELECT seq, {', '.join(COLUMNS)} FROM predictions"
_RETURNING = f"RETURNING seq, {', '.join(COLUMNS)}"
_UNFINISHED = [PredictionStatus.STARTING.value, PredictionStatus.PROCESSING.value]
_CONNECT_TIMEOUT_S = 3
_RELEASE_LOCK = 0x636F63  # the advisory lock class of a deployment's releases (with a hash of its name)
_EXAMPLE_LOCK = 0x636F64  # ... and of a model's examples
_USAGE_LOCK = 0x636F65  # ... and of an API key's usage counters


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def libpq_url(url: str) -> str:
    """The URL psycopg takes (SQLAlchemy's `postgresql+psycopg://` names the driver; libpq does not)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + libpq_url(url)[len("postgresql://") :]


class PostgresStore:
    """`PostgresStore(url)` migrates the database to the newest schema and connects; `close()` when done."""

    concurrent_calls = True  # calls from several threads run at once (one connection per thread)

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)
        migrate(sqlalchemy_url(self.url))
        # One connection per calling thread (serving makes its hot-path calls from a small pool of threads, so
        # that the round trips of concurrent predictions overlap and PostgreSQL commits them together).
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        with self._locked():
            pass  # connect now: a wrong URL fails at start, not at the first prediction
        self._listener: _Listener | None = None
        self._listener_lock = threading.Lock()

    # ---- connection

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
            with self._connections_lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    @contextmanager
    def _locked(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's connection; a lost connection becomes `StoreError` and is dropped (the next call from
        this thread reconnects)."""
        if self._closed:
            raise StoreError("the store is closed")
        try:
            yield self._connection()
        except psycopg.OperationalError as exc:
            # The server went away (restart, network): drop the connection; the next call reconnects.
            self._drop()
            raise StoreError(f"PostgreSQL at {redact_url(self.url)} is unavailable: {_first_line(exc)}") from exc
        except psycopg.Error as exc:
            conn = getattr(self._local, "conn", None)
            if conn is not None and conn.broken:
                self._drop()
            raise StoreError(f"{type(exc).__name__}: {_first_line(exc)}") from exc

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._connections_lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            with suppress(Exception):
                conn.close()

    def _write(self, query: str, values: list[Any], *, durable: bool) -> list[Any]:
        """One write; `durable=False` commits without waiting for the disk, in the same single round trip
        (pipeline: BEGIN, SET LOCAL, the write and COMMIT sent together)."""
        with self._locked() as db:
            if durable:
                return db.execute(query, values).fetchall()
            with db.pipeline(), db.transaction():
                db.execute("SET LOCAL synchronous_commit = off")
                cur = db.execute(query, values)
            return cur.fetchall()

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with suppress(Exception):
                conn.close()
        if self._listener is not None:
            self._listener.stop()

    # ---- predictions

    def insert(self, rec: PredictionRecord) -> bool:
        with self._locked() as db:
            row = db.execute(*self._insert_query(rec)).fetchone()
        if row is None:
            return False
        rec.seq = int(row[0])
        return True

    def update(self, rec: PredictionRecord, *, owner: str | None = None) -> bool:
        rows = self._write(*self._update_query(rec, owner), durable=rec.status.is_terminal)
        return len(rows) > 0

    def write_many(self, writes: Sequence[Write]) -> list[bool | StoreError]:
        """One transaction and one round trip for the whole batch (pipeline mode: BEGIN, the writes and COMMIT
        sent together), so that a batch of predictions costs one commit. It waits for the disk when any write
        is an acceptance or a final state. A write the database refuses (a value it cannot store) spoils the
        transaction for all: then each is written alone; a lost connection fails the whole batch."""
        queries = [self._insert_query(w.record) if w.insert else self._update_query(w.record, w.owner) for w in writes]
        durable = any(w.insert or w.record.status.is_terminal for w in writes)
        try:
            with self._locked() as db:
                with db.pipeline(), db.transaction():
                    if not durable:
                        db.execute("SET LOCAL synchronous_commit = off")
                    cursors = [db.execute(query, values) for query, values in queries]
                rows = [cur.fetchall() for cur in cursors]
        except StoreError:
            if len(writes) <= 1 or getattr(self._local, "conn", None) is None:  # connection lost: all fail
                raise
            return write_each(self, writes)
        results: list[bool | StoreError] = []
        for w, got in zip(writes, rows, strict=True):
            if w.insert and got:
                w.record.seq = int(got[0][0])
            results.append(len(got) > 0)
        return results

    @staticmethod
    def _insert_query(rec: PredictionRecord) -> tuple[str, list[Any]]:
        marks = ", ".join("%s" for _ in COLUMNS)
        values = [_text(encode(c, getattr(rec, c))) for c in COLUMNS]
        query = (
            f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING RETURNING seq"
        )
        return query, values

    @staticmethod
    def _update_query(rec: PredictionRecord, owner: str | None) -> tuple[str, list[Any]]:
        sets = ", ".join(f"{c} = %s" for c in MUTABLE)
        values: list[Any] = [_text(encode(c, getattr(rec, c))) for c in MUTABLE]
        where = "id = %s"
        values.append(rec.id)
        if owner is not None:
            where += " AND lease_owner = %s"
            values.append(owner)
        # One statement: the write and its notification (sent when the write commits, only if it happened).
        query = (
            f"WITH written AS (UPDATE predictions SET {sets} WHERE {where} RETURNING id) "
            f"SELECT pg_notify('{CHANNEL}', id) FROM written"
        )
        return query, values

    def get(self, prediction_id: str) -> PredictionRecord | None:
        with self._locked() as db:
            row = db.execute(f"{_SELECT} WHERE id = %s", (prediction_id,)).fetchone()
        return None if row is None else decode(tuple(row))

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
            clauses.append("kind = %s")
            params.append(kind)
        if before_seq is not None:
            clauses.append("seq < %s")
            params.append(before_seq)
        for column, value in (
            ("model", model),
            ("version", version),
            ("status", status),
            ("source", source),
            ("principal", principal),
        ):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._locked() as db:
            rows = db.execute(f"{_SELECT}{where} ORDER BY seq DESC LIMIT %s", [*params, limit]).fetchall()
        return [decode(tuple(r)) for r in rows]

    def of_deployment(self, deployment: str, limit: int = 10_000) -> list[PredictionRecord]:
        """A deployment's predictions, newest first (its live traffic)."""
        with self._locked() as db:
            rows = db.execute(
                f"{_SELECT} WHERE deployment = %s ORDER BY seq DESC LIMIT %s", (deployment, limit)
            ).fetchall()
        return [decode(tuple(r)) for r in rows]

    # ---- leases

    def renew_leases(self, owner: str, until: float) -> int:
        with self._locked() as db:
            with db.pipeline(), db.transaction():
                db.execute("SET LOCAL synchronous_commit = off")
                cur = db.execute(
                    "UPDATE predictions SET lease_expires_at = %s WHERE lease_owner = %s AND status = ANY(%s)",
                    (until, owner, _UNFINISHED),
                )
            return cur.rowcount

    def claim_expired(
        self, models: list[str], owner: str, now: float, until: float, *, dead_owners: tuple[str, ...] = ()
    ) -> list[PredictionRecord]:
        if not models:
            return []
        # SKIP LOCKED: rows another replica is claiming right now are its own; this one takes the rest.
        query = (
            "UPDATE predictions SET lease_owner = %s, lease_expires_at = %s WHERE seq IN ("
            " SELECT seq FROM predictions WHERE status = ANY(%s) AND model = ANY(%s)"
            " AND (lease_expires_at IS NULL OR lease_expires_at < %s OR lease_owner = ANY(%s))"
            f" ORDER BY seq FOR UPDATE SKIP LOCKED) {_RETURNING}"
        )
        with self._locked() as db:
            rows = db.execute(query, (owner, until, _UNFINISHED, list(models), now, list(dead_owners))).fetchall()
        return sorted((decode(tuple(r)) for r in rows), key=lambda r: r.seq)

    def lease_owners(self) -> list[str]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT DISTINCT lease_owner FROM predictions WHERE status = ANY(%s) AND lease_owner IS NOT NULL",
                (_UNFINISHED,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def adopt_unowned(self, model: str) -> int:
        with self._locked() as db:
            cur = db.execute("UPDATE predictions SET model = %s WHERE model IS NULL", (model,))
        return cur.rowcount

    # ---- following a prediction another replica runs

    def watch(self, prediction_id: str, on_change: Callable[[], None]) -> Callable[[], None]:
        """`on_change()` (from the listener's thread) each time any replica writes the prediction, and each time
        the listening connection is lost (the watcher re-reads and meets the store's state itself)."""
        with self._listener_lock:
            if self._listener is None:
                self._listener = _Listener(self.url)
            return self._listener.watch(prediction_id, on_change)

    # ---- retention and counts

    def remove_data_before(self, completed_before: str) -> int:
        """Examples and predictions shared by a link still open keep their data (as Replicate keeps them)."""
        with self._locked() as db:
            cur = db.execute(
                "UPDATE predictions SET input = NULL, run_input = NULL, output = NULL, data_removed = 1 "
                'WHERE completed_at IS NOT NULL AND completed_at COLLATE "C" < %s AND data_removed = 0 '
                "AND id NOT IN (SELECT prediction_id FROM examples) "
                "AND id NOT IN (SELECT prediction_id FROM shares WHERE revoked_at IS NULL "
                'AND (expires_at IS NULL OR expires_at COLLATE "C" > %s))',
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
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (model, id) DO UPDATE SET "
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
    def _version(row: Any) -> VersionRecord:
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
            row = db.execute(f"{self._VERSION} WHERE model = %s AND id = %s", (model, version_id)).fetchone()
        return None if row is None else self._version(row)

    def list_versions(self, model: str | None = None, *, pushed_only: bool = False) -> list[VersionRecord]:
        """Newest first (by creation time, compared as SQLite compares text; equal times: the later insert
        first, as SQLite's rowid orders them); `pushed_only`: versions with files in the hub."""
        clauses: list[str] = []
        params: list[Any] = []
        if model is not None:
            clauses.append("model = %s")
            params.append(model)
        if pushed_only:
            clauses.append("manifest IS NOT NULL")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._locked() as db:
            rows = db.execute(
                f'{self._VERSION}{where} ORDER BY created_at COLLATE "C" DESC, seq DESC', params
            ).fetchall()
        return [self._version(r) for r in rows]

    def delete_version(self, model: str, version_id: str) -> bool:
        with self._locked() as db:
            cur = db.execute("DELETE FROM versions WHERE model = %s AND id = %s", (model, version_id))
        return cur.rowcount > 0

    def count_unfinished(self, model: str, version: str | None = None) -> int:
        """Predictions of a model (or one version of it) that have not ended."""
        query = "SELECT COUNT(*) FROM predictions WHERE model = %s AND status = ANY(%s)"
        params: list[Any] = [model, _UNFINISHED]
        if version is not None:
            query += " AND version = %s"
            params.append(version)
        with self._locked() as db:
            row = db.execute(query, params).fetchone()
        return int(row[0]) if row is not None else 0

    # ---- models

    def put_model(self, model: ModelRecord) -> bool:
        """Create a model; False when it exists (nothing changed)."""
        with self._locked() as db:
            try:
                db.execute(
                    "INSERT INTO models (name, description, visibility, created_at) VALUES (%s, %s, %s, %s)",
                    (model.name, model.description, model.visibility, model.created_at),
                )
            except psycopg.errors.IntegrityError:
                return False
        return True

    def get_model(self, name: str) -> ModelRecord | None:
        with self._locked() as db:
            row = db.execute(
                "SELECT name, description, visibility, created_at FROM models WHERE name = %s", (name,)
            ).fetchone()
        return None if row is None else ModelRecord(*row)

    def list_models(self) -> list[ModelRecord]:
        """By name, ordered bytewise as SQLite orders text (whatever the database's collation)."""
        with self._locked() as db:
            rows = db.execute(
                'SELECT name, description, visibility, created_at FROM models ORDER BY name COLLATE "C"'
            ).fetchall()
        return [ModelRecord(*r) for r in rows]

    def delete_model(self, name: str) -> bool:
        with self._locked() as db:
            cur = db.execute("DELETE FROM models WHERE name = %s", (name,))
        return cur.rowcount > 0

    # ---- deployments and releases

    @staticmethod
    def _lock_releases(db: psycopg.Connection[Any], deployment: str) -> None:
        """Inside a transaction: one writer of a deployment's releases at a time, across replicas (SQLite's
        BEGIN IMMEDIATE serializes every writer; here the numbering of one deployment is what must be)."""
        db.execute(f"SELECT pg_advisory_xact_lock({_RELEASE_LOCK}, hashtext(%s))", (deployment,))

    def create_deployment(self, deployment: DeploymentRecord, configuration: dict[str, Any], by: str | None) -> bool:
        """A deployment with its first release, in one transaction; False when the name is taken."""
        config = json.dumps(configuration)
        with self._locked() as db:
            try:
                with db.transaction():
                    self._lock_releases(db, deployment.name)
                    db.execute(
                        "INSERT INTO deployments (name, model, created_at) VALUES (%s, %s, %s)",
                        (deployment.name, deployment.model, deployment.created_at),
                    )
                    db.execute(
                        "INSERT INTO releases (deployment, number, created_at, created_by, configuration) "
                        "VALUES (%s, 1, %s, %s, %s)",
                        (deployment.name, deployment.created_at, by, config),
                    )
            except psycopg.errors.IntegrityError:
                return False  # the transaction was rolled back
        return True

    def add_release(self, deployment: str, configuration: dict[str, Any], by: str | None) -> ReleaseRecord:
        """The next release of a deployment (its number one more than the last), atomically: replicas adding
        releases at once get consecutive numbers."""
        created = ReleaseRecord(deployment, 0, configuration, created_by=by)
        config = json.dumps(configuration)
        with self._locked() as db, db.transaction():
            self._lock_releases(db, deployment)
            row = db.execute(
                "INSERT INTO releases (deployment, number, created_at, created_by, configuration) "
                "SELECT %s, COALESCE(MAX(number), 0) + 1, %s, %s, %s FROM releases WHERE deployment = %s "
                "RETURNING number",
                (deployment, created.created_at, by, config, deployment),
            ).fetchone()
            assert row is not None
            created.number = int(row[0])
        return created

    _RELEASE = "SELECT deployment, number, configuration, created_at, created_by FROM releases"

    @staticmethod
    def _release(row: Any) -> ReleaseRecord:
        return ReleaseRecord(row[0], int(row[1]), json.loads(row[2]), row[3], row[4])

    def list_releases(self, deployment: str) -> list[ReleaseRecord]:
        """Newest first."""
        with self._locked() as db:
            rows = db.execute(f"{self._RELEASE} WHERE deployment = %s ORDER BY number DESC", (deployment,)).fetchall()
        return [self._release(r) for r in rows]

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        """With its current (newest) release, read in one statement."""
        with self._locked() as db:
            row = db.execute(
                "SELECT d.name, d.model, d.created_at, r.deployment, r.number, r.configuration, r.created_at, "
                "r.created_by FROM deployments d LEFT JOIN LATERAL (SELECT * FROM releases "
                "WHERE deployment = d.name ORDER BY number DESC LIMIT 1) r ON true WHERE d.name = %s",
                (name,),
            ).fetchone()
        if row is None:
            return None
        release = None if row[3] is None else self._release(row[3:])
        return DeploymentRecord(row[0], row[1], row[2], release)

    def list_deployments(self, model: str | None = None) -> list[DeploymentRecord]:
        """By name (bytewise, as SQLite orders text), each with its current release."""
        query = (
            "SELECT d.name, d.model, d.created_at, r.deployment, r.number, r.configuration, r.created_at, "
            "r.created_by FROM deployments d LEFT JOIN LATERAL (SELECT * FROM releases "
            "WHERE deployment = d.name ORDER BY number DESC LIMIT 1) r ON true"
            + (" WHERE d.model = %s" if model else "")
            + ' ORDER BY d.name COLLATE "C"'
        )
        with self._locked() as db:
            rows = db.execute(query, (model,) if model else ()).fetchall()
        return [DeploymentRecord(r[0], r[1], r[2], None if r[3] is None else self._release(r[3:])) for r in rows]

    def delete_deployment(self, name: str) -> bool:
        """The deployment and its releases, in one transaction."""
        with self._locked() as db, db.transaction():
            self._lock_releases(db, name)
            db.execute("DELETE FROM releases WHERE deployment = %s", (name,))
            cur = db.execute("DELETE FROM deployments WHERE name = %s", (name,))
        return cur.rowcount > 0

    # ---- the web page: shares and examples

    _SHARE = "SELECT id, prediction_id, digest, created_at, expires_at, revoked_at, created_by FROM shares"

    def put_share(self, share: ShareRecord) -> bool:
        """Record a new share; False when its id or digest exists (nothing written)."""
        with self._locked() as db:
            try:
                db.execute(
                    "INSERT INTO shares (id, prediction_id, digest, created_at, expires_at, revoked_at, created_by) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
            except psycopg.errors.IntegrityError:
                return False
        return True

    def get_share(self, share_id: str) -> ShareRecord | None:
        with self._locked() as db:
            row = db.execute(f"{self._SHARE} WHERE id = %s", (share_id,)).fetchone()
        return None if row is None else ShareRecord(*row)

    def find_share(self, digest: str) -> ShareRecord | None:
        with self._locked() as db:
            row = db.execute(f"{self._SHARE} WHERE digest = %s", (digest,)).fetchone()
        return None if row is None else ShareRecord(*row)

    def list_shares(self, prediction_id: str) -> list[ShareRecord]:
        """Newest first; equal creation times: the later insert first (as SQLite's rowid orders them)."""
        with self._locked() as db:
            rows = db.execute(
                f'{self._SHARE} WHERE prediction_id = %s ORDER BY created_at COLLATE "C" DESC, seq DESC',
                (prediction_id,),
            ).fetchall()
        return [ShareRecord(*r) for r in rows]

    def revoke_share(self, share_id: str, when: str) -> bool:
        with self._locked() as db:
            cur = db.execute("UPDATE shares SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (when, share_id))
        return cur.rowcount > 0

    _EXAMPLE = "SELECT model, prediction_id, is_default, created_at, created_by FROM examples"

    @staticmethod
    def _example(row: Any) -> ExampleRecord:
        return ExampleRecord(row[0], row[1], bool(row[2]), row[3], row[4])

    @staticmethod
    def _lock_examples(db: psycopg.Connection[Any], model: str) -> None:
        """Inside a transaction: one writer of a model's examples at a time, across replicas (SQLite's BEGIN
        IMMEDIATE serializes them), so that a model never ends up with two defaults."""
        db.execute(f"SELECT pg_advisory_xact_lock({_EXAMPLE_LOCK}, hashtext(%s))", (model,))

    def put_example(self, example: ExampleRecord) -> bool:
        """Add a prediction to a model's examples (the only default one if `is_default`), in one transaction;
        False when it is one already (nothing written)."""
        with self._locked() as db:
            try:
                with db.transaction():
                    self._lock_examples(db, example.model)
                    if example.is_default:
                        db.execute("UPDATE examples SET is_default = 0 WHERE model = %s", (example.model,))
                    db.execute(
                        "INSERT INTO examples (model, prediction_id, is_default, created_at, created_by) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        (
                            example.model,
                            example.prediction_id,
                            int(example.is_default),
                            example.created_at,
                            example.created_by,
                        ),
                    )
            except psycopg.errors.IntegrityError:
                return False  # rolled back: the other examples keep their default
        return True

    def list_examples(self, model: str) -> list[ExampleRecord]:
        """The default first, then newest first (equal creation times: the later insert first)."""
        with self._locked() as db:
            rows = db.execute(
                f'{self._EXAMPLE} WHERE model = %s ORDER BY is_default DESC, created_at COLLATE "C" DESC, seq DESC',
                (model,),
            ).fetchall()
        return [self._example(r) for r in rows]

    def set_default_example(self, model: str, prediction_id: str) -> bool:
        """Make this example the model's only default, in one transaction; False when it is not one of its
        examples (nothing changed)."""
        with self._locked() as db, db.transaction():
            self._lock_examples(db, model)
            found = db.execute(
                "SELECT 1 FROM examples WHERE model = %s AND prediction_id = %s", (model, prediction_id)
            ).fetchone()
            if found is not None:
                db.execute(
                    "UPDATE examples SET is_default = CASE WHEN prediction_id = %s THEN 1 ELSE 0 END WHERE model = %s",
                    (prediction_id, model),
                )
        return found is not None

    def delete_example(self, model: str, prediction_id: str) -> bool:
        with self._locked() as db:
            cur = db.execute("DELETE FROM examples WHERE model = %s AND prediction_id = %s", (model, prediction_id))
        return cur.rowcount > 0

    # ---- API keys (the guard)

    def insert_key(self, key: KeyRecord) -> bool:
        """Insert a new key; False (nothing written) if its id or lookup exists already."""
        marks = ", ".join("%s" for _ in KEY_COLUMNS)
        with self._locked() as db:
            try:
                db.execute(f"INSERT INTO api_keys ({', '.join(KEY_COLUMNS)}) VALUES ({marks})", key_values(key))
            except psycopg.errors.IntegrityError:
                return False
        return True

    def update_key(self, key: KeyRecord) -> None:
        sets = ", ".join(f"{c} = %s" for c in KEY_COLUMNS[1:])
        with self._locked() as db:
            db.execute(f"UPDATE api_keys SET {sets} WHERE id = %s", [*key_values(key)[1:], key.id])

    def get_key(self, key_id: str) -> KeyRecord | None:
        with self._locked() as db:
            row = db.execute(f"{KEY_SELECT} WHERE id = %s", (key_id,)).fetchone()
        return None if row is None else decode_key(tuple(row))

    def find_key(self, lookup: str) -> KeyRecord | None:
        with self._locked() as db:
            row = db.execute(f"{KEY_SELECT} WHERE lookup = %s OR previous_lookup = %s", (lookup, lookup)).fetchone()
        return None if row is None else decode_key(tuple(row))

    def list_keys(self) -> list[KeyRecord]:
        """Oldest first (equal times by id, in byte order as SQLite compares text)."""
        with self._locked() as db:
            rows = db.execute(f'{KEY_SELECT} ORDER BY created_at, id COLLATE "C"').fetchall()
        return [decode_key(tuple(r)) for r in rows]

    def count_keys(self) -> int:
        with self._locked() as db:
            row = db.execute("SELECT COUNT(*) FROM api_keys").fetchone()
        return int(row[0]) if row is not None else 0

    def touch_key(self, key_id: str, when: float) -> None:
        self._write("UPDATE api_keys SET last_used_at = %s WHERE id = %s", [when, key_id], durable=False)

    # ---- usage counters (rate limits and quotas)

    def usage_update(
        self,
        key_id: str,
        cells: list[UsageCell],
        decide: Callable[[dict[UsageCell, int]], dict[UsageCell, int] | None],
    ) -> dict[UsageCell, int] | None:
        """Read, decide and add in one transaction holding the key's advisory lock: replicas counting one key's
        requests at once take turns (as SQLite's BEGIN IMMEDIATE makes them), so none overshoots a limit."""
        with self._locked() as db, db.transaction():
            db.execute(f"SELECT pg_advisory_xact_lock({_USAGE_LOCK}, hashtext(%s))", (key_id,))
            current: dict[UsageCell, int] = dict.fromkeys(cells, 0)
            if cells:
                rows = db.execute(
                    'SELECT u.kind, u."window", u.amount FROM key_usage u '
                    'JOIN unnest(%s::text[], %s::bigint[]) AS c(kind, "window") '
                    'ON u.kind = c.kind AND u."window" = c."window" WHERE u.key_id = %s',
                    ([k for k, _ in cells], [w for _, w in cells], key_id),
                ).fetchall()
                for kind, window, amount in rows:
                    current[(str(kind), int(window))] = int(amount)
            deltas = decide(current)
            changes = [(key_id, kind, window, delta) for (kind, window), delta in (deltas or {}).items() if delta]
            if changes:
                with db.cursor() as cur:
                    cur.executemany(
                        'INSERT INTO key_usage (key_id, kind, "window", amount) VALUES (%s, %s, %s, %s) '
                        'ON CONFLICT (key_id, kind, "window") DO UPDATE '
                        "SET amount = key_usage.amount + excluded.amount",
                        changes,
                    )
        return deltas

    def usage_rows(self, key_id: str) -> list[tuple[str, int, int]]:
        with self._locked() as db:
            rows = db.execute(
                'SELECT kind, "window", amount FROM key_usage WHERE key_id = %s ORDER BY kind COLLATE "C", "window"',
                (key_id,),
            ).fetchall()
        return [(str(k), int(w), int(a)) for k, w, a in rows]

    def usage_prune(self, kind: str, before_window: int) -> int:
        with self._locked() as db:
            cur = db.execute('DELETE FROM key_usage WHERE kind = %s AND "window" < %s', (kind, before_window))
        return cur.rowcount

    # ---- the audit log (an append-only RFC 6962 Merkle tree)

    def audit_size(self) -> int:
        with self._locked() as db:
            row = db.execute("SELECT MAX(idx) FROM audit_entries").fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def audit_append(self, entry: AuditEntry, nodes: list[tuple[int, int, bytes]]) -> bool:
        """The entry and the subtree roots it completes in one transaction; False (nothing written) if its position
        is taken (another replica appended first). One round trip (pipeline mode: BEGIN, the inserts and COMMIT sent
        together): the append runs on serving's event loop at each prediction's end."""
        with self._locked() as db:
            try:
                with db.pipeline(), db.transaction():
                    db.execute(
                        "INSERT INTO audit_entries (idx, prediction_id, entry, leaf_hash) VALUES (%s, %s, %s, %s)",
                        (entry.idx, entry.prediction_id, entry.entry, entry.leaf_hash),
                    )
                    if nodes:
                        with db.cursor() as cur:
                            cur.executemany(
                                "INSERT INTO audit_nodes (level, idx, hash) VALUES (%s, %s, %s) "
                                "ON CONFLICT (level, idx) DO UPDATE SET hash = excluded.hash",
                                nodes,
                            )
            except psycopg.errors.IntegrityError:
                return False
        return True

    _ENTRY = "SELECT idx, prediction_id, entry, leaf_hash FROM audit_entries"

    def audit_entries(self, start: int, end: int) -> list[AuditEntry]:
        with self._locked() as db:
            rows = db.execute(f"{self._ENTRY} WHERE idx >= %s AND idx < %s ORDER BY idx", (start, end)).fetchall()
        return [AuditEntry(int(i), p, bytes(e), bytes(h)) for i, p, e, h in rows]

    def audit_entry_for(self, prediction_id: str) -> AuditEntry | None:
        with self._locked() as db:
            row = db.execute(
                f"{self._ENTRY} WHERE prediction_id = %s ORDER BY idx DESC LIMIT 1", (prediction_id,)
            ).fetchone()
        return None if row is None else AuditEntry(int(row[0]), row[1], bytes(row[2]), bytes(row[3]))

    def audit_nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """In two statements whatever the number of keys (leaves, then the nodes above them)."""
        leaves = [idx for level, idx in keys if level == 0]
        above = [(level, idx) for level, idx in keys if level != 0]
        found: dict[tuple[int, int], bytes] = {}
        with self._locked() as db:
            if leaves:
                for idx, leaf in db.execute(
                    "SELECT idx, leaf_hash FROM audit_entries WHERE idx = ANY(%s)", (leaves,)
                ).fetchall():
                    found[(0, int(idx))] = bytes(leaf)
            if above:
                rows = db.execute(
                    "SELECT n.level, n.idx, n.hash FROM audit_nodes n "
                    "JOIN unnest(%s::bigint[], %s::bigint[]) AS k(level, idx) ON n.level = k.level AND n.idx = k.idx",
                    ([level for level, _ in above], [idx for _, idx in above]),
                ).fetchall()
                for level, idx, digest in rows:
                    found[(int(level), int(idx))] = bytes(digest)
        return found

    def audit_put_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        """A second checkpoint for the same size is ignored."""
        with self._locked() as db:
            db.execute(
                "INSERT INTO audit_checkpoints (size, root, note, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (size) DO NOTHING",
                (checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.created_at),
            )

    _CHECKPOINT = "SELECT size, root, note, created_at FROM audit_checkpoints"

    def audit_checkpoint(self, size: int | None = None) -> CheckpointRecord | None:
        with self._locked() as db:
            if size is None:
                row = db.execute(f"{self._CHECKPOINT} ORDER BY size DESC LIMIT 1").fetchone()
            else:
                row = db.execute(f"{self._CHECKPOINT} WHERE size = %s", (size,)).fetchone()
        return None if row is None else CheckpointRecord(int(row[0]), bytes(row[1]), str(row[2]), float(row[3]))

    def audit_checkpoints(self) -> list[CheckpointRecord]:
        with self._locked() as db:
            rows = db.execute(f"{self._CHECKPOINT} ORDER BY size").fetchall()
        return [CheckpointRecord(int(s), bytes(r), str(n), float(c)) for s, r, n, c in rows]


class _Listener:
    """One LISTEN connection per store, in a thread, calling the watchers of each notified prediction id.

    While PostgreSQL is unreachable it retries every second, and calls every watcher each time the connection is
    lost (a notification may have been missed)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._watchers: dict[str, dict[int, Callable[[], None]]] = {}
        self._next = 0
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cocina-pg-listen", daemon=True)
        self._thread.start()

    def watch(self, prediction_id: str, on_change: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            key = self._next
            self._next += 1
            self._watchers.setdefault(prediction_id, {})[key] = on_change

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(prediction_id, {})
                watchers.pop(key, None)
                if not watchers:
                    self._watchers.pop(prediction_id, None)

        return unwatch

    def _call(self, callbacks: list[Callable[[], None]]) -> None:
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a prediction watcher failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5, stop_after=256):
                            with self._lock:
                                callbacks = list(self._watchers.get(note.payload, {}).values())
                            self._call(callbacks)
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("listening for prediction changes failed (%s); retrying", _first_line(exc))
                with self._lock:
                    callbacks = [cb for watchers in self._watchers.values() for cb in watchers.values()]
                self._call(callbacks)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)


def _text(value: Any) -> Any:
    """PostgreSQL's text cannot hold NUL characters (SQLite's can): a predictor that prints one must not make its
    prediction unwritable, so NUL becomes U+FFFD, the replacement character. JSON columns escape it already."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
