"""Both stores, SQLite and PostgreSQL (a real throwaway server), through the same tests: migrations (a
pre-migration database included), records, leases and fencing, versions; then what only PostgreSQL does
(LISTEN/NOTIFY, connection loss and reconnection)."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from cocina.store import (
    PredictionRecord,
    PredictionStatus,
    SQLiteStore,
    Store,
    StoreError,
    VersionRecord,
    Write,
    open_store,
)
from cocina.store.postgres import PostgresStore
from cocina.store.throwaway import ThrowawayPostgres

# The schema cocina wrote before migrations existed (revision 0001 is exactly this).
LEGACY_SCHEMA = """
CREATE TABLE predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, surface TEXT NOT NULL,
    input TEXT, run_input TEXT, output TEXT, logs TEXT NOT NULL DEFAULT '', error TEXT, created_at TEXT NOT NULL,
    started_at TEXT, completed_at TEXT, metrics TEXT, webhook TEXT, webhook_events_filter TEXT, deadline REAL,
    data_removed INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX predictions_status ON predictions(status);
CREATE INDEX predictions_completed ON predictions(completed_at);
"""


# The same schema in PostgreSQL's words (serial instead of AUTOINCREMENT).
LEGACY_SCHEMA_PG = LEGACY_SCHEMA.replace("seq INTEGER PRIMARY KEY AUTOINCREMENT", "seq SERIAL PRIMARY KEY")


def _rec(pid: str, model: str = "acme/echo", **kw: object) -> PredictionRecord:
    return PredictionRecord(id=pid, model=model, version="v1", input={"text": pid}, run_input={"text": pid}, **kw)  # type: ignore[arg-type]


def _write_legacy(where: str) -> None:
    row = ("old", "processing", "cog", '{"text": "x"}', "2026-01-01T00:00:00+00:00", '{"predict_time": 1}')
    if "://" not in where:
        db = sqlite3.connect(where)
        db.executescript(LEGACY_SCHEMA)
        db.execute(
            "INSERT INTO predictions (id, status, surface, input, created_at, metrics) VALUES (?, ?, ?, ?, ?, ?)", row
        )
        db.commit()
        db.close()
        return
    with psycopg.connect(where, autocommit=True) as conn:
        conn.execute(LEGACY_SCHEMA_PG)
        conn.execute(
            "INSERT INTO predictions (id, status, surface, input, created_at, metrics) VALUES (%s, %s, %s, %s, %s, %s)",
            row,
        )


def _tables(where: str) -> set[str]:
    if "://" not in where:
        return {r[0] for r in sqlite3.connect(where).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    with psycopg.connect(where) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_a_database_from_before_migrations_is_upgraded_in_place(where: str) -> None:
    _write_legacy(where)
    store = open_store(where)
    old = store.get("old")
    assert old is not None and old.input == {"text": "x"} and old.metrics == {"predict_time": 1}
    assert old.model is None and old.source == "api" and old.lease_owner is None
    assert old.kind == "prediction" and old.destination is None and old.context == {}
    assert old.sources is None and old.retrieval is None and old.release is None
    assert store.adopt_unowned("acme/echo") == 1
    assert store.get("old").model == "acme/echo"  # type: ignore[union-attr]
    store.insert(_rec("new"))
    assert store.get("new").seq > store.get("old").seq  # type: ignore[union-attr]  # the sequence goes on
    store.close()
    assert {"predictions", "versions", "alembic_version"} <= _tables(where)
    open_store(where).close()  # opening it again migrates nothing and loses nothing


def test_insert_get_update_and_duplicates(store: Store) -> None:
    rec = _rec("a", principal="key-1", deployment="acme/prod", source="web", surface="replicate")
    assert store.insert(rec) and rec.seq > 0
    assert not store.insert(_rec("a"))  # the same id: nothing written
    rec.status = PredictionStatus.SUCCEEDED
    rec.output = ["x"]
    rec.metrics = {"predict_time": 0.1}
    assert store.update(rec)
    got = store.get("a")
    assert got is not None and got.status is PredictionStatus.SUCCEEDED and got.output == ["x"]
    assert (got.principal, got.deployment, got.source, got.surface) == ("key-1", "acme/prod", "web", "replicate")
    assert store.get("missing") is None


def test_write_many_writes_a_batch_in_order_with_each_result(store: Store) -> None:
    """Serving's batches: acceptances, "running" writes and final states of several predictions in one call."""
    taken = _rec("taken", lease_owner="other", lease_expires_at=time.time() + 30)
    assert store.insert(taken)
    a = _rec("a", lease_owner="me", lease_expires_at=time.time() + 30)
    b = _rec("b", lease_owner="me", lease_expires_at=time.time() + 30)
    running = PredictionRecord(**{**a.__dict__, "status": PredictionStatus.PROCESSING})
    done = PredictionRecord(**{**a.__dict__, "status": PredictionStatus.SUCCEEDED, "output": ["a"]})
    results = store.write_many(
        [
            Write(a, insert=True),
            Write(b, insert=True),
            Write(running, owner="me"),
            Write(_rec("a"), insert=True),  # the same id again: not written
            Write(done, owner="me"),  # after the "running" write of the same batch: it wins
            Write(_rec("missing"), owner="me"),
            Write(PredictionRecord(**{**taken.__dict__, "logs": "not mine"}), owner="me"),  # fenced off
        ]
    )
    assert results == [True, True, True, False, True, False, False]
    assert a.seq > 0 and b.seq > a.seq
    got = store.get("a")
    assert got is not None and got.status is PredictionStatus.SUCCEEDED and got.output == ["a"]
    assert store.get("b") is not None and store.get("missing") is None
    assert store.get("taken").logs == ""  # type: ignore[union-attr]
    assert store.write_many([]) == []


def test_a_nul_character_in_logs_does_not_make_a_prediction_unwritable(store: Store) -> None:
    rec = _rec("nul", logs="before\x00after")
    assert store.insert(rec)
    rec.logs += "\x00more"
    rec.status = PredictionStatus.SUCCEEDED
    assert store.update(rec)
    got = store.get("nul")
    assert got is not None and got.status is PredictionStatus.SUCCEEDED
    assert got.logs is not None and got.logs.replace("\ufffd", "\x00") == "before\x00after\x00more"


def test_page_newest_first_by_model(store: Store) -> None:
    for i in range(5):
        store.insert(_rec(f"p{i}", model="acme/a" if i % 2 else "acme/b"))
    assert [r.id for r in store.page(None, 3)] == ["p4", "p3", "p2"]
    first = store.page(None, 2, model="acme/b")
    assert [r.id for r in first] == ["p4", "p2"]
    assert [r.id for r in store.page(first[-1].seq, 2, model="acme/b")] == ["p0"]
    assert store.run_counts() == {"acme/a": 2, "acme/b": 3}


def test_trainings_and_request_context(store: Store) -> None:
    store.insert(_rec("p", context={"api_token": "t", "region": "eu"}))
    store.insert(_rec("t", kind="training", destination="acme/tuned"))
    got = store.get("p")
    assert got is not None and got.kind == "prediction" and got.context == {"api_token": "t", "region": "eu"}
    trained = store.get("t")
    assert trained is not None and trained.kind == "training" and trained.destination == "acme/tuned"
    assert [r.id for r in store.page(None, 10, kind="training")] == ["t"]
    assert [r.id for r in store.page(None, 10, kind="prediction")] == ["p"]
    assert [r.id for r in store.page(None, 10)] == ["t", "p"]


def test_retrieval_sources_are_kept(store: Store) -> None:
    sources = [{"index": "docs", "version": 2, "document": "a.md", "chunk": 0, "score": 0.8, "text": "ñ"}]
    retrieval = {"index": "docs", "version": 2, "query": "q", "rewritten": False, "top_k": 4, "min_score": None}
    store.insert(_rec("r", sources=sources, retrieval=retrieval))
    got = store.get("r")
    assert got is not None and got.sources == sources and got.retrieval == retrieval


def test_updates_are_fenced_by_the_lease(store: Store) -> None:
    rec = _rec("f", lease_owner="me", lease_expires_at=time.time() + 10)
    store.insert(rec)
    rec.logs = "mine"
    assert store.update(rec, owner="me")
    assert not store.update(rec, owner="someone-else")  # another holder's write is refused
    assert store.get("f").logs == "mine"  # type: ignore[union-attr]


def test_claim_expired_takes_only_expired_leases_of_the_given_models(store: Store) -> None:
    now = time.time()
    store.insert(_rec("expired", lease_owner="dead", lease_expires_at=now - 1, status=PredictionStatus.PROCESSING))
    store.insert(_rec("live", lease_owner="alive", lease_expires_at=now + 60, status=PredictionStatus.PROCESSING))
    store.insert(_rec("no-lease"))
    store.insert(_rec("other", model="acme/other", lease_owner="dead", lease_expires_at=now - 1))
    store.insert(_rec("done", lease_owner="dead", lease_expires_at=now - 1, status=PredictionStatus.SUCCEEDED))
    store.insert(_rec("by-dead-owner", lease_owner="crashed", lease_expires_at=now + 60))
    claimed = store.claim_expired(["acme/echo"], "me", now, now + 20, dead_owners=("crashed",))
    assert [r.id for r in claimed] == ["expired", "no-lease", "by-dead-owner"]
    assert all(r.lease_owner == "me" and r.lease_expires_at == now + 20 for r in claimed)
    assert store.get("live").lease_owner == "alive"  # type: ignore[union-attr]
    assert store.claim_expired(["acme/echo"], "me", now, now + 20) == []  # nothing twice
    assert sorted(store.lease_owners()) == ["alive", "dead", "me"]  # "dead" still holds acme/other's


def test_renew_extends_only_the_owners_unfinished_leases(store: Store) -> None:
    store.insert(_rec("mine", lease_owner="me", lease_expires_at=1.0))
    store.insert(_rec("finished", lease_owner="me", lease_expires_at=1.0, status=PredictionStatus.FAILED))
    store.insert(_rec("theirs", lease_owner="them", lease_expires_at=1.0))
    assert store.renew_leases("me", 99.0) == 1
    assert store.get("mine").lease_expires_at == 99.0  # type: ignore[union-attr]
    assert store.get("theirs").lease_expires_at == 1.0  # type: ignore[union-attr]


def test_two_servers_never_claim_the_same_prediction(opener: Callable[[], Store]) -> None:
    """Two stores on one database (two servers) racing for 200 orphaned predictions."""
    seed = opener()
    for i in range(200):
        seed.insert(_rec(f"o{i}", lease_owner="dead", lease_expires_at=0.0))
    stores = [opener(), opener()]
    claims: dict[int, list[str]] = {0: [], 1: []}

    def race(i: int) -> None:
        for _ in range(20):
            now = time.time()
            claims[i] += [r.id for r in stores[i].claim_expired(["acme/echo"], f"s{i}", now, now + 60)]

    threads = [threading.Thread(target=race, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not set(claims[0]) & set(claims[1])
    assert sorted(claims[0] + claims[1]) == sorted(f"o{i}" for i in range(200))
    for i in range(200):
        owner = seed.get(f"o{i}").lease_owner  # type: ignore[union-attr]
        assert (owner == "s0") == (f"o{i}" in claims[0])  # the row says who claimed it


def test_retention_and_versions(store: Store) -> None:
    rec = _rec("r", status=PredictionStatus.SUCCEEDED, completed_at="2020-01-01T00:00:00+00:00")
    store.insert(rec)
    store.update(rec)
    assert store.remove_data_before("2021-01-01") == 1
    gone = store.get("r")
    assert gone is not None and gone.input is None and gone.run_input is None and gone.data_removed
    store.put_version(VersionRecord("acme/echo", "v1", "2026-01-01T00:00:00+00:00"))
    store.put_version(VersionRecord("acme/echo", "v1", "2030-01-01", openapi_schema={"a": 1}, info={"b": 2}))
    v = store.get_version("acme/echo", "v1")
    assert v is not None and v.created_at == "2026-01-01T00:00:00+00:00"  # first seen stays
    assert v.openapi_schema == {"a": 1} and v.info == {"b": 2}
    assert store.get_version("acme/echo", "v2") is None


def test_an_unusable_sqlite_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path / "dir.db")
    store = SQLiteStore(tmp_path / "ok.db")
    store.close()
    with pytest.raises(StoreError):
        store.get("x")  # a closed store fails as the store, not with sqlite3's own exception


def test_an_unreachable_postgres_is_a_store_error_naming_it_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(StoreError) as err:
        open_store(f"postgresql://cocina:s3cret@127.0.0.1:{port}/cocina")
    assert f"127.0.0.1:{port}" in str(err.value) and "s3cret" not in str(err.value)


def test_an_unknown_store_scheme_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="mysql://"):
        open_store("mysql://x@127.0.0.1/db")


def test_a_closed_postgres_store_fails_as_the_store(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.close()
    with pytest.raises(StoreError):
        store.get("x")


# ---- PostgreSQL only


def test_a_write_notifies_a_replica_watching_the_prediction(postgres_url: str) -> None:
    writer, follower = PostgresStore(postgres_url), PostgresStore(postgres_url)
    rec = _rec("n", lease_owner="w", lease_expires_at=time.time() + 30)
    writer.insert(rec)
    woke = threading.Event()
    others = threading.Event()
    unwatch = follower.watch("n", woke.set)
    follower.watch("another", others.set)
    assert follower._listener is not None and follower._listener.connected.wait(5)
    rec.logs = "hello"
    assert writer.update(rec, owner="w")
    assert woke.wait(2.0)  # told by the notification
    assert follower.get("n").logs == "hello"  # type: ignore[union-attr]
    assert not others.is_set()  # only the watchers of that prediction are called
    woke.clear()
    refused = PredictionRecord(**{**rec.__dict__, "logs": "not mine"})
    assert not writer.update(refused, owner="someone-else")  # a fenced-off write notifies no one
    assert not woke.wait(0.5)
    unwatch()
    rec.logs = "again"
    writer.update(rec, owner="w")
    assert not woke.wait(0.5)  # no longer watched
    writer.close()
    follower.close()


def test_a_write_postgres_refuses_fails_alone_in_its_batch(postgres_url: str) -> None:
    """One value the database refuses (out of its integer's range) spoils the batch's transaction: the batch is
    written again one write at a time, so only that write fails."""
    store = PostgresStore(postgres_url)
    bad = _rec("refused", attempts=2**40)
    results = store.write_many(
        [Write(_rec("ok-1"), insert=True), Write(bad, insert=True), Write(_rec("ok-2"), insert=True)]
    )
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], StoreError) and "out of range" in str(results[1])
    assert store.get("ok-1") is not None and store.get("ok-2") is not None and store.get("refused") is None
    store.close()


def test_a_batch_meeting_a_stopped_postgres_fails_whole_and_the_next_reconnects() -> None:
    with ThrowawayPostgres(fast=True) as pg:
        store = PostgresStore(pg.url)
        assert store.write_many([Write(_rec("before"), insert=True)]) == [True]
        pg.stop_server()
        with pytest.raises(StoreError, match="unavailable"):
            store.write_many([Write(_rec("during-1"), insert=True), Write(_rec("during-2"), insert=True)])
        pg.start_server()
        assert store.write_many([Write(_rec("after"), insert=True)]) == [True]
        assert store.get("during-1") is None and store.get("during-2") is None  # refused means not recorded
        store.close()


def test_postgres_restart_is_a_store_error_then_the_store_reconnects() -> None:
    with ThrowawayPostgres(fast=True) as pg:
        store = PostgresStore(pg.url)
        store.insert(_rec("before"))
        pg.stop_server()
        with pytest.raises(StoreError, match="unavailable"):
            store.insert(_rec("during"))
        with pytest.raises(StoreError):
            store.get("before")
        pg.start_server()
        assert store.get("before") is not None  # reconnected by the next call
        assert store.insert(_rec("after"))
        assert store.get("during") is None  # refused means not recorded
        store.close()


def test_concurrent_calls_from_threads(store: Store) -> None:
    """Serving makes its hot-path calls from a pool of threads: 8 threads writing at once lose nothing."""

    def work(k: int) -> None:
        for i in range(40):
            rec = _rec(f"t{k}-{i}", lease_owner="me", lease_expires_at=time.time() + 30)
            assert store.insert(rec)
            rec.status = PredictionStatus.PROCESSING
            assert store.update(rec, owner="me")
            rec.status, rec.output = PredictionStatus.SUCCEEDED, [f"t{k}-{i}"]
            assert store.update(rec, owner="me")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = store.page(None, 1000)
    assert len(records) == 320 and len({r.seq for r in records}) == 320
    assert all(r.status is PredictionStatus.SUCCEEDED and r.output == [r.id] for r in records)
