"""Smoke test of benchmarks/rag.py: it runs end to end at tiny scale (`--quick`: a two-document build, a
2000-chunk index opened in a fresh process and queried, three Spanish questions through a real `cocina serve`
with the demo model and the `openai` client) and its docs section renders every figure; its metrics are right on
hand-made rankings, and the labelled set ships offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import rag as bench  # noqa: E402


def test_scores() -> None:
    queries: list[tuple[str, set[int]]] = [("a", {0}), ("b", {1, 2})]
    assert bench.scores([[0, 5], [2, 9, 1]], queries) == {"recall@5": 1.0, "mrr@10": 1.0}
    assert bench.scores([[5, 0], [9, 9]], queries) == {"recall@5": 0.5, "mrr@10": 0.25}


def test_the_labelled_set_ships_offline() -> None:
    docs, queries = bench.load_pairs("spanish")
    assert len(docs) > 100 and len(queries) > 100
    assert all(rel and max(rel) < len(docs) for _, rel in queries)
    indexed, items = bench.question_set("spanish", 5, distractors=10)
    assert len(items) == 5 and all(any(a in indexed for a in answers) for _, answers in items)


@pytest.mark.timeout(180)
def test_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rag.py"), "--quick", "--workdir", str(tmp_path / "w"),
         "--json-out", str(out)],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["build"]["chunks"] > 0 and report["build"]["chunks_per_s"] > 0
    large = report["large"]
    assert large["chunks"] == 2000 and large["vector_bytes"] == 2000 * 384 * 4
    assert large["rss_growth_bytes"] > large["vector_bytes"] and large["disk_bytes"] > large["vector_bytes"]
    assert 0 < large["search_p50_ms"] <= large["query_p50_ms"]
    e2e = report["end_to_end"]
    assert e2e["model"] == "cocina/demo" and "--rag bench/LANG=qa-LANG:top_k=3" in e2e["command"]
    spanish = e2e["spanish"]
    assert spanish["questions"] == 3 and spanish["errors"] == 0
    assert spanish["any_source_has_answer"] > 0 and all(x["sources"] == 3 for x in spanish["examples"])
    section = bench.render(report)
    assert section.startswith(bench.SECTION)
    assert "chunks/s" in section and f"{large['query_p50_ms']:.1f}" in section and "cocina/demo" in section
    assert "AVX512-BF16" in section
