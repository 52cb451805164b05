"""`cocina push`, `versions`, `deployments` and `models` as a user runs them: on the local hub ($COCINA_HOME),
and on a live server by URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.conftest import start_server

PREDICT = """
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="what to echo"){extra}) -> str:
        return text
"""


def _project(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(PREDICT.format(extra=extra))
    (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    return root


@pytest.fixture
def cocina(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "COCINA_HOME": str(tmp_path / "home")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cocina.cli", *args], capture_output=True, text=True, timeout=120, env=env
        )

    return run


def test_push_to_the_local_hub_versions_and_deployments(cocina, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one = _project(tmp_path / "p")
    first = cocina("push", "acme/echo", "--dir", str(one))
    assert first.returncode == 0, first.stderr
    assert "new version" in first.stderr and 'replicate.Client(base_url="http://127.0.0.1:5000"' in first.stdout
    again = json.loads(cocina("push", "acme/echo", "--dir", str(one), "--json").stdout)
    assert again["created"] is False and again["uploaded_bytes"] == 0
    a = again["id"]
    compatible = _project(tmp_path / "p", extra=", shout: bool = Input(default=False)")
    b = json.loads(cocina("push", "acme/echo", "--dir", str(compatible), "--json").stdout)["id"]
    versions = json.loads(cocina("versions", "list", "acme/echo", "--json").stdout)
    assert [v["id"] for v in versions] == [b, a]
    diff = cocina("versions", "diff", "acme/echo", a[:10], b[:10])
    assert diff.returncode == 0 and "added shout: optional" in diff.stdout
    breaking = _project(tmp_path / "p", extra=", level: int = Input()")
    c = json.loads(cocina("push", "acme/echo", "--dir", str(breaking), "--json").stdout)["id"]
    diff = cocina("versions", "diff", "acme/echo", b, c)
    assert diff.returncode == 1 and "BREAKING added level" in diff.stdout

    made = cocina(
        "deployments", "create", "acme/prod", "--model", "acme/echo", "--versions", f"{a[:12]}=90,{b[:12]}=10"
    )
    assert made.returncode == 0, made.stderr
    assert f"release 1: {a[:12]}=90%, {b[:12]}=10%" in made.stdout
    bad = cocina("deployments", "update", "acme/prod", "--versions", f"{a}=50,{b}=20")
    assert bad.returncode == 1 and "sum to 100; they sum to 70" in bad.stderr and "Traceback" not in bad.stderr
    assert cocina("deployments", "update", "acme/prod", "--versions", c).returncode == 0
    assert cocina("deployments", "rollback", "acme/prod").returncode == 0
    got = json.loads(cocina("deployments", "get", "acme/prod", "--json").stdout)
    assert [r["number"] for r in got["releases"]] == [3, 2, 1]
    assert got["current_release"]["configuration"]["versions"][0] == {"version": a, "weight": 90}
    refused = cocina("versions", "delete", "acme/echo", a)
    assert refused.returncode == 1 and "in use by deployment acme/prod" in refused.stderr
    models = json.loads(cocina("models", "list", "--json").stdout)
    assert [(m["owner"], m["name"]) for m in models] == [("acme", "echo")]


def test_a_broken_project_is_refused_before_anything_is_sent(cocina, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = _project(tmp_path / "bad")
    (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\nbuidl:\n  gpu: true\n')
    result = cocina("push", "acme/bad", "--dir", str(root))
    assert result.returncode == 1 and "buidl" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home" / "hub").exists()


def test_push_to_a_server_by_url(cocina, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(tmp_path / "data", hub=True, wait=None)
    try:
        result = cocina("push", f"{srv.url}/acme/remote", "--dir", str(_project(tmp_path / "p")))
        assert result.returncode == 0, result.stderr
        assert f'replicate.Client(base_url="{srv.url}"' in result.stdout
        listed = json.loads(cocina("models", "list", "--url", srv.url, "--json").stdout)
        assert [m["name"] for m in listed] == ["remote"]
        gone = cocina("models", "list", "--url", "http://127.0.0.1:9")  # nothing listens there
        assert gone.returncode == 1 and "cannot reach" in gone.stderr
    finally:
        srv.stop()


def test_compare_and_stats_on_the_local_hub(cocina, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = json.loads(cocina("push", "acme/echo", "--dir", str(_project(tmp_path / "a")), "--json").stdout)["id"]
    shout = _project(tmp_path / "b")
    (shout / "predict.py").write_text(PREDICT.format(extra="").replace("return text", "return text.upper()"))
    b = json.loads(cocina("push", "acme/echo", "--dir", str(shout), "--json").stdout)["id"]
    made = cocina("deployments", "create", "acme/ab", "--model", "acme/echo", "--versions", f"{a}=70,{b}=30")
    assert made.returncode == 0, made.stderr
    data = tmp_path / "data.jsonl"
    lines: list[dict[str, object]] = []
    for i in range(3):
        sentence = f"sentence number {i} of the test"
        lines += [{"input": {"text": sentence}, "reference": sentence}, {"text": "a flat example, no reference"}]
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    out = cocina("deployments", "compare", "acme/ab", "--data", str(data), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert list(report["versions"]) == [a, b]  # the heaviest first: the baseline the others are compared with
    assert report["versions"][a]["bleu"] == 100.0 and report["versions"][b]["bleu"] < 100.0
    assert report["versions"][a]["examples"] == 6
    shown = cocina("deployments", "compare", "acme/ab", "--data", str(data))
    assert shown.returncode == 0 and f"{b[:12]} vs {a[:12]}: BLEU -" in shown.stdout and "chrF" in shown.stdout
    stats = cocina("deployments", "stats", "acme/ab")
    assert stats.returncode == 0 and "0 predictions" in stats.stdout  # compare is not live traffic
    data.write_text('{"text": "fine"}\n{"text": \n')
    broken = cocina("deployments", "compare", "acme/ab", "--data", str(data))
    assert broken.returncode == 1 and f"{data}, line 2: not JSON" in broken.stderr and "Traceback" not in broken.stderr
    missing = cocina("deployments", "compare", "acme/ab", "--data", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    unknown = cocina("deployments", "stats", "acme/none")
    assert unknown.returncode == 1 and "acme/none" in unknown.stderr
