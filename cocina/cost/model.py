"""The cost model behind `cocina cost`: pure functions on dataclasses, no I/O.

Three ways of serving the same workload are compared, each as a monthly cost curve C(V) over the request
volume V (requests per month). Every curve is piecewise linear, so it is represented exactly as a list of
`Segment`s and the break-even volumes are solved in closed form on each piece instead of being searched
numerically:

- API:          C(V) = V * (p_in * prompt_tokens + p_out * output_tokens) / 1e6           (linear, through 0)
- on-premises:  C(V) = n(V) * (hardware / amortization_months + power + maintenance),
                n(V) = max(1, ceil(V / capacity))                      (steps, one per machine)
- cloud:        C(V) = fixed + price_per_hour * max(V / (3600 * rps * utilization), min_hours)
                                                                       (linear after a floor)

Units are in the names: `eur_per_month`, `requests_per_month`, `requests_per_second`... All money is in one
currency (EUR, as in the seed document); presets in other currencies are converted when loaded (see
`presets.py`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

# A month is 730 hours (365 * 24 / 12), the convention cloud providers bill by.
HOURS_PER_MONTH = 730.0
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0


class CostInputError(ValueError):
    """An input that makes the model meaningless (negative volume, zero throughput...); one-line message."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CostInputError(message)


def _finite_nonneg(name: str, value: float) -> None:
    _require(math.isfinite(value) and value >= 0, f"{name} must be a finite number >= 0 (got {value})")


@dataclass(frozen=True)
class Workload:
    """What is served: how many requests a month and how long each one is, in tokens."""

    requests_per_month: float
    prompt_tokens_per_request: float
    output_tokens_per_request: float

    def __post_init__(self) -> None:
        _finite_nonneg("requests per month", self.requests_per_month)
        _finite_nonneg("prompt tokens per request", self.prompt_tokens_per_request)
        _finite_nonneg("output tokens per request", self.output_tokens_per_request)
        _require(
            self.prompt_tokens_per_request + self.output_tokens_per_request > 0,
            "a request must have at least one prompt or output token",
        )


@dataclass(frozen=True)
class ApiPrice:
    """A pay-per-token API, priced per million tokens (input and output priced separately)."""

    name: str
    eur_per_million_input_tokens: float
    eur_per_million_output_tokens: float
    date: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        _finite_nonneg(f"API {self.name!r} input price", self.eur_per_million_input_tokens)
        _finite_nonneg(f"API {self.name!r} output price", self.eur_per_million_output_tokens)

    def eur_per_request(self, workload: Workload) -> float:
        return (
            workload.prompt_tokens_per_request * self.eur_per_million_input_tokens
            + workload.output_tokens_per_request * self.eur_per_million_output_tokens
        ) / 1e6


def average_api(prices: list[ApiPrice], name: str = "API (average)") -> ApiPrice:
    """The arithmetic mean of several APIs' prices, as the seed does with OpenAI and Anthropic."""
    _require(len(prices) > 0, "no API prices to average")
    n = len(prices)
    return ApiPrice(
        name=name,
        eur_per_million_input_tokens=sum(p.eur_per_million_input_tokens for p in prices) / n,
        eur_per_million_output_tokens=sum(p.eur_per_million_output_tokens for p in prices) / n,
        date=", ".join(sorted({p.date for p in prices if p.date})),
        source="mean of: " + ", ".join(p.name for p in prices),
    )


@dataclass(frozen=True)
class OnPremises:
    """Machines you buy. `amortization_months=inf` leaves the purchase out of the monthly cost (the seed does
    that).

    `capacity_requests_per_second` is one machine's sustained throughput; None means unlimited (one machine
    serves any volume, the seed's assumption). `utilization` is the share of the month a machine can actually
    be kept busy at that throughput (traffic is not flat), so one machine serves `rps * utilization *
    SECONDS_PER_MONTH` a month.
    """

    hardware_eur: float
    amortization_months: float
    power_eur_per_month: float
    maintenance_eur_per_month: float
    capacity_requests_per_second: float | None = None
    utilization: float = 1.0
    name: str = "on-premises"

    def __post_init__(self) -> None:
        _finite_nonneg("hardware price", self.hardware_eur)
        _require(
            self.amortization_months > 0 and not math.isnan(self.amortization_months),
            f"amortization months must be > 0 (got {self.amortization_months}); "
            "use inf to leave the hardware out",
        )
        _finite_nonneg("power per month", self.power_eur_per_month)
        _finite_nonneg("maintenance per month", self.maintenance_eur_per_month)
        if self.capacity_requests_per_second is not None:
            _require(
                math.isfinite(self.capacity_requests_per_second) and self.capacity_requests_per_second > 0,
                f"on-premises throughput must be > 0 requests/s (got {self.capacity_requests_per_second})",
            )
        _require(0 < self.utilization <= 1, f"utilization must be in (0, 1] (got {self.utilization})")

    @property
    def eur_per_machine_month(self) -> float:
        amortized = (
            0.0 if math.isinf(self.amortization_months) else self.hardware_eur / self.amortization_months
        )
        return amortized + self.power_eur_per_month + self.maintenance_eur_per_month

    @property
    def requests_per_machine_month(self) -> float:
        if self.capacity_requests_per_second is None:
            return math.inf
        return self.capacity_requests_per_second * self.utilization * SECONDS_PER_MONTH

    def machines(self, requests_per_month: float) -> int:
        cap = self.requests_per_machine_month
        if math.isinf(cap) or requests_per_month <= 0:
            return 1
        return max(1, math.ceil(requests_per_month / cap - 1e-12))


@dataclass(frozen=True)
class Cloud:
    """Rented GPUs billed by the hour, plus a fixed monthly cost (storage, administration...).

    `capacity_requests_per_second` is what one instance (of `gpus_per_instance` GPUs) sustains; the instance
    hours billed are the busy hours divided by `utilization` (you pay for idle time too).
    `min_instances_always_on` keeps that many instances up all month whatever the volume (0: pure pay-per-use,
    the seed's assumption).
    """

    eur_per_gpu_hour: float
    capacity_requests_per_second: float
    fixed_eur_per_month: float = 0.0
    gpus_per_instance: int = 1
    utilization: float = 1.0
    min_instances_always_on: int = 0
    name: str = "cloud"

    def __post_init__(self) -> None:
        _finite_nonneg("cloud GPU price per hour", self.eur_per_gpu_hour)
        _require(
            math.isfinite(self.capacity_requests_per_second) and self.capacity_requests_per_second > 0,
            f"cloud throughput must be > 0 requests/s (got {self.capacity_requests_per_second})",
        )
        _finite_nonneg("cloud fixed cost per month", self.fixed_eur_per_month)
        _require(
            self.gpus_per_instance >= 1, f"GPUs per instance must be >= 1 (got {self.gpus_per_instance})"
        )
        _require(0 < self.utilization <= 1, f"utilization must be in (0, 1] (got {self.utilization})")
        _require(self.min_instances_always_on >= 0, "instances always on must be >= 0")

    @property
    def eur_per_instance_hour(self) -> float:
        return self.eur_per_gpu_hour * self.gpus_per_instance

    @property
    def eur_per_request_marginal(self) -> float:
        """Cost of one more request once past the always-on floor."""
        return self.eur_per_instance_hour / (3600.0 * self.capacity_requests_per_second * self.utilization)

    @property
    def floor_requests_per_month(self) -> float:
        """The volume the always-on instances absorb before hours start to grow."""
        return (
            self.min_instances_always_on
            * HOURS_PER_MONTH
            * 3600.0
            * self.capacity_requests_per_second
            * (self.utilization)
        )


@dataclass(frozen=True)
class Segment:
    """C(V) = intercept + slope * V for V in (start, end]; a curve's first segment also includes its start."""

    start: float
    end: float
    intercept_eur: float
    slope_eur_per_request: float

    def at(self, v: float) -> float:
        return self.intercept_eur + self.slope_eur_per_request * v


@dataclass(frozen=True)
class CostCurve:
    """An option's monthly cost over volume, exact and piecewise linear on [0, max_requests_per_month]."""

    name: str
    kind: str  # "api" | "on-premises" | "cloud"
    segments: tuple[Segment, ...]

    def eur_per_month(self, requests_per_month: float) -> float:
        _finite_nonneg("requests per month", requests_per_month)
        for seg in self.segments:
            if requests_per_month <= seg.end:
                return seg.at(requests_per_month)
        raise CostInputError(
            f"{requests_per_month:g} requests per month is beyond the range the curve was built for "
            f"({self.segments[-1].end:g})"
        )

    def eur_per_request(self, requests_per_month: float) -> float:
        _require(requests_per_month > 0, "cost per request needs a volume > 0 requests per month")
        return self.eur_per_month(requests_per_month) / requests_per_month

    def breakpoints(self) -> list[float]:
        return [s.end for s in self.segments]


# More machines than this in a range means the range or the capacity is wrong; it also bounds the work.
MAX_SEGMENTS = 200_000


def api_curve(api: ApiPrice, workload: Workload, max_requests_per_month: float) -> CostCurve:
    return CostCurve(
        api.name, "api", (Segment(0.0, max_requests_per_month, 0.0, api.eur_per_request(workload)),)
    )


def on_premises_curve(onprem: OnPremises, max_requests_per_month: float) -> CostCurve:
    per_machine = onprem.eur_per_machine_month
    cap = onprem.requests_per_machine_month
    if math.isinf(cap) or cap >= max_requests_per_month:
        return CostCurve(
            onprem.name, "on-premises", (Segment(0.0, max_requests_per_month, per_machine, 0.0),)
        )
    steps = math.ceil(max_requests_per_month / cap)
    _require(
        steps <= MAX_SEGMENTS,
        f"on-premises capacity ({cap:.4g} requests/month per machine) needs {steps} machines over the range; "
        "check the throughput or lower the range",
    )
    segs = tuple(
        Segment(k * cap, min((k + 1) * cap, max_requests_per_month), (k + 1) * per_machine, 0.0)
        for k in range(steps)
    )
    return CostCurve(onprem.name, "on-premises", segs)


def cloud_curve(cloud: Cloud, max_requests_per_month: float) -> CostCurve:
    marginal = cloud.eur_per_request_marginal
    floor_v = cloud.floor_requests_per_month
    fixed = cloud.fixed_eur_per_month
    if floor_v <= 0:
        return CostCurve(cloud.name, "cloud", (Segment(0.0, max_requests_per_month, fixed, marginal),))
    floor_eur = fixed + cloud.min_instances_always_on * HOURS_PER_MONTH * cloud.eur_per_instance_hour
    if floor_v >= max_requests_per_month:
        return CostCurve(cloud.name, "cloud", (Segment(0.0, max_requests_per_month, floor_eur, 0.0),))
    return CostCurve(
        cloud.name,
        "cloud",
        (
            Segment(0.0, floor_v, floor_eur, 0.0),
            # Past the floor the cost grows at the marginal rate from the floor's cost: fixed + marginal * V.
            Segment(floor_v, max_requests_per_month, fixed, marginal),
        ),
    )


@dataclass(frozen=True)
class BreakEven:
    """A volume where the cheaper of two options changes.

    `kind` is "crossing" where the two curves are equal there, "step" where the order flips at a jump of a
    stepped curve (a new on-premises machine) without the curves ever being equal.
    """

    a: str
    b: str
    requests_per_month: float
    cheaper_below: str
    cheaper_above: str
    kind: str


def _all_breakpoints(curves: list[CostCurve]) -> list[float]:
    pts = {0.0}
    for c in curves:
        pts.update(c.breakpoints())
    return sorted(pts)


def break_evens(a: CostCurve, b: CostCurve, *, rel_tol: float = 1e-12) -> list[BreakEven]:
    """Every volume in the curves' range where the cheaper of `a` and `b` changes, solved per segment."""
    end = min(a.segments[-1].end, b.segments[-1].end)
    pts = [p for p in _all_breakpoints([a, b]) if p <= end]
    out: list[BreakEven] = []
    scale = max(1.0, a.eur_per_month(end), b.eur_per_month(end))

    def sign(d: float) -> int:
        return 0 if abs(d) <= rel_tol * scale else (1 if d > 0 else -1)

    last_sign = 0  # sign of (a - b) just before the current point; 0 while still unknown or equal
    for lo, hi in itertools.pairwise(pts):
        sa = _segment_at(a, lo, hi)
        sb = _segment_at(b, lo, hi)
        di = sa.intercept_eur - sb.intercept_eur
        ds = sa.slope_eur_per_request - sb.slope_eur_per_request
        s_lo = sign(di + ds * lo)  # limit from the right at lo
        s_hi = sign(di + ds * hi)
        if last_sign and s_lo and s_lo != last_sign:
            out.append(_be(a, b, lo, last_sign, s_lo, "step"))
        if s_lo and s_hi and s_lo != s_hi and ds != 0:
            v = -di / ds
            out.append(_be(a, b, v, s_lo, s_hi, "crossing"))
        elif s_lo == 0 and s_hi and last_sign and last_sign != s_hi:
            out.append(_be(a, b, lo, last_sign, s_hi, "crossing"))
        if s_hi:
            last_sign = s_hi
        elif s_lo:
            last_sign = s_lo
    return out


def _segment_at(c: CostCurve, lo: float, hi: float) -> Segment:
    mid = (lo + hi) / 2
    for seg in c.segments:
        if seg.start <= mid <= seg.end:
            return seg
    return c.segments[-1]


def _be(a: CostCurve, b: CostCurve, v: float, s_before: int, s_after: int, kind: str) -> BreakEven:
    # sign > 0 means a costs more than b, so b is the cheaper one.
    below = b.name if s_before > 0 else a.name
    above = b.name if s_after > 0 else a.name
    return BreakEven(a.name, b.name, v, below, above, kind)


@dataclass(frozen=True)
class CheapestRange:
    """Over (start, end] requests per month, `name` is the cheapest option."""

    start: float
    end: float
    name: str


def cheapest_ranges(curves: list[CostCurve], *, min_requests_per_month: float = 0.0) -> list[CheapestRange]:
    """Split the volume axis into ranges by cheapest option, using every pairwise break-even as a cut."""
    _require(len(curves) > 0, "no options to compare")
    end = min(c.segments[-1].end for c in curves)
    cuts = {min_requests_per_month, end}
    for i, a in enumerate(curves):
        for b in curves[i + 1 :]:
            cuts.update(be.requests_per_month for be in break_evens(a, b))
    # Step edges matter too: the cheapest can change at a jump without any pairwise equality.
    for c in curves:
        cuts.update(p for p in c.breakpoints())
    pts = sorted(p for p in cuts if min_requests_per_month <= p <= end)
    ranges: list[CheapestRange] = []
    for lo, hi in itertools.pairwise(pts):
        if hi - lo <= 1e-9 * max(1.0, hi):
            continue
        mid = (lo + hi) / 2
        best = min(curves, key=lambda c: c.eur_per_month(mid))
        if ranges and ranges[-1].name == best.name:
            ranges[-1] = CheapestRange(ranges[-1].start, hi, best.name)
        else:
            ranges.append(CheapestRange(lo, hi, best.name))
    return ranges


@dataclass(frozen=True)
class OptionCost:
    """One option at the workload's volume."""

    name: str
    kind: str
    eur_per_month: float
    eur_per_request: float
    detail: dict[str, float | int | str] = field(default_factory=dict)


def option_cost(
    curve: CostCurve, workload: Workload, detail: dict[str, float | int | str] | None = None
) -> OptionCost:
    v = workload.requests_per_month
    per_month = curve.eur_per_month(v)
    per_request = per_month / v if v > 0 else math.nan
    return OptionCost(curve.name, curve.kind, per_month, per_request, dict(detail or {}))


def requests_per_second_from_tokens(
    output_tokens_per_second: float, output_tokens_per_request: float
) -> float:
    """Turn a measured output-token throughput into requests per second for the workload's output length.

    This assumes decoding dominates (the usual case for generation), so a deployment's output tokens/s holds
    when the output length changes; prompt processing is not charged separately.
    """
    _require(
        math.isfinite(output_tokens_per_second) and output_tokens_per_second > 0,
        f"throughput must be > 0 output tokens/s (got {output_tokens_per_second})",
    )
    _require(
        output_tokens_per_request > 0,
        "output tokens per request must be > 0 to convert tokens/s to requests/s",
    )
    return output_tokens_per_second / output_tokens_per_request
