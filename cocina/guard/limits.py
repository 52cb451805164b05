"""Per-key rate limits and quotas in the store: requests per minute, tokens per minute, a monthly token budget.

The per-minute limits are sliding-window counters (the algorithm of Cloudflare's limiter and of the `limits`
library's `SlidingWindowCounterRateLimiter`): a key's count is the previous minute's weighted by how much of it
still overlaps the last 60 seconds, plus the current minute's. Unlike a fixed window it does not let a burst
at a minute's end and another at the next minute's start through together, and it needs two counters per
key, not a log of every request. `limits` itself is not used: it checks one limit at a time (a request must pass
RPM, TPM and the budget together or be charged for none), it cannot refund, and it has no SQL storage — the
part that makes replicas share counts is exactly what would have to be written anyway.

Tokens are reserved up front (prompt tokens + max_tokens) and the unused part refunded when the answer ends, so
a burst of parallel requests can never overshoot. Every check-and-charge is one `Store.usage_update`
transaction: concurrent requests of one key (even on several servers sharing the store) see each other.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cocina.serving.gate import LimitState, QuotaExceeded, RateLimited
from cocina.store import KeyRecord, Store, UsageCell

WINDOW_S = 60


def _minute(now: float) -> int:
    return int(now // WINDOW_S)


def month_of(now: float) -> int:
    d = datetime.fromtimestamp(now, UTC)
    return d.year * 100 + d.month


def seconds_to_next_month(now: float) -> float:
    d = datetime.fromtimestamp(now, UTC)
    nxt = datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC)
    return nxt.timestamp() - now


@dataclass
class Window:
    """A sliding-window counter's view at `now`: previous and current minute counts."""

    limit: int
    previous: int
    current: int
    now: float

    @property
    def elapsed(self) -> float:
        """How far into the current minute `now` is (0..1)."""
        return (self.now % WINDOW_S) / WINDOW_S

    @property
    def count(self) -> float:
        return self.previous * (1 - self.elapsed) + self.current

    def allows(self, cost: int) -> bool:
        return self.count + cost <= self.limit

    def remaining(self) -> int:
        return max(0, math.floor(self.limit - self.count))

    def wait_s(self, cost: int) -> float | None:
        """Seconds until `cost` more would be allowed (None: never, the cost is above the limit)."""
        if cost > self.limit:
            return None
        if self.allows(cost):
            return 0.0
        into = self.now % WINDOW_S
        if self.current + cost <= self.limit and self.previous:
            # Within this minute, once enough of the previous one has slid out.
            need = 1 - (self.limit - self.current - cost) / self.previous
            return max(0.0, need * WINDOW_S - into)
        # After the boundary the current minute becomes the previous one and decays in turn.
        need = 1 - (self.limit - cost) / self.current if self.current else 0.0
        return (WINDOW_S - into) + max(0.0, need) * WINDOW_S

    def state(self, name: str, cost: int = 0) -> LimitState:
        wait = self.wait_s(max(cost, 1))
        reset = wait if wait else WINDOW_S - self.now % WINDOW_S
        return LimitState(name, self.limit, self.remaining(), reset if reset is not None else WINDOW_S)


@dataclass
class Reservation:
    """Tokens charged up front for one request: refunded in part when it ends."""

    key_id: str
    tokens: int
    minute: int
    month: int
    settled: bool = False


class Limiter:
    """Checks and charges a key's limits in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def charge_request(self, key: KeyRecord, now: float | None = None) -> list[LimitState]:
        """Count one request against the key's requests per minute; `RateLimited` when over. Returns the
        states for the response headers."""
        now = time.time() if now is None else now
        minute, month = _minute(now), month_of(now)
        cells: list[UsageCell] = [("requests", minute - 1), ("requests", minute), ("tokens", minute - 1),
                                  ("tokens", minute)]
        seen: dict[str, Window] = {}

        def decide(current: dict[UsageCell, int]) -> dict[UsageCell, int] | None:
            if key.tpm is not None:
                seen["tokens"] = Window(key.tpm, current[("tokens", minute - 1)], current[("tokens", minute)], now)
            if key.rpm is not None:
                w = Window(key.rpm, current[("requests", minute - 1)], current[("requests", minute)], now)
                seen["requests"] = w
                if not w.allows(1):
                    return None
            return {("requests", minute): 1, ("month_requests", month): 1}

        if self.store.usage_update(key.id, cells, decide) is None:
            w = seen["requests"]
            wait = w.wait_s(1) or 1.0
            raise RateLimited(
                f"Rate limit reached for requests: this key may make {key.rpm} requests per minute. "
                f"Try again in {math.ceil(wait)}s.",
                reason="requests",
                limits=tuple(v.state(k) for k, v in seen.items()),
                retry_after_s=max(1, math.ceil(wait)),
            )
        states = []
        for name, w in seen.items():
            if name == "requests":
                w = Window(w.limit, w.previous, w.current + 1, now)
            states.append(w.state(name))
        return states

    def reserve(self, key: KeyRecord, tokens: int, now: float | None = None) -> tuple[Reservation, list[LimitState]]:
        """Charge `tokens` (prompt + max_tokens) against the tokens per minute and the monthly budget at once;
        `RateLimited` or `QuotaExceeded` when either would be passed (nothing is charged then)."""
        now = time.time() if now is None else now
        minute, month = _minute(now), month_of(now)
        cells: list[UsageCell] = [("tokens", minute - 1), ("tokens", minute), ("month_tokens", month)]
        refusal: dict[str, object] = {}
        seen: dict[str, Window] = {}

        def decide(current: dict[UsageCell, int]) -> dict[UsageCell, int] | None:
            used = current[("month_tokens", month)]
            if key.monthly_tokens is not None and used + tokens > key.monthly_tokens:
                refusal["quota"] = used
                return None
            if key.tpm is not None:
                w = Window(key.tpm, current[("tokens", minute - 1)], current[("tokens", minute)], now)
                seen["tokens"] = w
                if not w.allows(tokens):
                    refusal["tokens"] = w
                    return None
            return {("tokens", minute): tokens, ("month_tokens", month): tokens}

        if self.store.usage_update(key.id, cells, decide) is None:
            if "quota" in refusal:
                left = max(0, (key.monthly_tokens or 0) - int(refusal["quota"]))  # type: ignore[call-overload]
                raise QuotaExceeded(
                    f"You exceeded your current quota: this key's monthly budget is {key.monthly_tokens} tokens, "
                    f"{left} are left and this request needs {tokens} (its prompt plus max_tokens).",
                    retry_after_s=max(1, math.ceil(seconds_to_next_month(now))),
                )
            w = seen["tokens"]
            wait = w.wait_s(tokens)
            if wait is None:
                raise RateLimited(
                    f"Request too large: it needs {tokens} tokens (its prompt plus max_tokens) and this key may use "
                    f"{key.tpm} tokens per minute. Ask for fewer max_tokens.",
                    reason="tokens",
                    limits=(w.state("tokens"),),
                    retry_after_s=None,
                )
            raise RateLimited(
                f"Rate limit reached for tokens: this key may use {key.tpm} tokens per minute and this request "
                f"needs {tokens}. Try again in {math.ceil(wait)}s.",
                reason="tokens",
                limits=(w.state("tokens", tokens),),
                retry_after_s=max(1, math.ceil(wait)),
            )
        states = [Window(w.limit, w.previous, w.current + tokens, now).state(k) for k, w in seen.items()]
        return Reservation(key.id, tokens, minute, month), states

    def settle(self, reservation: Reservation, used: int) -> None:
        """The request ended having used `used` tokens: refund the rest of its reservation (once)."""
        if reservation.settled:
            return
        reservation.settled = True
        refund = reservation.tokens - used
        if refund == 0:
            return
        cells: list[UsageCell] = [("tokens", reservation.minute), ("month_tokens", reservation.month)]

        def decide(current: dict[UsageCell, int]) -> dict[UsageCell, int]:
            # Never below zero (a counter pruned meanwhile): refunds only give back what was charged.
            return {c: -min(refund, current[c]) if refund > 0 else -refund for c in cells}

        self.store.usage_update(reservation.key_id, cells, decide)

    def charge_tokens(self, key_id: str, tokens: int, now: float | None = None) -> None:
        """Count tokens used without a reservation (a Cog prediction that reported its token counts)."""
        if tokens <= 0:
            return
        now = time.time() if now is None else now
        minute, month = _minute(now), month_of(now)
        deltas = {("tokens", minute): tokens, ("month_tokens", month): tokens}
        self.store.usage_update(key_id, list(deltas), lambda current: deltas)

    def usage(self, key: KeyRecord, now: float | None = None) -> dict[str, object]:
        """What the key has used: this minute's sliding counts, this month's totals, and the months before."""
        now = time.time() if now is None else now
        minute, month = _minute(now), month_of(now)
        rows = self.store.usage_rows(key.id)
        get = {(k, w): a for k, w, a in rows}
        req = Window(key.rpm or 0, get.get(("requests", minute - 1), 0), get.get(("requests", minute), 0), now)
        tok = Window(key.tpm or 0, get.get(("tokens", minute - 1), 0), get.get(("tokens", minute), 0), now)
        months = sorted({w for k, w, _ in rows if k.startswith("month_")})
        return {
            "requests_last_minute": round(req.count, 1),
            "tokens_last_minute": round(tok.count, 1),
            "month": month,
            "month_requests": get.get(("month_requests", month), 0),
            "month_tokens": get.get(("month_tokens", month), 0),
            "months": {
                m: {"requests": get.get(("month_requests", m), 0), "tokens": get.get(("month_tokens", m), 0)}
                for m in months
            },
        }

    def prune(self, now: float | None = None) -> None:
        """Forget per-minute counters older than the sliding window needs."""
        now = time.time() if now is None else now
        for kind in ("requests", "tokens"):
            self.store.usage_prune(kind, _minute(now) - 2)
