"""Every dashboard panel, recording rule, alert and autoscaler query, evaluated by a real Prometheus (Debian's
binary) scraping a live cocina on 127.0.0.1 that serves a Cog predictor and a language model, with the scrape
config and rule file the builds write. Each dashboard and autoscaler query must return exactly one series with a
finite value: a query with a typo in a metric or label name returns nothing, and fails here."""

from __future__ import annotations

import math
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cocina.deploy import monitoring
from cocina.deploy.cloud import adapter_rules
from cocina.deploy.onprem import prometheus_config
from tests.deploy.conftest import tool
from tests.server.conftest import LiveServer, echo_spec, llm_spec, start_server

JOB = "cocina-live"
LLM = "acme/tiny"
TOKEN = "scrape-token"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cocina(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from cocina.models.tiny import make_tiny_model

    base = tmp_path_factory.mktemp("live")
    model = Path(make_tiny_model(base / "tiny-gpt2", arch="gpt2"))
    srv = start_server(base / "data", [echo_spec(warm=True), llm_spec(model, LLM, warm=True)], api_token=TOKEN)
    try:
        deadline = time.monotonic() + 120
        while srv.client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the models never loaded"
            time.sleep(0.1)
        yield srv
    finally:
        srv.stop()


def _traffic(srv: LiveServer) -> None:
    for i in range(3):
        assert srv.client.post("/predictions", json={"input": {"text": f"t{i}", "n": 2}}).status_code == 200
        chat = srv.client.post(
            "/v1/chat/completions",
            json={"model": LLM, "messages": [{"role": "user", "content": f"hola {i}"}], "max_tokens": 8},
        )
        assert chat.status_code == 200, chat.text


@pytest.fixture(scope="module")
def prometheus(cocina: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("prometheus")
    (base / "api-token").write_text(TOKEN)
    (base / "rules").mkdir()
    (base / "rules" / "cocina.rules.yml").write_text(
        yaml.safe_dump(monitoring.rules_document(JOB, 4, 16, interval="1s"))
    )
    config = prometheus_config(JOB, cocina.url.removeprefix("http://"), "api-token", "rules/*.yml")
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (base / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = subprocess.run(
        [tool("promtool"), "check", "config", str(base / "prometheus.yml")], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    port = _port()
    proc = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={base / 'prometheus.yml'}",
            f"--storage.tsdb.path={base / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(base / "log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _query(url, f'up{{job="{JOB}"}}') and _query(url, f'up{{job="{JOB}"}}')[0]["value"][1] == "1":
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (base / "log").read_text()[-2000:]
            assert time.monotonic() < deadline, (base / "log").read_text()[-2000:]
            time.sleep(0.2)
        _traffic(cocina)  # between scrapes: rates and latency quantiles have something to show
        time.sleep(2.5)
        _traffic(cocina)
        time.sleep(3.0)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    assert answer["data"]["resultType"] == "vector", (expr, answer)
    return list(answer["data"]["result"])


def _one_finite(url: str, expr: str) -> float:
    result = _query(url, expr)
    assert len(result) == 1, f"{expr}: {len(result)} series: {result}"
    value = float(result[0]["value"][1])
    assert math.isfinite(value), f"{expr}: {value}"
    return value


def test_every_dashboard_panel_returns_one_series(prometheus: str) -> None:
    for panel in monitoring.panels():
        expr = panel.expr.replace("$job", JOB).replace("$model_name", LLM)
        _one_finite(prometheus, expr)
    # And what they show is what happened: 6 chat requests ran, their tokens were counted.
    assert _one_finite(prometheus, f'sum(vllm:generation_tokens_total{{job="{JOB}", model_name="{LLM}"}})') > 0
    # The dashboard's model variable lists both models.
    board = monitoring.dashboard(JOB)
    variable = next(v for v in board["templating"]["list"] if v["name"] == "model_name")
    series = _query(
        prometheus, variable["definition"].replace("label_values(", "").rsplit(",", 1)[0].replace("$job", JOB)
    )
    assert {s["metric"]["model_name"] for s in series} == {"acme/echo", LLM}


def test_the_autoscalers_queries_return_one_series(prometheus: str) -> None:
    assert _one_finite(prometheus, monitoring.queue_depth_query(JOB)) == 0  # nothing waiting now
    rule = adapter_rules(JOB)["rules"]["external"][0]
    expr = (
        rule["metricsQuery"].replace("<<.Series>>", "cocina_queue_depth").replace("<<.LabelMatchers>>", f'job="{JOB}"')
    )
    _one_finite(prometheus, expr)
    assert _query(prometheus, rule["seriesQuery"])  # the adapter's series discovery finds cocina's series


def test_recording_and_alerting_rules_evaluate_without_errors(prometheus: str) -> None:
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    evaluated = [r for g in rules for r in g["rules"]]
    assert len(evaluated) == len(monitoring.recording_rules(JOB)) + len(monitoring.alert_rules(JOB, 4, 16))
    assert all(r["health"] == "ok" for r in evaluated), [r for r in evaluated if r["health"] != "ok"]
    for rule in monitoring.recording_rules(JOB):
        assert _query(prometheus, rule.name), f"recording rule {rule.name} recorded nothing"
    firing = [r["name"] for r in evaluated if r.get("type") == "alerting" and r["state"] != "inactive"]
    assert firing == []  # a healthy server raises no alert
