"""`cocina bench` end to end against the timed fake server: metric values, failures, timeouts, arrivals,
outputs.

The server waits TTFT = 50 ms before the first token and ITL = 20 ms between tokens, so with 10 tokens a
request takes 50 + 9 * 20 = 230 ms. The machine is small and shared, so bounds allow scheduling noise above
the floor but stay tight enough to catch a wrong definition (e.g. TTFT taken at the role chunk, or TPOT over
all tokens).
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import typer
from bench_fake_server import FakeServer
from typer.testing import CliRunner

from cocina.bench.cli import register

TTFT_MS, ITL_MS, TOKENS = 50.0, 20.0, 10
E2E_MS = TTFT_MS + (TOKENS - 1) * ITL_MS


def run_cli(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    register(app)

    @app.command()
    def _other() -> None:  # a second command keeps `bench` a subcommand
        pass

    result = CliRunner().invoke(app, ["bench", "--no-progress", *args])
    return result.exit_code, result.stdout, result.stderr


def bench_json(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "b.json"
    code, stdout, stderr = run_cli(*args, "--json", str(out))
    assert code == 0, stdout + stderr
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def check_timing(m: dict[str, Any]) -> None:
    assert TTFT_MS - 1 <= m["ttft_ms"]["median"] <= TTFT_MS + 40
    assert ITL_MS - 1 <= m["itl_ms"]["median"] <= ITL_MS + 10
    assert ITL_MS - 1 <= m["tpot_ms"]["median"] <= ITL_MS + 10
    assert E2E_MS - 1 <= m["e2el_ms"]["median"] <= E2E_MS + 80


def test_openai_completions_metrics(server: FakeServer, tmp_path: Path) -> None:
    data = bench_json(
        tmp_path,
        "--url",
        server.url + "/v1",
        "--concurrency",
        "4",
        "--requests",
        "8",
        "--input-len",
        "16",
        "--output-len",
        str(TOKENS),
        "--ignore-eos",
    )
    m = data["metrics"]
    assert m["completed"] == 8 and m["failed"] == 0
    assert data["config"]["model"] == "fake-model"  # discovered from /v1/models
    check_timing(m)
    assert m["total_output_tokens"] == 8 * TOKENS
    assert m["output_tokens_source"] == {"usage": 8}
    assert m["total_input_tokens"] == 8 * 16
    # Two waves of four requests: about 2 x 230 ms.
    assert 2 * E2E_MS / 1000 - 0.01 <= m["duration_s"] <= 2 * E2E_MS / 1000 + 0.4
    # Throughputs are totals over the wall time, exactly.
    assert m["output_token_throughput_tok_s"] == pytest.approx(80 / m["duration_s"])
    assert m["request_throughput_req_s"] == pytest.approx(8 / m["duration_s"])
    assert m["total_token_throughput_tok_s"] == pytest.approx((80 + 128) / m["duration_s"])
    # The cap holds at the server, and the client saw as many in flight.
    assert server.state.max_in_flight == 4
    assert m["max_concurrent_requests"] == 4
    # Per request: TPOT = (E2E - TTFT) / (tokens - 1) exactly, ITL gaps sum to E2E - TTFT.
    for r in data["requests"]:
        assert r["tpot_ms"] == pytest.approx((r["e2el_ms"] - r["ttft_ms"]) / (TOKENS - 1))
        assert len(r["itl_ms"]) == TOKENS - 1
        assert sum(r["itl_ms"]) == pytest.approx(r["e2el_ms"] - r["ttft_ms"], abs=1e-6)
    body = server.state.bodies[0]
    assert body["ignore_eos"] is True and body["min_tokens"] == TOKENS and body["max_tokens"] == TOKENS
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_chat_ttft_ignores_the_role_chunk_and_counts_chunks_without_usage(
    server: FakeServer, tmp_path: Path
) -> None:
    data = bench_json(
        tmp_path,
        "--url",
        server.url,
        "--api",
        "openai-chat",
        "--model",
        "no-usage",
        "--requests",
        "3",
        "--output-len",
        str(TOKENS),
    )
    m = data["metrics"]
    check_timing(m)  # a TTFT taken at the role-only chunk would be ~0 ms
    assert m["output_tokens_source"] == {"chunks": 3}
    assert m["total_output_tokens"] == 3 * TOKENS


def test_replicate_stream(server: FakeServer, tmp_path: Path) -> None:
    data = bench_json(
        tmp_path,
        "--url",
        server.url,
        "--api",
        "replicate",
        "--model",
        "acme/llm",
        "--requests",
        "3",
        "--concurrency",
        "3",
        "--output-len",
        str(TOKENS),
    )
    m = data["metrics"]
    assert m["completed"] == 3
    check_timing(m)
    assert m["total_output_tokens"] == 3 * TOKENS


def test_cog_stream(server: FakeServer, tmp_path: Path) -> None:
    data = bench_json(
        tmp_path, "--url", server.url, "--api", "cog", "--requests", "3", "--output-len", str(TOKENS)
    )
    m = data["metrics"]
    assert m["completed"] == 3
    check_timing(m)
    assert server.state.bodies[0]["input"]["max_tokens"] == TOKENS


def test_failures_and_timeouts_are_counted_not_dropped(server: FakeServer, tmp_path: Path) -> None:
    ds = tmp_path / "d.jsonl"
    prompts = ["hello", "FAIL500 x", "hello again", "FAIL429 y", "HANG z", "STREAMERR w", "fine"]
    ds.write_text("\n".join(json.dumps({"prompt": p, "output_len": 5}) for p in prompts) + "\n")
    out = tmp_path / "f.json"
    code, stdout, stderr = run_cli(
        "--url",
        server.url,
        "--dataset",
        str(ds),
        "--timeout",
        "0.6",
        "--json",
        str(out),
        "--concurrency",
        "7",
    )
    assert code == 0, stderr  # some requests succeeded
    m = json.loads(out.read_text())["metrics"]
    assert m["completed"] == 3 and m["failed"] == 4 and m["total_requests"] == 7
    assert m["max_concurrent_requests"] <= 7  # failed requests leave the in-flight count when they fail
    assert m["errors_by_status"]["HTTP 500"] == 1
    assert m["errors_by_status"]["HTTP 429"] == 1
    assert m["errors_by_status"]["timeout after 0.6 s"] == 1
    assert m["errors_by_status"]["error in stream"] == 1
    assert any("injected 500" in e for e in m["first_errors"])
    assert "failed requests" in stdout and "HTTP 500 x1" in stdout


def test_all_failed_exits_1(server: FakeServer) -> None:
    code, _stdout, stderr = run_cli("--url", server.url, "--requests", "2", "--extra", 'prompt="FAIL503"')
    assert code == 1
    assert "all 2 requests failed" in stderr


def test_unreachable_url_is_one_line_and_nonzero() -> None:
    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _stdout, stderr = run_cli("--url", f"http://127.0.0.1:{port}", "--model", "m", "--requests", "1")
    assert code == 1
    assert stderr.startswith("error: cannot reach http://127.0.0.1:")
    assert stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (("--api", "grpc"), "--api must be one of"),
        (("--concurrency", "0"), "--concurrency must be >= 1"),
        (("--rate", "0"), "--rate must be > 0"),
        (("--goodput", "ttft=5"), "expected ttft:MS"),
        (("--requests", "0"), "--requests must be >= 1"),
        (("--dataset", "/nonexistent.jsonl"), "cannot read dataset"),
    ],
)
def test_bad_options_exit_2(args: tuple[str, ...], message: str) -> None:
    code, _stdout, stderr = run_cli("--url", "http://127.0.0.1:9", *args)
    assert code == 2
    assert message in stderr


def test_goodput_against_slos(server: FakeServer, tmp_path: Path) -> None:
    common = ("--url", server.url, "--requests", "4", "--output-len", str(TOKENS))
    m = bench_json(tmp_path, *common, "--goodput", "ttft:500", "--goodput", "tpot:200")["metrics"]
    assert m["good_requests"] == 4
    assert m["goodput_req_s"] == pytest.approx(m["request_throughput_req_s"])
    m = bench_json(tmp_path, *common, "--goodput", "ttft:20 e2el:5000")["metrics"]  # TTFT is >= 50 ms
    assert m["good_requests"] == 0 and m["goodput_req_s"] == 0
    assert m["slo_ms"] == {"ttft": 20.0, "tpot": None, "e2el": 5000.0}


def test_poisson_arrivals_reach_the_server_at_the_rate(server: FakeServer, tmp_path: Path) -> None:
    server.state.ttft_s, server.state.itl_s = 0.0, 0.0
    rate, n = 40.0, 60
    bench_json(
        tmp_path,
        "--url",
        server.url,
        "--requests",
        str(n),
        "--rate",
        str(rate),
        "--output-len",
        "1",
        "--seed",
        "3",
    )
    t = sorted(server.state.received)
    gaps = [b - a for a, b in itertools.pairwise(t)]
    # 59 exponential gaps: the mean's standard error is ~13%; the schedule itself is seeded, so this checks
    # that the client keeps to it rather than the randomness.
    from cocina.bench.runner import arrival_offsets

    planned = arrival_offsets(n, rate, seed=3)
    assert statistics.fmean(gaps) == pytest.approx(planned[-1] / (n - 1), rel=0.15)
    assert 1 / statistics.fmean(gaps) == pytest.approx(rate, rel=0.45)


def test_plot_and_json_files(server: FakeServer, tmp_path: Path) -> None:
    png, out = tmp_path / "p.png", tmp_path / "o.json"
    code, stdout, stderr = run_cli(
        "--url", server.url, "--requests", "4", "--output-len", "5", "--plot", str(png), "--json", str(out)
    )
    assert code == 0, stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    data = json.loads(out.read_text())
    assert set(data) == {"config", "metrics", "output_tokens_per_s_series", "requests"}
    assert data["config"]["exact_prompt_len"] is False
    assert "TTFT median (ms)" in stdout and "output token throughput" in stdout
