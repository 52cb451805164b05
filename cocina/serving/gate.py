"""The seam between admission and the guard: what serving asks of a gate, and the refusals a gate raises.

Serving knows no keys, limits or scanners; it holds an optional `Gate` (the guard implements it) and calls it at
fixed points of `admit` and of a prediction's life:

1. `check(req, model)` once the model is resolved: may this principal use this model (404/403), and is the
   request within its rate (429)? Returns a `Ticket` that travels with the prediction.
2. `scan(ticket, value)` on the input before it is validated or planned: strips invisible characters, redacts,
   or marks the ticket blocked. What the scanners redact never reaches the store.
3. `reserve(ticket, tokens)` for a generation once its prompt is tokenized (prompt + max_tokens, charged up
   front); `release(ticket)` if admission fails after it.
4. `output_filter(ticket)`: scans the output as it streams (redaction, blocking), on the typed event stream
   that every API renders.
5. `persist(rec)`: what the store keeps of a record (privacy mode keeps keyed hashes, not text).
6. `finished(rec, ticket, usage)` when the prediction ends: refund unused tokens, append to the audit log.

Errors here are serving errors; `cocina.server.errors` gives them their status in each API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cocina.serving.errors import ServingError

if TYPE_CHECKING:
    from cocina.serving.admission import AdmissionRequest
    from cocina.serving.model import ServedModel
    from cocina.store import PredictionRecord


class Principal(Protocol):
    """Who a request acts for (an API key); `id` is what predictions record."""

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class LimitState:
    """One limit as a client sees it in headers: `name` is `requests` or `tokens`; `reset_s` when it resets."""

    name: str
    limit: int
    remaining: int
    reset_s: float


class AccessDenied(ServingError):
    """The principal may not do this; with `hide`, the model is answered as not found (404), so that a key
    cannot probe which models exist."""

    def __init__(self, message: str, *, hide: bool = False) -> None:
        super().__init__(message)
        self.hide = hide


class RateLimited(ServingError):
    """Over a rate limit (`reason`: `requests` or `tokens`); `limits` are the states for the headers."""

    def __init__(
        self, message: str, *, reason: str, limits: tuple[LimitState, ...] = (), retry_after_s: int | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.reason = reason
        self.limits = limits


class QuotaExceeded(ServingError):
    """The key's token budget for the month is spent (not a rate limit: retrying soon will not help)."""


class ContentBlocked(ServingError):
    """A scanner blocked the input (or the output of a non-streamed answer); `scanner` names it."""

    def __init__(self, message: str, *, scanner: str, prediction_id: str | None = None) -> None:
        super().__init__(message)
        self.scanner = scanner
        self.prediction_id = prediction_id


@dataclass
class Ticket:
    """What the gate decided about one prediction, carried from admission to its end."""

    principal: Principal | None
    model: str
    version: str
    surface: str
    record: dict[str, Any] = field(default_factory=dict)  # becomes the prediction's `guard` field
    blocked: str | None = None  # the message when an input scanner blocked the request
    blocked_by: str | None = None
    redacted: bool = False
    limits: list[LimitState] = field(default_factory=list)  # for the response headers
    reservation: Any = None
    settings: Any = None  # the gate's policy for this model


class OutputFilter(Protocol):
    """Scans a prediction's output as it is produced. Each call returns what may be released now and whether
    the output is blocked (then nothing more is released and the prediction stops)."""

    def text(self, choice: int, text: str) -> tuple[str, bool]:
        """New text of a token stream (a generation's choice); some may be held back until it is safe."""
        ...

    def flush(self, choice: int) -> tuple[str, bool]:
        """The choice ended: release what was held back."""
        ...

    def value(self, value: Any) -> tuple[Any, bool]:
        """One whole output value (a predictor's output, or one item of its iterator)."""
        ...


class Gate(Protocol):
    """What serving calls; see the module's docstring for when."""

    def check(self, req: AdmissionRequest, model: ServedModel) -> Ticket: ...

    def scan(self, ticket: Ticket, value: dict[str, Any], model: ServedModel) -> dict[str, Any]: ...

    def reserve(self, ticket: Ticket, tokens: int) -> None: ...

    def release(self, ticket: Ticket) -> None: ...

    def output_filter(self, ticket: Ticket) -> OutputFilter | None: ...

    def persist(self, rec: PredictionRecord) -> PredictionRecord: ...

    def finished(self, rec: PredictionRecord, ticket: Ticket | None, tokens_used: int | None) -> None: ...

    async def start(self, store: Any) -> None: ...

    async def stop(self) -> None: ...
