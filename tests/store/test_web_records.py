"""The web page's records, on SQLite and on PostgreSQL alike: history filters, shares (digests, revocation),
examples (one default, also with two servers setting it at once), and retention that spares examples and open
shares; migration 0006 down and up."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cocina.store import ExampleRecord, PredictionRecord, PredictionStatus, ShareRecord, Store, open_store
from tests.store.test_stores import _tables


def _rec(pid: str, **kw: object) -> PredictionRecord:
    fields: dict[str, object] = {"model": "acme/echo", "version": "v1", "input": {"text": pid}, **kw}
    return PredictionRecord(id=pid, **fields)  # type: ignore[arg-type]


def test_history_filters_by_version_status_source_and_principal(store: Store) -> None:
    store.insert(_rec("a", source="web", principal="k1"))
    store.insert(_rec("b", version="v2", status=PredictionStatus.FAILED))
    store.insert(_rec("c", source="web", status=PredictionStatus.FAILED, principal="k2"))
    store.insert(_rec("d", model="acme/other", source="web"))
    assert [r.id for r in store.page(None, 10, model="acme/echo", source="web")] == ["c", "a"]
    assert [r.id for r in store.page(None, 10, model="acme/echo", status="failed")] == ["c", "b"]
    assert [r.id for r in store.page(None, 10, model="acme/echo", version="v2")] == ["b"]
    assert [r.id for r in store.page(None, 10, principal="k1")] == ["a"]
    assert [r.id for r in store.page(None, 10, model="acme/echo", source="web", status="failed")] == ["c"]
    assert store.page(None, 10, model="acme/echo", version="v3") == []


def test_shares_are_found_by_digest_listed_and_revoked_once(store: Store) -> None:
    store.insert(_rec("a"))
    assert store.put_share(ShareRecord("s1", "a", "d" * 64, created_at="2026-01-01T00:00:00+00:00"))
    assert store.put_share(ShareRecord("s2", "a", "e" * 64, created_at="2026-01-02T00:00:00+00:00"))
    assert not store.put_share(ShareRecord("s3", "a", "d" * 64))  # the same digest: refused, nothing written
    assert not store.put_share(ShareRecord("s1", "a", "f" * 64))  # the same id
    found = store.find_share("d" * 64)
    assert found is not None and found.id == "s1" and found.prediction_id == "a" and found.revoked_at is None
    assert [s.id for s in store.list_shares("a")] == ["s2", "s1"]
    assert store.revoke_share("s1", "2026-02-01T00:00:00+00:00")
    assert not store.revoke_share("s1", "2026-03-01T00:00:00+00:00")  # revoked once: the first time stays
    assert store.get_share("s1").revoked_at == "2026-02-01T00:00:00+00:00"  # type: ignore[union-attr]
    assert not store.revoke_share("nope", "2026-02-01")
    assert store.find_share("0" * 64) is None and store.get_share("nope") is None


def test_examples_have_one_default(store: Store) -> None:
    for pid in ("a", "b", "c"):
        store.insert(_rec(pid))
    assert store.put_example(ExampleRecord("acme/echo", "a", created_at="2026-01-01"))
    assert store.put_example(ExampleRecord("acme/echo", "b", is_default=True, created_at="2026-01-02"))
    assert not store.put_example(ExampleRecord("acme/echo", "b"))  # once only
    assert store.put_example(ExampleRecord("acme/echo", "c", created_at="2026-01-03"))
    assert [(e.prediction_id, e.is_default) for e in store.list_examples("acme/echo")] == [
        ("b", True),
        ("c", False),
        ("a", False),
    ]
    assert store.set_default_example("acme/echo", "a")
    assert [e.prediction_id for e in store.list_examples("acme/echo") if e.is_default] == ["a"]
    assert store.put_example(ExampleRecord("acme/echo", "x", is_default=True))  # a new default replaces it
    assert [e.prediction_id for e in store.list_examples("acme/echo") if e.is_default] == ["x"]
    assert not store.set_default_example("acme/echo", "nope")
    assert store.delete_example("acme/echo", "x") and not store.delete_example("acme/echo", "x")
    assert store.list_examples("acme/other") == []


def test_retention_spares_examples_and_open_shares(store: Store) -> None:
    old = "2020-01-01T00:00:00+00:00"
    for pid in ("plain", "example", "shared", "revoked", "expired"):
        rec = _rec(pid, status=PredictionStatus.SUCCEEDED, completed_at=old, output="x")
        store.insert(rec)
        store.update(rec)
    store.put_example(ExampleRecord("acme/echo", "example"))
    store.put_share(ShareRecord("s1", "shared", "1" * 64))
    store.put_share(ShareRecord("s2", "revoked", "2" * 64, revoked_at="2021-01-01T00:00:00+00:00"))
    store.put_share(ShareRecord("s3", "expired", "3" * 64, expires_at="2021-01-01T00:00:00+00:00"))
    assert store.remove_data_before("2021-01-01") == 3
    kept = {pid: not store.get(pid).data_removed for pid in ("plain", "example", "shared", "revoked", "expired")}  # type: ignore[union-attr]
    assert kept == {"plain": False, "example": True, "shared": True, "revoked": False, "expired": False}


def test_equal_creation_times_list_the_later_insert_first(store: Store) -> None:
    same = "2026-01-01T00:00:00+00:00"
    for sid, digest in (("s-b", "b"), ("s-c", "c"), ("s-a", "a")):
        assert store.put_share(ShareRecord(sid, "p", digest * 64, created_at=same))
    store.revoke_share("s-b", "2026-02-01")  # an update keeps its place
    assert [s.id for s in store.list_shares("p")] == ["s-a", "s-c", "s-b"]
    for pid in ("b", "c", "a"):
        assert store.put_example(ExampleRecord("acme/echo", pid, created_at=same))
    store.set_default_example("acme/echo", "c")
    store.set_default_example("acme/echo", "b")
    assert [e.prediction_id for e in store.list_examples("acme/echo")] == ["b", "a", "c"]


def test_two_servers_setting_defaults_leave_one(opener: Callable[[], Store]) -> None:
    stores = [opener(), opener()]
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            for k in range(10):
                stores[i].put_example(ExampleRecord("acme/echo", f"s{i}-{k}", is_default=True))
                stores[i].set_default_example("acme/echo", f"s{1 - i}-{k}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    examples = stores[0].list_examples("acme/echo")
    assert len(examples) == 20 and sum(e.is_default for e in examples) == 1


def test_migration_0006_goes_down_and_up_again(where: str) -> None:
    import sqlalchemy
    from alembic import command
    from alembic.config import Config

    from cocina.store.migrate import _SCRIPTS
    from cocina.store.postgres import sqlalchemy_url

    open_store(where).close()
    url = sqlalchemy_url(where) if "://" in where else f"sqlite:///{where}"
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("sqlalchemy.url", url)
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005_rag")
    engine.dispose()
    tables = _tables(where)
    assert "shares" not in tables and "examples" not in tables and "predictions" in tables
    store = open_store(where)  # upgraded to the head again
    assert store.put_share(ShareRecord("s1", "a", "1" * 64))
    assert store.put_example(ExampleRecord("acme/echo", "a", is_default=True))
    store.close()
