"""`cocina cost`: what serving a workload costs by API, on your own machines, or on rented cloud GPUs.

Every input defaults to the named scenario (`--scenario seed`: the seed document's assumptions) and any option
given on the command line overrides it. Only light imports at module level: `cocina --help` must stay instant.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import typer

from cocina.cost.model import CostInputError


def _fail(message: str) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command(name="cost", no_args_is_help=False)(cost)


def cost(
    scenario: str = typer.Option(
        "seed", "--scenario", help="Named scenario from the presets file giving defaults."
    ),
    presets: Path | None = typer.Option(
        None, "--presets", help="An edited copy of cocina/cost/presets.yaml."
    ),
    list_presets: bool = typer.Option(False, "--list-presets", help="Show the API and GPU presets and exit."),
    requests_per_month: float | None = typer.Option(
        None, "--requests-per-month", "-n", help="Requests per month."
    ),
    prompt_tokens: float | None = typer.Option(None, "--prompt-tokens", help="Prompt tokens per request."),
    output_tokens: float | None = typer.Option(None, "--output-tokens", help="Output tokens per request."),
    api: list[str] | None = typer.Option(None, "--api", help="API preset name (repeat for several)."),
    api_price: list[str] | None = typer.Option(
        None,
        "--api-price",
        help="A custom API as IN:OUT EUR per million tokens, or NAME=IN:OUT (repeatable).",
    ),
    api_average: bool | None = typer.Option(
        None,
        "--api-average/--no-api-average",
        help="Add the mean of the chosen APIs as an option (the seed does).",
    ),
    onprem: bool = typer.Option(True, "--onprem/--no-onprem", help="Include the on-premises option."),
    hardware_eur: float | None = typer.Option(None, "--hardware-eur", help="On-premises hardware price."),
    amortization_months: float | None = typer.Option(
        None,
        "--amortization-months",
        help="Months to spread the hardware over; 'inf' leaves it out (the seed).",
    ),
    power_eur_month: float | None = typer.Option(
        None, "--power-eur-month", help="On-premises power per month."
    ),
    maintenance_eur_month: float | None = typer.Option(
        None, "--maintenance-eur-month", help="On-premises maintenance per month."
    ),
    cloud: bool = typer.Option(True, "--cloud/--no-cloud", help="Include the cloud option."),
    cloud_gpu: str | None = typer.Option(
        None, "--cloud-gpu", help="GPU preset name (t4, a100, rtx-4090, h100...)."
    ),
    cloud_eur_per_hour: float | None = typer.Option(
        None, "--cloud-eur-per-hour", help="Cloud price per GPU-hour (overrides --cloud-gpu)."
    ),
    cloud_gpus: int | None = typer.Option(None, "--cloud-gpus", help="GPUs per cloud instance."),
    cloud_fixed_eur_month: float | None = typer.Option(
        None, "--cloud-fixed-eur-month", help="Cloud fixed cost per month (storage, administration)."
    ),
    cloud_always_on: int | None = typer.Option(
        None, "--cloud-always-on", help="Cloud instances kept up all month whatever the volume (default 0)."
    ),
    utilization: float | None = typer.Option(
        None, "--utilization", help="Share of the time a deployment is busy at its throughput, in (0, 1]."
    ),
    throughput_rps: float | None = typer.Option(
        None, "--throughput-rps", help="Your deployment's throughput in requests/s (on-premises and cloud)."
    ),
    throughput_tps: float | None = typer.Option(
        None, "--throughput-tps", help="Your deployment's throughput in output tokens/s."
    ),
    bench_json: Path | None = typer.Option(
        None, "--bench-json", help="Read the throughput (output tokens/s) from a `cocina bench --json` file."
    ),
    onprem_throughput_rps: float | None = typer.Option(
        None, "--onprem-throughput-rps", help="Requests/s of one on-premises machine (overrides the above)."
    ),
    cloud_throughput_rps: float | None = typer.Option(
        None, "--cloud-throughput-rps", help="Requests/s of one cloud instance (overrides the above)."
    ),
    min_volume: float = typer.Option(1e3, "--min-volume", help="Smallest requests/month in the plot."),
    max_volume: float = typer.Option(
        1e9, "--max-volume", help="Largest requests/month searched and plotted."
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the full result as JSON here ('-' for stdout)."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write the monthly-cost plot (PNG) here."),
) -> None:
    """Compare the cost of serving a workload by API, on-premises and in the cloud, with break-evens."""
    from rich.console import Console

    from cocina.cost.presets import load_presets
    from cocina.cost.report import plot_report, print_report
    from cocina.cost.scenario import evaluate

    try:
        p = load_presets(presets)
        if list_presets:
            _print_presets(p, Console())
            return
        sc = _build_scenario(p, locals())
        report = evaluate(sc)
    except CostInputError as exc:
        raise _fail(str(exc)) from None

    console = Console(stderr=json_out is not None and str(json_out) == "-")
    print_report(report, console)
    if json_out is not None:
        text = json.dumps(report.to_json(), indent=2)
        if str(json_out) == "-":
            print(text)
        else:
            json_out.write_text(text + "\n", encoding="utf-8")
            console.print(f"wrote {json_out}")
    if plot is not None:
        plot_report(report, plot)
        console.print(f"wrote {plot}")


def _print_presets(p: Any, console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"API prices (EUR per million tokens) — {p.path}")
    for col in ("name", "input", "output", "date", "source"):
        t.add_column(col)
    for a in p.apis.values():
        t.add_row(
            a.name,
            f"{a.eur_per_million_input_tokens:.4g}",
            f"{a.eur_per_million_output_tokens:.4g}",
            a.date,
            a.source,
        )
    console.print(t)
    g = Table(title="Cloud GPUs (EUR per GPU-hour)")
    for col in ("name", "price", "date", "source"):
        g.add_column(col)
    for x in p.gpus.values():
        g.add_row(x.name, f"{x.eur_per_gpu_hour:.4g}", x.date, x.source)
    console.print(g)
    console.print(f"currency rates: {p.eur_per_unit} ({p.rates_note})")
    console.print("scenarios: " + ", ".join(p.scenarios))


def _parse_api_price(text: str, index: int) -> tuple[str, float, float]:
    name = f"custom-{index}"
    body = text
    if "=" in text:
        name, body = text.split("=", 1)
    try:
        a, b = body.split(":")
        return name, float(a), float(b)
    except ValueError:
        raise CostInputError(
            f"--api-price {text!r}: expected IN:OUT or NAME=IN:OUT in EUR per million tokens"
        ) from None


def _build_scenario(p: Any, o: dict[str, Any]) -> Any:
    """Merge the scenario's defaults with the options given; validate into a `Scenario`."""
    from cocina.cost.model import (
        ApiPrice,
        Cloud,
        OnPremises,
        Workload,
        average_api,
        requests_per_second_from_tokens,
    )
    from cocina.cost.scenario import Scenario, read_bench_output_throughput

    if o["scenario"] not in p.scenarios:
        raise CostInputError(f"unknown scenario {o['scenario']!r}; known: {', '.join(p.scenarios) or 'none'}")
    d = p.scenarios[o["scenario"]]

    def pick(opt: str, key: str, default: Any = None) -> Any:
        v = o[opt]
        if v is not None:
            return v
        return d.get(key, default)

    def num(opt: str, key: str, default: Any = None) -> float:
        v = pick(opt, key, default)
        if v is None:
            raise CostInputError(
                f"--{opt.replace('_', '-')} is required (scenario {o['scenario']!r} has no {key})"
            )
        try:
            return float(v)
        except (TypeError, ValueError):
            raise CostInputError(f"{key}: expected a number, got {v!r}") from None

    volume = num("requests_per_month", "requests_per_month")
    if volume < 0:
        raise CostInputError(f"requests per month must be >= 0 (got {volume:g})")
    workload = Workload(volume, num("prompt_tokens", "prompt_tokens"), num("output_tokens", "output_tokens"))
    notes: list[str] = []

    apis: list[ApiPrice] = []
    names = o["api"] or ([] if o["api_price"] else list(d.get("apis") or []))
    for name in names:
        if name not in p.apis:
            raise CostInputError(f"unknown API preset {name!r}; known: {', '.join(p.apis)}")
        apis.append(p.apis[name])
    for i, text in enumerate(o["api_price"] or [], start=1):
        n, a, b = _parse_api_price(text, i)
        apis.append(ApiPrice(n, a, b, date="given", source="command line"))
    want_avg = o["api_average"] if o["api_average"] is not None else bool(d.get("api_average", False))
    if want_avg and len(apis) >= 2:
        apis.append(average_api(apis))

    # Throughput of the deployment, in requests/s for this workload's output length.
    rps: float | None = None
    given = [x for x in ("throughput_rps", "throughput_tps", "bench_json") if o[x] is not None]
    if len(given) > 1:
        raise CostInputError("give only one of --throughput-rps, --throughput-tps, --bench-json")
    if o["throughput_rps"] is not None:
        rps = float(o["throughput_rps"])
        if not (math.isfinite(rps) and rps > 0):
            raise CostInputError(f"throughput must be > 0 requests/s (got {rps:g})")
    elif o["throughput_tps"] is not None:
        rps = requests_per_second_from_tokens(float(o["throughput_tps"]), workload.output_tokens_per_request)
        notes.append(
            f"{o['throughput_tps']:g} output tok/s / {workload.output_tokens_per_request:g} tokens "
            f"= {rps:.4g} req/s"
        )
    elif o["bench_json"] is not None:
        tps = read_bench_output_throughput(o["bench_json"])
        rps = requests_per_second_from_tokens(tps, workload.output_tokens_per_request)
        notes.append(
            f"measured {tps:.4g} output tok/s ({o['bench_json']}) / "
            f"{workload.output_tokens_per_request:g} tokens "
            f"= {rps:.4g} req/s per machine/instance (decode-bound assumption: prompt processing not charged)"
        )
    util = float(pick("utilization", "utilization", 1.0))

    onprem_obj: OnPremises | None = None
    if o["onprem"]:
        onprem_rps = o["onprem_throughput_rps"] if o["onprem_throughput_rps"] is not None else rps
        if onprem_rps is None:
            onprem_rps = d.get("onprem_throughput_rps")
        if onprem_rps is None:
            notes.append("on-premises capacity is unlimited (no throughput given), as in the seed")
        onprem_obj = OnPremises(
            hardware_eur=num("hardware_eur", "hardware_eur"),
            amortization_months=num("amortization_months", "amortization_months", 36),
            power_eur_per_month=num("power_eur_month", "power_eur_per_month", 0),
            maintenance_eur_per_month=num("maintenance_eur_month", "maintenance_eur_per_month", 0),
            capacity_requests_per_second=None if onprem_rps is None else float(onprem_rps),
            utilization=util,
        )
        if math.isinf(onprem_obj.amortization_months) and onprem_obj.hardware_eur > 0:
            notes.append(
                f"the {onprem_obj.hardware_eur:,.0f} EUR hardware is left out of the monthly cost "
                "(amortization inf), "
                "as in the seed; pass --amortization-months 36 to spread it over 3 years"
            )

    cloud_obj: Cloud | None = None
    if o["cloud"]:
        if o["cloud_eur_per_hour"] is not None:
            price = float(o["cloud_eur_per_hour"])
        else:
            gpu = pick("cloud_gpu", "cloud_gpu")
            if gpu is None:
                raise CostInputError(
                    "the cloud option needs --cloud-gpu or --cloud-eur-per-hour (or --no-cloud)"
                )
            if gpu not in p.gpus:
                raise CostInputError(f"unknown GPU preset {gpu!r}; known: {', '.join(p.gpus)}")
            price = p.gpus[gpu].eur_per_gpu_hour
        cloud_rps = o["cloud_throughput_rps"] if o["cloud_throughput_rps"] is not None else rps
        if cloud_rps is None:
            cloud_rps = d.get("cloud_throughput_rps")
        if cloud_rps is None:
            raise CostInputError(
                "the cloud option needs a throughput: --throughput-rps, --throughput-tps, --bench-json or "
                "--cloud-throughput-rps (or --no-cloud)"
            )
        cloud_obj = Cloud(
            eur_per_gpu_hour=price,
            capacity_requests_per_second=float(cloud_rps),
            fixed_eur_per_month=num("cloud_fixed_eur_month", "cloud_fixed_eur_per_month", 0),
            gpus_per_instance=int(pick("cloud_gpus", "cloud_gpus_per_instance", 1)),
            utilization=util,
            min_instances_always_on=int(pick("cloud_always_on", "cloud_always_on", 0)),
        )
    return Scenario(
        workload,
        apis,
        onprem_obj,
        cloud_obj,
        min_requests_per_month=float(o["min_volume"]),
        max_requests_per_month=float(o["max_volume"]),
        notes=notes,
    )
