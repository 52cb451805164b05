"""benchmarks/rag.py runs: its metrics and the quality pieces on tiny data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("rag_bench", Path(__file__).parents[2] / "benchmarks" / "rag.py")
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_scores() -> None:
    queries = [("a", {0}), ("b", {1, 2})]
    assert bench.scores([[0, 5], [2, 9, 1]], queries) == {"recall@5": 1.0, "mrr@10": 1.0}
    assert bench.scores([[5, 0], [9, 9]], queries) == {"recall@5": 0.5, "mrr@10": 0.25}


def test_the_labelled_set_ships_offline() -> None:
    docs, queries = bench.load_pairs("spanish")
    assert len(docs) > 100 and len(queries) > 100
    assert all(rel and max(rel) < len(docs) for _, rel in queries)


def test_speed_runs_small() -> None:
    out = bench.speed(2000)
    assert out["index_chunks"] > 0 and out["query_p50_ms"] > 0
