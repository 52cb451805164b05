"""Smoke test of benchmarks/serving_core.py: it runs end to end at tiny scale against real `cocina serve`
processes (the echo predictor; a tiny language model, cold then warm) and reports real figures; and its docs
section renders every row it measured."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_core import SECTION, render  # noqa: E402


@pytest.mark.timeout(300)
def test_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "serving_core.py"),
            "--quick",
            "--no-docs",
            "--skip-baselines",
            "--workdir",
            str(tmp_path),
            "--json-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    echo = report["echo"]["systems"]["cocina"]
    assert "status" not in echo, echo
    assert echo["c1"]["ok"] == 100 and echo["c1"]["refused"] == 0 and echo["c1"]["p50_ms"] > 0
    if shutil.which("wrk"):
        assert echo["c32"]["ok_per_s"] > 0 and echo["c32"]["refused"] == 0
    else:
        assert "not installed" in report["echo"]["wrk"]
    llm = report["llm"]["systems"]["cocina"]
    assert llm["c1"]["failed"] == 0 and llm["c1"]["output_tok_s"] > 0
    assert llm["c32"]["failed"] == 0 and llm["c32"]["output_tok_s"] > 0
    for row in report["cold_start"].values():
        assert "status" not in row, row
        assert row["cold_first_token_s"] > row["warm_first_token_s"] > 0  # the first one loaded the model
    section = render(report)
    assert section.startswith(SECTION) and "| cocina |" in section and "Cold start" in section
    assert "echo_added_p50_ms_c1" in section
