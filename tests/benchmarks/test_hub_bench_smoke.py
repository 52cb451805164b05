"""Smoke test of benchmarks/hub.py: it runs end to end at small scale against a real `cocina serve` (a 20 MB
first push, unchanged re-pushes with the real CLI, a satisfied environment, a 50/50 deployment against the
version directly) and its docs section renders every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.hub import SECTION, render  # noqa: E402


@pytest.mark.timeout(300)
def test_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    script = str(ROOT / "benchmarks" / "hub.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--no-docs", "--workdir", str(tmp_path), "--json-out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    push = report["push"]
    assert push["first"]["uploaded_bytes"] >= 20 * 2**20 and push["first"]["upload_mb_s"] > 0
    assert push["repush"]["uploaded_bytes"] == 0 and push["repush_rehash"]["uploaded_bytes"] == 0
    env = report["environment"]
    assert env["installed"] == [] and env["server_python"] is True
    dep = report["deployment"]
    assert dep["failed"] == 0 and dep["direct_p50_ms"] > 0 and dep["deployment_p50_ms"] > 0
    assert set(report["targets"]) == {
        "repush_uploaded_bytes",
        "repush_wall_s",
        "first_push_upload_mb_s",
        "satisfied_environment_s",
        "deployment_added_p50_ms",
    }
    section = render(report)
    assert section.startswith(SECTION)
    assert f"{dep['deployment_p50_ms']:.3f} ms" in section and "re-push unchanged" in section
