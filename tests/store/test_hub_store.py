"""The hub's part of the store, on SQLite and on PostgreSQL alike: models, pushed versions (newest first, ties in
insertion order), unfinished predictions, a deployment's traffic, and deployments whose releases are numbered
atomically, also by two servers sharing one database."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import psycopg

from cocina.store import (
    DeploymentRecord,
    ModelRecord,
    PredictionRecord,
    PredictionStatus,
    Store,
    VersionRecord,
)

MANIFEST = [{"path": "predict.py", "size": 10, "sha256": "a" * 64, "executable": False}]
ENVIRONMENT = {"python": "/usr/bin/python3", "hash": "h", "installed": []}


def _config(version: str = "v1", weight: int = 100) -> dict[str, object]:
    return {"versions": [{"version": version, "weight": weight}], "min_instances": 0, "max_instances": 1}


def _sql(where: str, statement: str) -> None:
    """A statement run past the store (what another program, or a crash half-way, could leave behind)."""
    if "://" not in where:
        db = sqlite3.connect(where)
        db.execute(statement)
        db.commit()
        db.close()
        return
    with psycopg.connect(where, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def test_models_are_created_once_and_listed_by_name(store: Store) -> None:
    assert store.put_model(ModelRecord("acme/echo", "says it back", "public", "2026-01-01T00:00:00+00:00"))
    assert not store.put_model(ModelRecord("acme/echo", "another"))  # exists: nothing changed
    got = store.get_model("acme/echo")
    assert got == ModelRecord("acme/echo", "says it back", "public", "2026-01-01T00:00:00+00:00")
    assert store.get_model("acme/nope") is None
    for name in ("acme/ab", "acme/a-b", "Acme/z", "acme/B"):
        assert store.put_model(ModelRecord(name))
    # Ordered byte by byte as SQLite compares text, whatever PostgreSQL's collation would say.
    assert [m.name for m in store.list_models()] == ["Acme/z", "acme/B", "acme/a-b", "acme/ab", "acme/echo"]
    assert store.get_model("ACME/ECHO") is None  # names are case-sensitive
    assert store.delete_model("acme/ab") and not store.delete_model("acme/ab")
    assert "acme/ab" not in [m.name for m in store.list_models()]


def test_versions_newest_first_and_what_a_push_adds(store: Store) -> None:
    store.put_version(VersionRecord("acme/echo", "served", "2026-01-01T00:00:01+00:00"))  # from a directory
    store.put_version(
        VersionRecord(
            "acme/echo", "p1", "2026-01-01T00:00:02+00:00", {"s": 1}, manifest=MANIFEST, environment=ENVIRONMENT
        )
    )
    store.put_version(VersionRecord("acme/echo", "p2", "2026-01-01T00:00:02.5+00:00", manifest=MANIFEST))
    store.put_version(VersionRecord("acme/other", "p3", "2026-01-01T00:00:00+00:00", manifest=MANIFEST))
    assert [v.id for v in store.list_versions("acme/echo")] == ["p2", "p1", "served"]
    assert [v.id for v in store.list_versions("acme/echo", pushed_only=True)] == ["p2", "p1"]
    assert [v.id for v in store.list_versions(None, pushed_only=True)] == ["p2", "p1", "p3"]
    assert store.list_versions("acme/none") == []
    # Serving writing what it learnt at load (no manifest) keeps what the push recorded, and the creation time.
    store.put_version(VersionRecord("acme/echo", "p1", "2030-01-01", {"s": 2}, {"language_model": {"n": 1}}))
    got = store.get_version("acme/echo", "p1")
    assert got is not None and got.manifest == MANIFEST and got.environment == ENVIRONMENT
    assert (got.created_at, got.openapi_schema, got.info) == (
        "2026-01-01T00:00:02+00:00",
        {"s": 2},
        {"language_model": {"n": 1}},
    )
    served = store.get_version("acme/echo", "served")
    assert served is not None and served.manifest is None and served.environment is None
    assert store.delete_version("acme/echo", "p2") and not store.delete_version("acme/echo", "p2")
    assert [v.id for v in store.list_versions("acme/echo")] == ["p1", "served"]
    assert store.get_version("acme/echo", "p2") is None


def test_versions_created_at_the_same_time_list_the_later_insert_first(store: Store) -> None:
    same = "2026-01-01T00:00:00+00:00"
    for vid in ("b", "c", "a"):
        store.put_version(VersionRecord("acme/echo", vid, same, manifest=MANIFEST))
    store.put_version(VersionRecord("acme/echo", "b", same, {"updated": True}))  # an update keeps its place
    assert [v.id for v in store.list_versions("acme/echo")] == ["a", "c", "b"]


def _rec(pid: str, **kw: object) -> PredictionRecord:
    fields: dict[str, object] = {"model": "acme/echo", "version": "v1", "input": {}, **kw}
    return PredictionRecord(id=pid, **fields)  # type: ignore[arg-type]


def test_unfinished_predictions_by_model_and_version(store: Store) -> None:
    store.insert(_rec("s"))  # starting
    store.insert(_rec("p", status=PredictionStatus.PROCESSING, version="v2"))
    store.insert(_rec("done", status=PredictionStatus.SUCCEEDED))
    store.insert(_rec("gone", status=PredictionStatus.CANCELED, version="v2"))
    store.insert(PredictionRecord(id="o", model="acme/other", version="v1", input={}))
    assert store.count_unfinished("acme/echo") == 2
    assert store.count_unfinished("acme/echo", "v1") == 1 and store.count_unfinished("acme/echo", "v2") == 1
    assert store.count_unfinished("acme/echo", "v9") == 0 and store.count_unfinished("acme/none") == 0


def test_a_deployments_predictions_newest_first_with_their_release(store: Store) -> None:
    for i in range(5):
        store.insert(_rec(f"d{i}", deployment="acme/prod", release=1 + i // 3))
    store.insert(_rec("direct"))
    store.insert(_rec("elsewhere", deployment="acme/staging", release=1))
    traffic = store.of_deployment("acme/prod")
    assert [r.id for r in traffic] == ["d4", "d3", "d2", "d1", "d0"]
    assert [r.release for r in traffic] == [2, 2, 1, 1, 1]
    assert [r.id for r in store.of_deployment("acme/prod", 2)] == ["d4", "d3"]
    assert store.of_deployment("acme/none") == []
    assert store.get("direct").release is None  # type: ignore[union-attr]


def test_deployments_and_their_numbered_releases(store: Store) -> None:
    assert store.create_deployment(
        DeploymentRecord("acme/prod", "acme/echo", "2026-01-01T00:00:00+00:00"), _config(), "ana"
    )
    assert not store.create_deployment(DeploymentRecord("acme/prod", "acme/other"), _config("v9"), "bob")  # taken
    dep = store.get_deployment("acme/prod")
    assert dep is not None and (dep.name, dep.model, dep.created_at) == (
        "acme/prod",
        "acme/echo",
        "2026-01-01T00:00:00+00:00",
    )
    first = dep.current_release
    assert first is not None and (first.number, first.configuration, first.created_by) == (1, _config(), "ana")
    assert first.created_at == "2026-01-01T00:00:00+00:00"
    second = store.add_release("acme/prod", _config("v2"), "bob")
    assert (second.number, second.deployment, second.created_by) == (2, "acme/prod", "bob")
    assert store.add_release("acme/prod", _config("v3", 100), None).number == 3
    releases = store.list_releases("acme/prod")
    assert [r.number for r in releases] == [3, 2, 1]  # newest first
    assert releases[1].configuration == _config("v2") and releases[0].created_by is None
    current = store.get_deployment("acme/prod")
    assert current is not None and current.current_release == releases[0]
    assert store.get_deployment("acme/none") is None and store.list_releases("acme/none") == []

    assert store.create_deployment(DeploymentRecord("acme/b-side", "acme/other"), _config(), None)
    assert store.create_deployment(DeploymentRecord("Acme/zed", "acme/echo"), _config(), None)
    assert [d.name for d in store.list_deployments()] == ["Acme/zed", "acme/b-side", "acme/prod"]
    by_model = store.list_deployments("acme/echo")
    assert [(d.name, d.current_release.number if d.current_release else 0) for d in by_model] == [
        ("Acme/zed", 1),
        ("acme/prod", 3),
    ]
    assert store.list_deployments("acme/none") == []

    assert store.delete_deployment("acme/prod") and not store.delete_deployment("acme/prod")
    assert store.get_deployment("acme/prod") is None and store.list_releases("acme/prod") == []
    # The name is free again, and its releases count from 1.
    assert store.create_deployment(DeploymentRecord("acme/prod", "acme/echo"), _config(), None)
    again = store.get_deployment("acme/prod")
    assert again is not None and again.current_release is not None and again.current_release.number == 1


def test_creating_a_deployment_is_all_or_nothing(store: Store, where: str) -> None:
    # A release left behind for a name (by hand, or a crash of an older program) makes release 1 collide: the
    # deployment row written before it in the same transaction must go too.
    _sql(
        where,
        "INSERT INTO releases (deployment, number, created_at, configuration) "
        "VALUES ('acme/stray', 1, '2026-01-01T00:00:00+00:00', '{}')",
    )
    assert not store.create_deployment(DeploymentRecord("acme/stray", "acme/echo"), _config(), None)
    assert store.get_deployment("acme/stray") is None
    assert [r.configuration for r in store.list_releases("acme/stray")] == [{}]  # untouched


def test_two_servers_number_releases_without_gaps_or_twins(opener: Callable[[], Store]) -> None:
    stores = [opener(), opener()]
    assert stores[0].create_deployment(DeploymentRecord("acme/prod", "acme/echo"), _config(), None)
    numbers: list[list[int]] = [[], []]

    def release(i: int) -> None:
        for k in range(15):
            numbers[i].append(stores[i].add_release("acme/prod", _config(f"s{i}-{k}"), f"server-{i}").number)

    threads = [threading.Thread(target=release, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers[0] + numbers[1]) == list(range(2, 32))
    assert numbers[0] == sorted(numbers[0]) and numbers[1] == sorted(numbers[1])
    assert [r.number for r in stores[1].list_releases("acme/prod")] == list(range(31, 0, -1))


def test_two_servers_creating_one_deployment_create_it_once(opener: Callable[[], Store]) -> None:
    stores = [opener(), opener()]
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def create(i: int) -> None:
        barrier.wait()
        results.append(stores[i].create_deployment(DeploymentRecord("acme/race", f"acme/m{i}"), _config(), None))

    threads = [threading.Thread(target=create, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert [r.number for r in stores[0].list_releases("acme/race")] == [1]
