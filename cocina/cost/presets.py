"""Loading the price presets (`presets.yaml` or an edited copy) into the model's EUR dataclasses."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocina.cost.model import ApiPrice, CostInputError

DEFAULT_PRESETS = Path(__file__).with_name("presets.yaml")


@dataclass(frozen=True)
class GpuPrice:
    name: str
    eur_per_gpu_hour: float
    date: str
    source: str


@dataclass(frozen=True)
class Presets:
    path: Path
    apis: dict[str, ApiPrice]
    gpus: dict[str, GpuPrice]
    scenarios: dict[str, dict[str, Any]]
    eur_per_unit: dict[str, float]
    rates_note: str = ""
    warnings: list[str] = field(default_factory=list)


def _num(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CostInputError(f"{where}: expected a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or f < 0:
        raise CostInputError(f"{where}: expected a finite number >= 0, got {value!r}")
    return f


def load_presets(path: Path | None = None) -> Presets:
    """Read and check a presets file; every problem is a one-line `CostInputError` naming the file and key."""
    import yaml

    p = Path(path) if path is not None else DEFAULT_PRESETS
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CostInputError(f"cannot read presets file {p}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise CostInputError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(raw, dict):
        raise CostInputError(f"{p}: expected a mapping with keys apis, gpus, scenarios")

    rates_raw = raw.get("currency_rates") or {}
    eur_per_unit = {"EUR": 1.0}
    for cur, rate in (rates_raw.get("eur_per_unit") or {}).items():
        eur_per_unit[str(cur).upper()] = _num(f"{p}: currency_rates.eur_per_unit.{cur}", rate)
    rates_note = f"{rates_raw.get('date', '')} {rates_raw.get('source', '')}".strip()

    def to_eur(where: str, entry: dict[str, Any], amount: float) -> float:
        cur = str(entry.get("currency", "EUR")).upper()
        if cur not in eur_per_unit:
            raise CostInputError(f"{where}: currency {cur} has no rate in currency_rates.eur_per_unit")
        return amount * eur_per_unit[cur]

    apis: dict[str, ApiPrice] = {}
    for name, entry in (raw.get("apis") or {}).items():
        where = f"{p}: apis.{name}"
        if not isinstance(entry, dict):
            raise CostInputError(f"{where}: expected a mapping")
        for key in ("price_per_million_input_tokens", "price_per_million_output_tokens", "date", "source"):
            if key not in entry:
                raise CostInputError(f"{where}: missing {key}")
        apis[str(name)] = ApiPrice(
            name=str(name),
            eur_per_million_input_tokens=to_eur(
                where,
                entry,
                _num(f"{where}.price_per_million_input_tokens", entry["price_per_million_input_tokens"]),
            ),
            eur_per_million_output_tokens=to_eur(
                where,
                entry,
                _num(f"{where}.price_per_million_output_tokens", entry["price_per_million_output_tokens"]),
            ),
            date=str(entry["date"]),
            source=str(entry["source"])
            + ("" if entry.get("currency", "EUR") == "EUR" else " (converted to EUR)"),
        )

    gpus: dict[str, GpuPrice] = {}
    for name, entry in (raw.get("gpus") or {}).items():
        where = f"{p}: gpus.{name}"
        if not isinstance(entry, dict):
            raise CostInputError(f"{where}: expected a mapping")
        for key in ("price_per_gpu_hour", "date", "source"):
            if key not in entry:
                raise CostInputError(f"{where}: missing {key}")
        gpus[str(name)] = GpuPrice(
            name=str(name),
            eur_per_gpu_hour=to_eur(
                where, entry, _num(f"{where}.price_per_gpu_hour", entry["price_per_gpu_hour"])
            ),
            date=str(entry["date"]),
            source=str(entry["source"]),
        )

    scenarios = raw.get("scenarios") or {}
    if not isinstance(scenarios, dict):
        raise CostInputError(f"{p}: scenarios must be a mapping")
    return Presets(
        p, apis, gpus, {str(k): dict(v or {}) for k, v in scenarios.items()}, eur_per_unit, rates_note
    )
