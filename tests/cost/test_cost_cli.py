"""`cocina cost` end to end through the CLI: output, JSON, plot, bench files, presets files and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cocina.cost.cli import register


def app() -> typer.Typer:
    a = typer.Typer()
    register(a)

    @a.command()
    def _other() -> None:  # a second command so that typer keeps `cost` as a subcommand name
        pass

    return a


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app(), ["cost", *args])
    return result.exit_code, result.stdout, result.stderr


def test_seed_scenario_json_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    code, stdout, _ = run("--json", str(out), "--plot", str(png))
    assert code == 0, stdout
    assert "0.037500" in stdout and "0.002500" in stdout and "0.005333" in stdout
    data = json.loads(out.read_text())
    per_request = {o["name"]: o["eur_per_request"] for o in data["options"]}
    assert per_request["API (average)"] == pytest.approx(0.0375)
    assert data["on_premises"]["amortization_months"] is None  # infinity is written as null
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_to_stdout_is_parseable() -> None:
    code, stdout, _ = run("--json", "-", "--no-cloud", "--no-onprem")
    assert code == 0
    assert json.loads(stdout)["currency"] == "EUR"


def test_throughput_from_bench_json_and_amortization(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"metrics": {"output_token_throughput_tok_s": 250.0}}))
    code, stdout, _ = run(
        "--bench-json",
        str(bench),
        "--amortization-months",
        "36",
        "--cloud-gpu",
        "t4",
        "--json",
        "-",
        "--requests-per-month",
        "2e6",
        "--api",
        "openai-gpt-4o",
    )
    assert code == 0, stdout
    data = json.loads(stdout)
    # 250 tok/s / 500 output tokens = 0.5 req/s per machine; 2M requests/month need ceil(2e6 / 1.314e6) = 2
    # machines.
    assert data["on_premises"]["capacity_requests_per_second"] == pytest.approx(0.5)
    onprem = next(o for o in data["options"] if o["kind"] == "on-premises")
    assert onprem["detail"]["machines"] == 2
    assert onprem["eur_per_month"] == pytest.approx(2 * (45_000 / 36 + 2500))
    assert data["cloud"]["capacity_requests_per_second"] == pytest.approx(0.5)


def test_edited_presets_file(tmp_path: Path) -> None:
    from cocina.cost.presets import DEFAULT_PRESETS

    edited = DEFAULT_PRESETS.read_text().replace("price_per_gpu_hour: 6.0", "price_per_gpu_hour: 12.0")
    f = tmp_path / "p.yaml"
    f.write_text(edited)
    code, stdout, _ = run("--presets", str(f), "--json", "-")
    assert code == 0
    cloud = next(o for o in json.loads(stdout)["options"] if o["kind"] == "cloud")
    assert cloud["eur_per_request"] == pytest.approx(0.002 + 2 / 3600 * 12)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--requests-per-month", "-5"), "requests per month must be >= 0"),
        (("--throughput-rps", "0"), "throughput must be > 0 requests/s"),
        (("--throughput-tps", "0"), "throughput must be > 0 output tokens/s"),
        (("--api", "nope"), "unknown API preset 'nope'"),
        (("--cloud-gpu", "nope"), "unknown GPU preset 'nope'"),
        (("--utilization", "1.5"), "utilization must be in (0, 1]"),
        (("--api-price", "abc"), "expected IN:OUT"),
        (("--scenario", "nope"), "unknown scenario 'nope'"),
        (("--bench-json", "/nonexistent/b.json"), "cannot read bench file"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    code, _stdout, stderr = run(*args)
    assert code == 2
    assert message in stderr
    assert stderr.strip().count("\n") == 0
    assert stderr.startswith("error: ")


def test_zero_throughput_bench_file_rejected(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"metrics": {"output_token_throughput_tok_s": 0.0}}))
    code, _, stderr = run("--bench-json", str(bench))
    assert code == 2 and "zero output throughput" in stderr


def test_list_presets() -> None:
    code, stdout, _ = run("--list-presets")
    assert code == 0 and "rtx-4090" in stdout and "seed-openai-gpt-4" in stdout
