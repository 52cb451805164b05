"""A/B measures over HTTP: `POST /v1/deployments/{o}/{n}/compare` runs the same examples through each version of
the current release (real predictions in real worker processes) and scores them; `GET .../stats` reads the live
traffic per version. Bad examples and unknown deployments are clear 4xx errors."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import replicate

from cocina.hubctl.client import PushProgress, RemoteHub
from tests.server.conftest import LiveServer, start_server

PREDICT = """
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="a sentence")) -> str:
        {body}
"""
AS_IS = "return text"
SHOUT = 'if "boom" in text:\n            raise ValueError("boom")\n        return text.upper()'

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a cup of coffee in the morning keeps the doctor away",
    "paged attention keeps the cache in fixed size blocks",
    "continuous batching adds requests between decode steps",
    "the prefix cache shares the blocks of a common system prompt",
    "quantization trades a little quality for memory and speed",
    "every release of a deployment is numbered and kept forever",
    "sticky routing keeps one user on one version of a model",
    "a rollback makes a new release that routes as an older one did",
    "boom goes the version that cannot take this sentence at all",
    "latency is measured at the fiftieth and ninety fifth percentiles",
    "the bootstrap resamples examples to put an interval on a difference",
]


def _project(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(PREDICT).replace("{body}", body))
    (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    return root


def _push(srv: LiveServer, root: Path, name: str) -> str:
    client = RemoteHub(srv.url)
    try:
        return str(client.push(root, name, PushProgress()).version["id"])
    finally:
        client.close()


@pytest.fixture
def ab(tmp_path: Path) -> Iterator[tuple[LiveServer, str, str]]:
    """A server whose deployment acme/prod splits 50/50 between a version that answers as is and one that
    shouts (and fails on "boom")."""
    srv = start_server(tmp_path / "data", hub=True, wait=None)
    try:
        a = _push(srv, _project(tmp_path / "a", AS_IS), "acme/ab")
        b = _push(srv, _project(tmp_path / "b", SHOUT), "acme/ab")
        resp = srv.client.post(
            "/v1/deployments",
            json={
                "name": "prod",
                "model": "acme/ab",
                "versions": [{"version": a, "weight": 50}, {"version": b, "weight": 50}],
            },
        )
        assert resp.status_code == 201, resp.text
        yield srv, a, b
    finally:
        if srv.thread.is_alive():
            srv.stop()


def test_compare_scores_each_version_against_references(ab: tuple[LiveServer, str, str]) -> None:
    srv, a, b = ab
    examples = [{"input": {"text": s}, "reference": s.upper()} for s in SENTENCES]
    resp = srv.client.post("/v1/deployments/acme/prod/compare", json={"examples": examples}, timeout=120)
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["deployment"] == "acme/prod" and report["release"] == 1
    va, vb = report["versions"][a], report["versions"][b]
    assert va["examples"] == vb["examples"] == len(SENTENCES)
    assert va["errors"] == 0 and vb["errors"] == 1
    assert vb["first_errors"] and vb["first_errors"][0].startswith("example 10:") and "boom" in vb["first_errors"][0]
    assert va["latency_ms"]["p50"] > 0 and va["latency_ms"]["p95"] >= va["latency_ms"]["p50"]
    assert va["output_tokens_per_s"] is None  # an echo reports no token counts
    assert va["perplexity"] is None  # not a language model
    # B answers the references exactly, except the example it failed; A only matches where case does not count.
    assert vb["chrf"] > 85 and va["chrf"] < vb["chrf"] and va["bleu"] < vb["bleu"]
    (diff,) = report["differences"]
    assert {diff["a"], diff["b"]} == {a, b}
    sign = 1 if diff["b"] == b else -1
    for metric in ("bleu", "chrf"):
        lo, hi = diff[metric]["ci95"]
        assert lo <= diff[metric]["diff"] <= hi
        assert (lo > 0) if sign == 1 else (hi < 0), diff  # B's lead is outside the noise
    # Compare's predictions are real ones, recorded, but not the deployment's live traffic.
    rows = srv.client.get("/v1/predictions").json()["results"]
    assert len(rows) == 2 * len(SENTENCES) and all(r["deployment"] is None for r in rows)
    assert srv.client.get("/v1/deployments/acme/prod/stats").json()["predictions"] == 0


def test_compare_streams_progress_then_the_report(ab: tuple[LiveServer, str, str]) -> None:
    srv, a, b = ab
    client = RemoteHub(srv.url)
    try:
        items = list(client.stream("/v1/deployments/acme/prod/compare", {"examples": [{"text": "hola"}] * 3}))
    finally:
        client.close()
    progress = [i for i in items if "done" in i]
    assert [p["done"] for p in progress] == list(range(1, 7)) and {p["total"] for p in progress} == {6}
    report = items[-1]["report"]
    assert set(report["versions"]) == {a, b}
    assert "bleu" not in report["differences"][0]  # no references: no quality scores, and no invented ones
    assert report["versions"][a]["bleu"] is None


def test_live_stats_per_version(ab: tuple[LiveServer, str, str]) -> None:
    srv, a, b = ab
    seen = {a: 0, b: 0}
    failed = 0
    for i in range(16):
        client = replicate.Client(api_token=f"user-{i}", base_url=srv.url)
        pred = client.deployments.predictions.create("acme/prod", input={"text": "boom" if i % 4 == 0 else "hi"})
        pred.wait()
        seen[pred.version] += 1
        failed += pred.status == "failed"
    stats = srv.client.get("/v1/deployments/acme/prod/stats").json()
    assert stats["predictions"] == 16 and stats["release"] == 1
    for version, count in seen.items():
        if count:
            v = stats["versions"][version]
            assert v["predictions"] == count and v["releases"] == [1]
            assert v["succeeded"] + v["failed"] == count
            assert v["total_time_ms"]["p50"] is not None or v["succeeded"] == 0
    assert sum(v["failed"] for v in stats["versions"].values()) == failed
    assert stats["versions"].get(a, {"failed": 0})["failed"] == 0  # only the shouting version fails on boom


def test_compare_errors(ab: tuple[LiveServer, str, str]) -> None:
    srv, _, _ = ab
    missing = srv.client.post("/v1/deployments/acme/nope/compare", json={"examples": [{"text": "x"}]})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    empty = srv.client.post("/v1/deployments/acme/prod/compare", json={"examples": []})
    assert empty.status_code == 422
    bad = srv.client.post("/v1/deployments/acme/prod/compare", json={"examples": [{"text": "x"}, {"input": "x"}]})
    assert bad.status_code == 422 and "example 2" in bad.text and "`input` must be an object" in bad.text
    ref = srv.client.post("/v1/deployments/acme/prod/compare", json={"examples": [{"text": "x", "reference": 3}]})
    assert ref.status_code == 422 and "`reference` must be a string" in ref.text
    nostats = srv.client.get("/v1/deployments/acme/nope/stats")
    assert nostats.status_code == 404
    # An input a version refuses is that version's error, not the comparison's.
    wrong = srv.client.post("/v1/deployments/acme/prod/compare", json={"examples": [{"txt": "x"}]}).json()
    assert all(v["errors"] == 1 for v in wrong["versions"].values())
    assert all("refused" in v["first_errors"][0] for v in wrong["versions"].values())


def test_a_language_model_version_gets_tokens_per_second_and_perplexity(tmp_path: Path, tiny_model: Path) -> None:
    srv = start_server(tmp_path / "data", hub=True, wait=None)
    try:
        root = tmp_path / "lm"
        root.mkdir()
        (root / "predict.py").write_text(
            f'from cocina.llm import LLMPredictor\n\n\nclass Predictor(LLMPredictor):\n    model = "{tiny_model}"\n'
        )
        (root / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
        version = _push(srv, root, "acme/lm")
        assert (
            srv.client.post("/v1/deployments", json={"name": "lm", "model": "acme/lm", "version": version}).status_code
            == 201
        )
        examples = [
            {
                "input": {"prompt": f"hola {i}", "max_new_tokens": 8, "temperature": 0},
                "reference": "una respuesta corta",
            }
            for i in range(3)
        ]
        report = srv.client.post("/v1/deployments/acme/lm/compare", json={"examples": examples}, timeout=300).json()
        v = report["versions"][version]
        assert v["errors"] == 0, v
        assert v["output_tokens_per_s"] is not None and v["output_tokens_per_s"] > 0
        assert v["perplexity"] is not None and v["perplexity"] > 1
        assert report["differences"] == []  # one version: nothing to compare it with
    finally:
        srv.stop()
