"""Smoke test of benchmarks/serving.py: the script runs end to end at tiny scale and reports real figures.

`--quick` uses a tiny model, two small concurrency levels, no baselines and no docs; the servers are real
`cocina serve` subprocesses on 127.0.0.1, so the script's start/wait/load/stop path and the echo measurement are
exercised on every test run and cannot rot.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "serving.py"


def _positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.mark.timeout(180)
def test_quick_run_reports_cocina_and_echo_figures(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=150,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)

    cocina = report["systems"]["cocina"]
    assert cocina["status"] == "ok", cocina["status"]
    assert set(cocina["levels"]) == {"1", "4"}
    for level in cocina["levels"].values():
        assert level["failed"] == 0 and level["completed"] == level["requests"] > 0
        assert level["mean_output_tokens"] == report["config"]["output_len"]  # EOS ignored: exact lengths
        assert _positive(level["output_tok_s"])
        for metric in ("ttft_ms", "e2el_ms"):
            assert _positive(level[metric]["p50"]) and _positive(level[metric]["p99"])
    assert "seed" not in report["systems"] and "transformers" not in report["systems"]  # quick: no baselines

    echo = report["echo"]
    assert _positive(echo["http_p50_ms"]) and _positive(echo["direct_predict_p50_ms"])
    assert echo["added_p50_ms"] == pytest.approx(echo["http_p50_ms"] - echo["direct_predict_p50_ms"], abs=0.01)
    assert isinstance(echo["pass"], bool)

    targets = report["targets"]
    assert targets["level"] == 32 and targets["echo_added_p50_ms"]["target"] == 3.0
    assert report["config"]["quick"] is True  # and so docs/benchmarks.md was not written
