"""Human output for `cocina cost`: a rich table and a log-log plot of monthly cost against volume."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cocina.cost.scenario import CostReport


def fmt_eur(x: float) -> str:
    if math.isnan(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f} €"
    if abs(x) >= 1:
        return f"{x:,.2f} €"
    return f"{x:.6f} €"


def fmt_volume(v: float) -> str:
    return f"{v:,.0f}" if v < 1e15 else f"{v:.3g}"


def print_report(report: CostReport, console: Console) -> None:
    s = report.scenario
    w = s.workload
    console.print(
        f"[bold]Workload[/]: {fmt_volume(w.requests_per_month)} requests/month, "
        f"{w.prompt_tokens_per_request:g} prompt + {w.output_tokens_per_request:g} output tokens per request "
        "(amounts in EUR)"
    )
    table = Table(title="Cost at this volume")
    table.add_column("option")
    table.add_column("kind")
    table.add_column("per request", justify="right")
    table.add_column("per month", justify="right")
    table.add_column("notes")
    cheapest = min(report.options, key=lambda o: o.eur_per_month)
    for o in report.options:
        notes = []
        d = o.detail
        if o.kind == "api":
            notes.append(
                f"{d['eur_per_million_input_tokens']:.4g}/{d['eur_per_million_output_tokens']:.4g} "
                "€ per M in/out" + (f", price of {d['price_date']}" if d.get("price_date") else "")
            )
        elif o.kind == "on-premises":
            notes.append(f"{d['machines']} machine(s) at {fmt_eur(float(d['eur_per_machine_month']))}/month")
        elif o.kind == "cloud":
            notes.append(
                f"{float(d['instance_hours_per_month']):,.1f} instance-hours at "
                f"{fmt_eur(float(d['eur_per_instance_hour']))}"
            )
        name = f"[bold green]{o.name}[/]" if o is cheapest else o.name
        table.add_row(name, o.kind, fmt_eur(o.eur_per_request), fmt_eur(o.eur_per_month), "; ".join(notes))
    console.print(table)

    if report.break_evens:
        bt = Table(title="Break-even volumes (requests/month)")
        bt.add_column("between")
        bt.add_column("volume", justify="right")
        bt.add_column("cheaper below")
        bt.add_column("cheaper above")
        shown = report.break_evens[:30]
        for b in shown:
            bt.add_row(
                f"{b.a} / {b.b}",
                fmt_volume(b.requests_per_month) + (" (new machine)" if b.kind == "step" else ""),
                b.cheaper_below,
                b.cheaper_above,
            )
        console.print(bt)
        if len(report.break_evens) > len(shown):
            console.print(f"... and {len(report.break_evens) - len(shown)} more (see --json)")
    else:
        console.print("No break-even in the range: the order of the options never changes.")
    parts = [
        f"{r.name} up to {fmt_volume(r.end)}" if i < len(report.cheapest) - 1 else f"{r.name} beyond"
        for i, r in enumerate(report.cheapest)
    ]
    console.print("[bold]Cheapest[/]: " + ", then ".join(parts))
    for note in s.notes:
        console.print(f"[dim]note: {note}[/]")


def plot_report(report: CostReport, path: Path) -> None:
    """Monthly cost against requests per month, both axes logarithmic, with the break-evens marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s = report.scenario
    lo, hi = s.min_requests_per_month, s.max_requests_per_month
    base = np.geomspace(lo, hi, 600)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for curve in report.curves:
        # Sample densely and add both sides of every step so jumps are drawn vertical, not sloped.
        edges = [p for p in curve.breakpoints() if lo <= p <= hi]
        if len(edges) > 2000:
            edges = []
        xs = np.unique(np.concatenate([base, np.array(edges), np.array(edges) * (1 + 1e-9)]))
        xs = xs[(xs >= lo) & (xs <= hi)]
        ys = np.array([curve.eur_per_month(float(x)) for x in xs])
        ax.plot(xs, ys, label=curve.name, linewidth=1.8)
    # Label only where the cheapest option changes; the other crossings get a bare marker so labels do not
    # pile up.
    switch_points = {round(r.start, 6) for r in report.cheapest[1:]}
    for b in report.break_evens:
        if lo <= b.requests_per_month <= hi and b.kind == "crossing":
            a = next(c for c in report.curves if c.name == b.a)
            v = b.requests_per_month
            ax.plot([v], [a.eur_per_month(v)], "ko", markersize=3)
            if round(v, 6) in switch_points:
                ax.annotate(
                    f"{v:,.0f}",
                    (v, a.eur_per_month(v)),
                    textcoords="offset points",
                    xytext=(5, -14),
                    fontsize=8,
                )
    w = s.workload.requests_per_month
    if lo <= w <= hi:
        ax.axvline(w, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests per month")
    ax.set_ylabel("cost per month (EUR)")
    ax.set_title(
        f"Monthly cost vs volume ({s.workload.prompt_tokens_per_request:g} prompt + "
        f"{s.workload.output_tokens_per_request:g} output tokens per request)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
