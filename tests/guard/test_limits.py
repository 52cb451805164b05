"""Sliding-window limits and monthly budgets in the store: charged up front, refunded at the end, and never
overshot by concurrent requests (threads, and two stores on one file as two replicas would be)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cocina.guard.limits import WINDOW_S, Limiter, Window, month_of, seconds_to_next_month
from cocina.serving.gate import QuotaExceeded, RateLimited
from cocina.store import KeyRecord, SQLiteStore

T0 = 1_800_000_000.0 - 1_800_000_000.0 % WINDOW_S  # a minute boundary


def key(**limits: int) -> KeyRecord:
    return KeyRecord(id="key_t", name="t", lookup="abcdefgh", secret_hash=b"x", **limits)  # type: ignore[arg-type]


def test_requests_per_minute_slide(store: SQLiteStore) -> None:
    lim = Limiter(store)
    k = key(rpm=3)
    for i in range(3):
        states = lim.charge_request(k, now=T0 + i)
    assert states[0].remaining == 0
    with pytest.raises(RateLimited) as err:
        lim.charge_request(k, now=T0 + 10)
    assert err.value.reason == "requests" and err.value.retry_after_s is not None
    # At the next minute's start the previous minute still counts in full; a third of the way in, 2 of 3 do.
    with pytest.raises(RateLimited):
        lim.charge_request(k, now=T0 + WINDOW_S + 1)
    lim.charge_request(k, now=T0 + WINDOW_S + 21)  # 3 * (1 - 21/60) = 1.95 + 1 <= 3
    # The retry-after it gave was honest: just before it, refused; at it, allowed (fresh state).
    store2 = Limiter(store)
    k2 = KeyRecord(id="key_u", name="u", lookup="bbbbbbbb", secret_hash=b"x", rpm=2)
    store2.charge_request(k2, now=T0 + 30)
    store2.charge_request(k2, now=T0 + 31)
    with pytest.raises(RateLimited) as err:
        store2.charge_request(k2, now=T0 + 32)
    wait = err.value.retry_after_s
    assert wait is not None
    with pytest.raises(RateLimited):
        store2.charge_request(k2, now=T0 + 32 + wait - 2)
    store2.charge_request(k2, now=T0 + 32 + wait)


def test_tokens_are_reserved_then_refunded(store: SQLiteStore) -> None:
    lim = Limiter(store)
    k = key(tpm=1000, monthly_tokens=5000)
    r1, states = lim.reserve(k, 600, now=T0)
    assert states[0].name == "tokens" and states[0].remaining == 400
    with pytest.raises(RateLimited) as err:
        lim.reserve(k, 600, now=T0 + 1)
    assert err.value.reason == "tokens"
    lim.settle(r1, 100)  # the answer was short: 500 come back
    lim.settle(r1, 100)  # settling twice refunds once
    r2, _ = lim.reserve(k, 600, now=T0 + 2)
    assert lim.usage(k, now=T0 + 2)["month_tokens"] == 700
    with pytest.raises(RateLimited, match="Request too large"):
        lim.reserve(k, 1001, now=T0 + 3)
    lim.settle(r2, 600)


def test_the_monthly_budget_is_a_quota_not_a_rate(store: SQLiteStore) -> None:
    lim = Limiter(store)
    k = key(monthly_tokens=1000)
    lim.reserve(k, 900, now=T0)
    with pytest.raises(QuotaExceeded) as err:
        lim.reserve(k, 200, now=T0 + 120)
    assert err.value.retry_after_s == pytest.approx(seconds_to_next_month(T0 + 120), abs=1)
    assert month_of(T0) == 202701


def test_the_window_arithmetic() -> None:
    w = Window(10, previous=10, current=0, now=T0 + 30)
    assert w.count == 5 and w.allows(5) and not w.allows(6) and w.remaining() == 5
    assert w.wait_s(6) == pytest.approx(6.0)  # 10 * (1 - 36/60) = 4, + 6 = 10
    assert Window(10, 0, 10, T0).wait_s(1) == pytest.approx(WINDOW_S + 6)
    assert Window(10, 0, 0, T0).wait_s(11) is None


@pytest.mark.parametrize("replicas", [1, 2])
def test_parallel_requests_of_one_key_never_overshoot(tmp_path: Path, replicas: int) -> None:
    """32 threads reserve 100 tokens each against a budget of 1,000 (and 20 requests a minute): exactly 10
    reservations succeed; with two stores on one file (two replicas) too."""
    stores = [SQLiteStore(tmp_path / "shared.db") for _ in range(replicas)]
    k = key(tpm=1000, rpm=20)
    ok: list[int] = []
    refused: list[str] = []
    barrier = threading.Barrier(32)

    def one(i: int) -> None:
        lim = Limiter(stores[i % replicas])
        barrier.wait()
        try:
            lim.charge_request(k, now=T0 + 1)
            lim.reserve(k, 100, now=T0 + 1)
            ok.append(i)
        except (RateLimited, QuotaExceeded) as exc:
            refused.append(type(exc).__name__)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 10 and len(refused) == 22
    usage = Limiter(stores[0]).usage(k, now=T0 + 1)
    assert usage["month_tokens"] == 1000 and usage["month_requests"] == 20
    for s in stores:
        s.close()
