"""Smoke test of benchmarks/guard.py: every part runs end to end at tiny scale (scanners, audit appends, proofs,
the guard's own work, and two real `cocina serve` processes with and without the guard, the guarded one with an
API key made by `cocina keys`), and its docs section renders each row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.guard import SECTION, render  # noqa: E402


@pytest.mark.timeout(300)
def test_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "guard.py"), "--quick", "--no-docs", "--workdir", str(tmp_path),
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=280, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["scanners"]["p50_ms"] > 0 and report["scanners"]["prompt_bytes"] >= 1000
    assert report["appends"]["appends"] > 0 and report["appends"]["checkpoints"] >= 0
    assert report["proofs"]["entries"] == 5000 and report["proofs"]["proof_length"] == 13
    assert report["work"]["per_request_ms"] > 0
    st = report["stream"]
    assert st["median_tok_s"]["guard"] > 0 and st["median_tok_s"]["no-guard"] > 0
    assert st["audit_entries_after_last_round"] >= 16  # every streamed request of the guarded server was audited
    assert len(st["paired_costs_pct"]) == 1 and st["spread_pct"] is None
    assert report["targets"]["guard_cost_resolved"] is False  # one round cannot resolve a 5% difference
    # The same bursts in CPU time, the whole process group and the server's main process apart from the engine.
    assert all(v[0] > 0 for v in st["cpu_ms_per_token"].values()) and len(st["paired_cpu_costs_pct"]) == 1
    assert all(v[0] > 0 for v in st["server_cpu_ms_per_token"].values())
    main, group = st["server_cpu_ms_per_token"]["guard"], st["cpu_ms_per_token"]["guard"]
    assert all(m <= g for m, g in zip(main, group, strict=True))  # the main process is part of its group
    assert report["targets"]["guard_server_cpu_cost_resolved"] is False and st["server_cpu_spread_pct"] is None
    section = render(report)
    assert section.startswith(SECTION) and section.count("\n| ") == 9  # header, rule, seven measures
    assert section.count("not resolved: one round") == 3  # the three readings of the stream bursts
