"""`cocina build --target onprem`, checked by the real tools: docker-compose config, systemd-analyze verify (no
warnings) and security (exposure below 5), promtool check config / check rules / test rules; the Grafana
dashboard's structure (its queries are run against a real Prometheus in test_monitoring_live.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cocina.deploy.build import Target, build
from cocina.deploy.monitoring import DATASOURCE_UID
from cocina.deploy.onprem import OnpremOptions
from cocina.deploy.source import BuildSource
from tests.deploy.conftest import tool


@pytest.fixture(scope="module")
def onprem(echo_source: BuildSource, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("onprem")
    # The unit's ExecStart must exist for `systemd-analyze verify`: install "under" a prefix whose venv is this one.
    prefix = base / "prefix"
    prefix.mkdir()
    (prefix / "venv").symlink_to(sys.prefix)
    out = base / "out"
    build(Target.ONPREM, echo_source, out, onprem=OnpremOptions(prefix=str(prefix)))
    return out


def test_compose_passes_docker_compose_config(onprem: Path) -> None:
    done = subprocess.run(
        [tool("docker-compose"), "-f", str(onprem / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=onprem,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    compose = yaml.safe_load((onprem / "compose.yaml").read_text())
    assert set(compose["services"]) == {"cocina", "postgres", "prometheus", "grafana"}
    assert compose["services"]["cocina"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = dict(line.split("=", 1) for line in (onprem / ".env").read_text().splitlines())
    assert len(env["POSTGRES_PASSWORD"]) >= 32 and (onprem / ".env").stat().st_mode & 0o077 == 0  # private
    assert (onprem / "prometheus" / "api-token").read_text() == env["COCINA_API_TOKEN"]
    # The checker does check: a misspelt key is refused.
    compose["services"]["cocina"]["healthcheck"]["intervall"] = "5s"
    bad = onprem.parent / "bad-compose.yaml"
    bad.write_text(yaml.safe_dump(compose))
    refused = subprocess.run(
        [tool("docker-compose"), "-f", str(bad), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=onprem,
        check=False,
    )
    assert refused.returncode != 0 and "intervall" in refused.stderr


# systemd-analyze compares --threshold with the exposure in tenths (its internal 0..100 scale): 49 means 4.9.
THRESHOLD = "--threshold=49"


def test_the_systemd_unit_verifies_cleanly_and_is_hardened(onprem: Path) -> None:
    unit = onprem / "echo.service"
    verify = subprocess.run([tool("systemd-analyze"), "verify", str(unit)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=yes", THRESHOLD, str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert security.returncode == 0, security.stdout[-2000:]
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout).group(1))  # type: ignore[union-attr]
    assert exposure < 5, exposure
    # A bare unit is exposed: the threshold does bite.
    bare = onprem.parent / "bare.service"
    bare.write_text(f"[Service]\nExecStart={sys.prefix}/bin/cocina --help\n")
    refused = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=yes", THRESHOLD, str(bare)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0


def test_prometheus_config_rules_and_rule_tests_pass_promtool(onprem: Path) -> None:
    promtool = tool("promtool")
    prom = onprem / "prometheus"
    for args in (
        ["check", "config", str(prom / "prometheus.yml")],
        ["check", "rules", str(prom / "rules" / "cocina.rules.yml")],
    ):
        done = subprocess.run([promtool, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "cocina.test.yml"], capture_output=True, text=True, cwd=prom / "tests", check=False
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    # Every alert is exercised by the rule tests.
    rules = yaml.safe_load((prom / "rules" / "cocina.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((prom / "tests" / "cocina.test.yml").read_text())
    tested_alerts = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert (
        alerts == tested_alerts == {"CocinaDown", "CocinaQueueBacklog", "CocinaPredictionsFailing", "CocinaKVCacheFull"}
    )


def test_grafana_provisioning_and_dashboard(onprem: Path) -> None:
    source = yaml.safe_load((onprem / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["uid"] == DATASOURCE_UID
    provider = yaml.safe_load((onprem / "grafana/provisioning/dashboards/cocina.yml").read_text())
    mounts = yaml.safe_load((onprem / "compose.yaml").read_text())["services"]["grafana"]["volumes"]
    assert any(m.endswith(":" + provider["providers"][0]["options"]["path"] + ":ro") for m in mounts)
    board = json.loads((onprem / "grafana/dashboards/echo.json").read_text())
    assert board["uid"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    variables = {v["name"] for v in board["templating"]["list"]}
    assert variables == {"job", "model_name"}
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == DATASOURCE_UID
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    names = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for vllm_name in ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds"):
        assert vllm_name in names  # a vLLM dashboard's names, per model_name


def test_install_script_is_valid_bash(onprem: Path) -> None:
    assert os.access(onprem / "install.sh", os.X_OK)
    assert subprocess.run(["bash", "-n", str(onprem / "install.sh")], check=False).returncode == 0
