"""A whole comparison: one workload, some APIs, optionally on-premises and cloud, evaluated into a report."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cocina.cost.model import (
    ApiPrice,
    BreakEven,
    CheapestRange,
    Cloud,
    CostCurve,
    CostInputError,
    OnPremises,
    OptionCost,
    Workload,
    api_curve,
    break_evens,
    cheapest_ranges,
    cloud_curve,
    on_premises_curve,
    option_cost,
)


@dataclass(frozen=True)
class Scenario:
    workload: Workload
    apis: list[ApiPrice]
    onprem: OnPremises | None = None
    cloud: Cloud | None = None
    # The range the curves, break-evens and plot cover. Break-evens beyond it are not searched.
    min_requests_per_month: float = 1e3
    max_requests_per_month: float = 1e9
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.apis and self.onprem is None and self.cloud is None:
            raise CostInputError("nothing to compare: give at least one API, on-premises or cloud option")
        if not (0 < self.min_requests_per_month < self.max_requests_per_month) or not math.isfinite(
            self.max_requests_per_month
        ):
            raise CostInputError(
                f"volume range must satisfy 0 < min < max (got {self.min_requests_per_month:g}.."
                f"{self.max_requests_per_month:g})"
            )


@dataclass(frozen=True)
class CostReport:
    scenario: Scenario
    curves: list[CostCurve]
    options: list[OptionCost]
    break_evens: list[BreakEven]
    cheapest: list[CheapestRange]

    def to_json(self) -> dict[str, Any]:
        s = self.scenario

        def clean(x: Any) -> Any:
            # JSON has no infinity: an unlimited capacity or an infinite amortization become null.
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [clean(v) for v in x]
            return x

        return clean(
            {
                "currency": "EUR",
                "workload": asdict(s.workload),
                "apis": [asdict(a) for a in s.apis],
                "on_premises": asdict(s.onprem) if s.onprem else None,
                "cloud": asdict(s.cloud) if s.cloud else None,
                "range_requests_per_month": [s.min_requests_per_month, s.max_requests_per_month],
                "options": [asdict(o) for o in self.options],
                "break_evens": [asdict(b) for b in self.break_evens],
                "cheapest": [asdict(c) for c in self.cheapest],
                "notes": list(s.notes),
            }
        )


def evaluate(s: Scenario) -> CostReport:
    """Build every option's exact curve over the range and compare them at the workload's volume."""
    vmax = max(s.max_requests_per_month, s.workload.requests_per_month)
    curves: list[CostCurve] = []
    options: list[OptionCost] = []
    for api in s.apis:
        c = api_curve(api, s.workload, vmax)
        curves.append(c)
        options.append(
            option_cost(
                c,
                s.workload,
                {
                    "eur_per_million_input_tokens": api.eur_per_million_input_tokens,
                    "eur_per_million_output_tokens": api.eur_per_million_output_tokens,
                    "price_date": api.date,
                },
            )
        )
    if s.onprem is not None:
        c = on_premises_curve(s.onprem, vmax)
        curves.append(c)
        cap = s.onprem.requests_per_machine_month
        options.append(
            option_cost(
                c,
                s.workload,
                {
                    "machines": s.onprem.machines(s.workload.requests_per_month),
                    "eur_per_machine_month": s.onprem.eur_per_machine_month,
                    "requests_per_machine_month": cap if math.isfinite(cap) else "unlimited",
                },
            )
        )
    if s.cloud is not None:
        c = cloud_curve(s.cloud, vmax)
        curves.append(c)
        hours = s.workload.requests_per_month / (
            3600.0 * s.cloud.capacity_requests_per_second * s.cloud.utilization
        )
        options.append(
            option_cost(
                c,
                s.workload,
                {
                    "instance_hours_per_month": hours,
                    "eur_per_instance_hour": s.cloud.eur_per_instance_hour,
                    "marginal_eur_per_request": s.cloud.eur_per_request_marginal,
                },
            )
        )
    bes: list[BreakEven] = []
    for i, a in enumerate(curves):
        for b in curves[i + 1 :]:
            bes.extend(x for x in break_evens(a, b) if x.requests_per_month <= s.max_requests_per_month)
    cheapest = cheapest_ranges(curves, min_requests_per_month=0.0)
    cheapest = [r for r in cheapest if r.start <= s.max_requests_per_month]
    return CostReport(s, curves, options, bes, cheapest)


def read_bench_output_throughput(path: Path) -> float:
    """The output tokens/s measured by `cocina bench --json`; a clear error if the file cannot give one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CostInputError(f"cannot read bench file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise CostInputError(f"bench file {path} is not JSON: {exc.msg} (line {exc.lineno})") from exc
    metrics = data.get("metrics") if isinstance(data, dict) else None
    value = metrics.get("output_token_throughput_tok_s") if isinstance(metrics, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise CostInputError(
            f"bench file {path} has no metrics.output_token_throughput_tok_s (not `cocina bench --json`?)"
        )
    if not value > 0:
        raise CostInputError(
            f"bench file {path} measured zero output throughput (did every request fail?); "
            "throughput must be > 0"
        )
    return float(value)
