"""The cost model's units and formulas, and the seed document's numbers from its own assumptions."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from cocina.cost.model import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    ApiPrice,
    Cloud,
    CostInputError,
    OnPremises,
    Workload,
    api_curve,
    average_api,
    break_evens,
    cheapest_ranges,
    cloud_curve,
    on_premises_curve,
    requests_per_second_from_tokens,
)
from cocina.cost.presets import load_presets
from cocina.cost.scenario import Scenario, evaluate

VMAX = 1e9


# ---------------------------------------------------------------- units and formulas


def test_api_price_per_request_uses_input_and_output_prices_per_million() -> None:
    w = Workload(1000, prompt_tokens_per_request=1000, output_tokens_per_request=500)
    api = ApiPrice("x", eur_per_million_input_tokens=2.5, eur_per_million_output_tokens=10.0)
    # 1000 * 2.5e-6 + 500 * 10e-6 = 0.0025 + 0.005
    assert api.eur_per_request(w) == pytest.approx(0.0075)
    assert api_curve(api, w, VMAX).eur_per_month(1000) == pytest.approx(7.5)


def test_on_premises_amortization_power_maintenance_and_machine_steps() -> None:
    onprem = OnPremises(
        hardware_eur=36_000,
        amortization_months=36,
        power_eur_per_month=200,
        maintenance_eur_per_month=300,
        capacity_requests_per_second=1.0,
        utilization=0.5,
    )
    assert onprem.eur_per_machine_month == pytest.approx(1000 + 200 + 300)
    cap = 1.0 * 0.5 * SECONDS_PER_MONTH  # requests one machine serves per month
    assert onprem.requests_per_machine_month == pytest.approx(cap)
    curve = on_premises_curve(onprem, VMAX)
    assert curve.eur_per_month(0) == pytest.approx(1500)  # a machine is bought even for no traffic
    assert curve.eur_per_month(cap) == pytest.approx(1500)
    assert curve.eur_per_month(cap * 1.0001) == pytest.approx(3000)
    assert curve.eur_per_month(cap * 2.5) == pytest.approx(4500)
    assert onprem.machines(cap * 2.5) == 3


def test_cloud_hours_price_gpus_utilization_and_fixed() -> None:
    c = Cloud(
        eur_per_gpu_hour=2.0,
        capacity_requests_per_second=0.25,
        fixed_eur_per_month=100,
        gpus_per_instance=2,
        utilization=0.5,
    )
    # One request keeps the instance 4 s busy; at 50% utilization 8 s are billed, at 4 EUR/h per instance.
    assert c.eur_per_request_marginal == pytest.approx(4.0 * 8 / 3600)
    curve = cloud_curve(c, VMAX)
    assert curve.eur_per_month(36_000) == pytest.approx(100 + 36_000 * 8 / 3600 * 4.0)


def test_cloud_always_on_floor_then_linear() -> None:
    c = Cloud(eur_per_gpu_hour=1.0, capacity_requests_per_second=1.0, min_instances_always_on=1)
    floor_v = HOURS_PER_MONTH * 3600
    curve = cloud_curve(c, VMAX)
    assert curve.eur_per_month(10) == pytest.approx(HOURS_PER_MONTH)
    assert curve.eur_per_month(floor_v) == pytest.approx(HOURS_PER_MONTH)
    assert curve.eur_per_month(2 * floor_v) == pytest.approx(2 * HOURS_PER_MONTH)


def test_break_even_between_linear_curves_is_exact() -> None:
    w = Workload(1, 1000, 0)
    a = api_curve(ApiPrice("api", 10.0, 0.0), w, VMAX)  # 0.01 EUR per request
    o = on_premises_curve(OnPremises(0, math.inf, 0, 1000), VMAX)  # 1000 EUR per month flat
    [be] = break_evens(a, o)
    assert be.requests_per_month == pytest.approx(100_000, rel=1e-12)
    assert (be.cheaper_below, be.cheaper_above, be.kind) == ("api", "on-premises", "crossing")


def test_break_even_with_machine_steps_finds_crossings_and_step_flips() -> None:
    # Each machine serves 200k requests a month for 1000 EUR; the API costs 0.009 EUR a request. The API wins
    # up to 111,111; then the machine; when a second machine is needed at 200k the API (1,800) is cheaper
    # again than two machines (2,000) until 222,222; from then on machines win (the API's 0.009 is above their
    # 0.005 average).
    w = Workload(1, 900, 0)
    a = api_curve(ApiPrice("api", 10.0, 0.0), w, 1e6)
    cap_rps = 200_000 / SECONDS_PER_MONTH
    o = on_premises_curve(OnPremises(0, math.inf, 0, 1000, capacity_requests_per_second=cap_rps), 1e6)
    kinds = [
        (round(b.requests_per_month), b.kind, b.cheaper_below, b.cheaper_above) for b in break_evens(a, o)
    ]
    assert kinds == [
        (111_111, "crossing", "api", "on-premises"),
        (200_000, "step", "on-premises", "api"),
        (222_222, "crossing", "api", "on-premises"),
    ]
    ranges = cheapest_ranges([a, o])
    assert [(round(r.start), r.name) for r in ranges] == [
        (0, "api"),
        (111_111, "on-premises"),
        (200_000, "api"),
        (222_222, "on-premises"),
    ]


def test_cheapest_ranges_cover_the_axis_in_order() -> None:
    w = Workload(1, 1000, 0)
    curves = [
        api_curve(ApiPrice("api", 10.0, 0.0), w, VMAX),
        cloud_curve(Cloud(3.6, 1.0, fixed_eur_per_month=500), VMAX),  # 0.001 EUR per request + 500
        on_premises_curve(OnPremises(0, math.inf, 0, 2000), VMAX),
    ]
    ranges = cheapest_ranges(curves)
    assert [r.name for r in ranges] == ["api", "cloud", "on-premises"]
    assert ranges[0].end == pytest.approx(500 / 0.009)
    assert ranges[1].end == pytest.approx(1_500_000)


def test_tokens_per_second_to_requests_per_second() -> None:
    assert requests_per_second_from_tokens(300.0, 500) == pytest.approx(0.6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Workload(-1, 10, 10), "requests per month must be a finite number >= 0"),
        (lambda: Workload(1, 0, 0), "at least one prompt or output token"),
        (lambda: Cloud(1.0, 0.0), "cloud throughput must be > 0 requests/s"),
        (
            lambda: OnPremises(1, 36, 0, 0, capacity_requests_per_second=0),
            "on-premises throughput must be > 0",
        ),
        (lambda: OnPremises(1, 0, 0, 0), "amortization months must be > 0"),
        (lambda: Cloud(1.0, 1.0, utilization=0), "utilization must be in (0, 1]"),
        (lambda: ApiPrice("x", -1, 1), "input price must be a finite number >= 0"),
        (lambda: requests_per_second_from_tokens(0, 500), "throughput must be > 0 output tokens/s"),
    ],
)
def test_bad_inputs_are_rejected_with_clear_messages(make: Callable[[], object], message: str) -> None:
    with pytest.raises(CostInputError) as exc:
        make()
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------- the seed document (seeds/004), reproduced


def seed_scenario() -> Scenario:
    """The seed's assumptions exactly as it states them, built from the shipped presets."""
    p = load_presets()
    apis = [p.apis["seed-openai-gpt-4"], p.apis["seed-anthropic-claude-3-opus"]]
    return Scenario(
        Workload(1_000_000, 1000, 500),
        [*apis, average_api(apis)],
        OnPremises(
            hardware_eur=45_000,
            amortization_months=math.inf,
            power_eur_per_month=0,
            maintenance_eur_per_month=2500,
        ),
        Cloud(
            eur_per_gpu_hour=p.gpus["seed-high-capacity"].eur_per_gpu_hour,
            capacity_requests_per_second=0.5,
            fixed_eur_per_month=2000,
        ),
    )


def test_seed_per_request_figures() -> None:
    report = evaluate(seed_scenario())
    cost = {o.name: o.eur_per_request for o in report.options}
    # "OpenAI GPT-4: 0.03€ * (1500 / 1000) = 0.045€", "Anthropic Claude 3 Opus: ... = 0.03€", "promedio de
    # 0.0375€"
    assert cost["seed-openai-gpt-4"] == pytest.approx(0.045)
    assert cost["seed-anthropic-claude-3-opus"] == pytest.approx(0.03)
    assert cost["API (average)"] == pytest.approx(0.0375)
    # "2500€ (mantenimiento) / 1.000.000 requests = 0.0025€ por request"
    assert cost["on-premises"] == pytest.approx(0.0025)
    # "(2 segundos / 60 segundos) * 0.10€ = 0.00333€" and "0.002€ + 0.00333€ = 0.00533€": exactly 0.0053333...
    assert report.scenario.cloud is not None
    assert report.scenario.cloud.eur_per_request_marginal == pytest.approx(2 / 60 * 0.10)
    assert cost["cloud"] == pytest.approx(0.002 + 0.1 / 30)
    assert cost["cloud"] == pytest.approx(0.00533, abs=5e-6)  # the seed rounds 0.0053333 to 0.00533


def test_seed_break_evens_and_where_its_ranges_are_approximate() -> None:
    report = evaluate(seed_scenario())
    be = {(b.a, b.b): b.requests_per_month for b in report.break_evens}
    # API (0.0375/request) = on-premises (2500/month)  ->  V = 2500 / 0.0375
    assert be[("API (average)", "on-premises")] == pytest.approx(66_666.666, rel=1e-6)
    # API = cloud: 0.0375 V = 2000 + V/300  ->  V = 2000 / (0.0375 - 1/300)
    assert be[("API (average)", "cloud")] == pytest.approx(2000 / (0.0375 - 1 / 300), rel=1e-9)
    assert be[("API (average)", "cloud")] == pytest.approx(58_536.585, rel=1e-6)
    # cloud = on-premises: 2000 + V/300 = 2500  ->  V = 150,000
    assert be[("on-premises", "cloud")] == pytest.approx(150_000, rel=1e-9)

    # The seed recommends the API below 100,000 requests a month, the cloud from 100,000 to 1 million and
    # on-premises above 1 million. Its own numbers put the switches at about 58,537 and 150,000 instead:
    curves = [c for c in report.curves if c.name in ("API (average)", "on-premises", "cloud")]
    ranges = cheapest_ranges(curves)
    assert [r.name for r in ranges] == ["API (average)", "cloud", "on-premises"]
    assert ranges[0].end == pytest.approx(58_536.585, rel=1e-6)
    assert ranges[1].end == pytest.approx(150_000)
    # At 500,000 a month (inside the seed's "cloud" band) on-premises is already cheaper by its own numbers.
    at = {c.name: c.eur_per_month(500_000) for c in curves}
    assert at["on-premises"] == pytest.approx(2500) and at["cloud"] == pytest.approx(2000 + 500_000 / 300)
    assert at["on-premises"] < at["cloud"]


def test_seed_arithmetic_that_is_approximate() -> None:
    # The parts list sums to 44,800 EUR, rounded up to "unos 45000€".
    assert 3500 + 800 + 500 + 39_000 + 1000 == 44_800
    # "Aproximadamente el 5% del costo inicial ... es decir, unos 2500€": 5% of 45,000 is 2,250.
    assert pytest.approx(2250) == 0.05 * 45_000
    # With the 5% actually applied the break-even against the averaged API moves from 66,667 to 60,000.
    w = Workload(1, 1000, 500)
    api = api_curve(ApiPrice("api", 25, 25), w, VMAX)
    onprem = on_premises_curve(OnPremises(45_000, math.inf, 0, 2250), VMAX)
    assert break_evens(api, onprem)[0].requests_per_month == pytest.approx(60_000)
    # The seed's on-premises cost per request leaves out the 45,000 EUR investment. Amortized over 36 months
    # it adds 1,250 EUR a month: 0.00375 EUR per request at 1M, and the API break-even becomes exactly
    # 100,000.
    amortized = on_premises_curve(OnPremises(45_000, 36, 0, 2500), VMAX)
    assert amortized.eur_per_request(1_000_000) == pytest.approx(0.00375)
    assert break_evens(api, amortized)[0].requests_per_month == pytest.approx(100_000)


def test_presets_have_a_date_and_source_for_every_price() -> None:
    p = load_presets()
    for a in p.apis.values():
        assert a.date and a.source
    for g in p.gpus.values():
        assert g.date and g.source
    for name in ("t4", "a100", "rtx-4090", "h100", "seed-high-capacity"):
        assert name in p.gpus
    # 0.10 EUR per minute is 6 EUR per hour.
    assert p.gpus["seed-high-capacity"].eur_per_gpu_hour == pytest.approx(6.0)
    # A USD price is converted with the file's rate.
    assert p.gpus["t4"].eur_per_gpu_hour == pytest.approx(0.36 * p.eur_per_unit["USD"])
