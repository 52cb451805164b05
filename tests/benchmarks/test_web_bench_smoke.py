"""Smoke test of benchmarks/web.py: it runs end to end at small scale (a real `cocina serve` with an API token,
two `cocina push`es, headless Chromium signing in, visiting each page and streaming the demo model's answer) and
its docs section renders every figure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.web import SECTION, render  # noqa: E402


@pytest.mark.timeout(400)
def test_quick_run(tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("no chromium: run scripts/install-browser.sh (Debian's chromium package)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    out = tmp_path / "report.json"
    script = str(ROOT / "benchmarks" / "web.py")
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--no-docs", "--workdir", str(tmp_path), "--json-out", str(out)],
        capture_output=True,
        text=True,
        timeout=380,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["pages"]) == {"/", "/acme/echo", "/acme/kitchen", "/cocina/demo", "/acme/notes"}
    for figures in report["pages"].values():
        assert 0 < figures["transfer_bytes"] <= 150 * 1024 and figures["interactive_ms_p50"] > 0
    assert report["first_token"]["first_before_done"] is True
    assert len(report["versions"]) == 2
    section = render(report)
    assert section.startswith(SECTION) and "first token on the page" in section
    assert all(t["pass"] for t in report["targets"].values()), report["targets"]
