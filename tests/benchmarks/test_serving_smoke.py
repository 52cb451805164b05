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


def test_writing_the_serving_section_keeps_the_engine_sections_marker(tmp_path: Path) -> None:
    """The serving section ends where the engine section's start marker begins, not at its heading below it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("serving_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    serving = importlib.util.module_from_spec(spec)
    sys.modules["serving_bench"] = serving
    spec.loader.exec_module(serving)
    engine_section = "<!-- engine-benchmark:start -->\n## Engine\n\nengine table\n<!-- engine-benchmark:end -->\n"
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\n"
        + serving.SECTION
        + "\n\nintro\n\n<!-- serving-run:float32 -->\nold fp32\n<!-- /serving-run:float32 -->\n\n"
        + engine_section
    )
    block = "<!-- serving-run:bfloat16 -->\nnew bf16\n<!-- /serving-run:bfloat16 -->\n"
    serving.write_docs(block, "bfloat16", docs)
    text = docs.read_text()
    assert text.endswith(engine_section)
    assert text.count("<!-- engine-benchmark:start -->") == 1
    assert "new bf16" in text and "old fp32" in text
    assert text.index("new bf16") < text.index("old fp32") < text.index("<!-- engine-benchmark:start -->")
