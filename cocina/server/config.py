"""`ServerConfig`: how the HTTP server listens and guards its door (serving's knobs are `ServingConfig`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerConfig:
    """Attributes:
    host, port: where uvicorn listens.
    max_body_bytes: request bodies above this are refused with 413.
    api_token: when set, every route but `/health`, `/health-check` (and `/metrics` with `public_metrics`)
        requires `Authorization: Bearer <token>`.
    public_metrics: `/metrics` answers without the token (Prometheus scrapes without credentials).
    drain_grace_s: on SIGTERM / `POST /shutdown`, how long running predictions may finish.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    max_body_bytes: int = 16 * 2**20
    api_token: str | None = None
    public_metrics: bool = False
    drain_grace_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
