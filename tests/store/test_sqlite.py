"""The SQLite store: migrations (a pre-migration database included), records, leases and fencing, versions."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from cocina.store import PredictionRecord, PredictionStatus, SQLiteStore, StoreError, VersionRecord

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


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "p.db")


def _rec(pid: str, model: str = "acme/echo", **kw: object) -> PredictionRecord:
    return PredictionRecord(id=pid, model=model, version="v1", input={"text": pid}, run_input={"text": pid}, **kw)  # type: ignore[arg-type]


def test_a_database_from_before_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(LEGACY_SCHEMA)
    db.execute(
        "INSERT INTO predictions (id, status, surface, input, created_at, metrics) VALUES (?, ?, ?, ?, ?, ?)",
        ("old", "processing", "cog", '{"text": "x"}', "2026-01-01T00:00:00+00:00", '{"predict_time": 1}'),
    )
    db.commit()
    db.close()
    store = SQLiteStore(path)
    old = store.get("old")
    assert old is not None and old.input == {"text": "x"} and old.metrics == {"predict_time": 1}
    assert old.model is None and old.source == "api" and old.lease_owner is None
    assert old.kind == "prediction" and old.destination is None and old.context == {}
    assert store.adopt_unowned("acme/echo") == 1
    assert store.get("old").model == "acme/echo"  # type: ignore[union-attr]
    store.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"predictions", "versions", "alembic_version"} <= tables
    SQLiteStore(path).close()  # opening it again migrates nothing and loses nothing


def test_insert_get_update_and_duplicates(store: SQLiteStore) -> None:
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


def test_page_newest_first_by_model(store: SQLiteStore) -> None:
    for i in range(5):
        store.insert(_rec(f"p{i}", model="acme/a" if i % 2 else "acme/b"))
    assert [r.id for r in store.page(None, 3)] == ["p4", "p3", "p2"]
    first = store.page(None, 2, model="acme/b")
    assert [r.id for r in first] == ["p4", "p2"]
    assert [r.id for r in store.page(first[-1].seq, 2, model="acme/b")] == ["p0"]
    assert store.run_counts() == {"acme/a": 2, "acme/b": 3}


def test_trainings_and_request_context(store: SQLiteStore) -> None:
    store.insert(_rec("p", context={"api_token": "t", "region": "eu"}))
    store.insert(_rec("t", kind="training", destination="acme/tuned"))
    got = store.get("p")
    assert got is not None and got.kind == "prediction" and got.context == {"api_token": "t", "region": "eu"}
    trained = store.get("t")
    assert trained is not None and trained.kind == "training" and trained.destination == "acme/tuned"
    assert [r.id for r in store.page(None, 10, kind="training")] == ["t"]
    assert [r.id for r in store.page(None, 10, kind="prediction")] == ["p"]
    assert [r.id for r in store.page(None, 10)] == ["t", "p"]


def test_updates_are_fenced_by_the_lease(store: SQLiteStore) -> None:
    rec = _rec("f", lease_owner="me", lease_expires_at=time.time() + 10)
    store.insert(rec)
    rec.logs = "mine"
    assert store.update(rec, owner="me")
    assert not store.update(rec, owner="someone-else")  # another holder's write is refused
    assert store.get("f").logs == "mine"  # type: ignore[union-attr]


def test_claim_expired_takes_only_expired_leases_of_the_given_models(store: SQLiteStore) -> None:
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


def test_renew_extends_only_the_owners_unfinished_leases(store: SQLiteStore) -> None:
    store.insert(_rec("mine", lease_owner="me", lease_expires_at=1.0))
    store.insert(_rec("finished", lease_owner="me", lease_expires_at=1.0, status=PredictionStatus.FAILED))
    store.insert(_rec("theirs", lease_owner="them", lease_expires_at=1.0))
    assert store.renew_leases("me", 99.0) == 1
    assert store.get("mine").lease_expires_at == 99.0  # type: ignore[union-attr]
    assert store.get("theirs").lease_expires_at == 1.0  # type: ignore[union-attr]


def test_two_servers_never_claim_the_same_prediction(tmp_path: Path) -> None:
    """Two stores on one file (two servers on one machine) racing for 200 orphaned predictions."""
    path = tmp_path / "shared.db"
    seed = SQLiteStore(path)
    for i in range(200):
        seed.insert(_rec(f"o{i}", lease_owner="dead", lease_expires_at=0.0))
    seed.close()
    stores = [SQLiteStore(path), SQLiteStore(path)]
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
    for s in stores:
        s.close()


def test_retention_and_versions(store: SQLiteStore) -> None:
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


def test_an_unusable_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError):
        SQLiteStore(tmp_path / "dir.db")
    store = SQLiteStore(tmp_path / "ok.db")
    store.close()
    with pytest.raises(StoreError):
        store.get("x")  # a closed store fails as the store, not with sqlite3's own exception
