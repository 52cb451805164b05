"""`ServerSettings`: every knob of the server in one typed object, built once by the CLI and passed down.

Nothing here reads the environment; tests build settings directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSettings:
    """How the server listens, stores and limits.

    Attributes:
        host, port: where uvicorn listens.
        data_dir: holds the SQLite store (`predictions.db`) and uploaded files (`files/`).
        model_owner, model_name: the served project as a Replicate model (`owner/name`).
        version_id: the model version id (a content hash of the project), computed by the CLI.
        concurrency: predictions running at once (workers feeding the backend); None: as many as the backend
            says it can run (`max_concurrency`, known after setup).
        max_queue: predictions waiting beyond the running ones; more are refused with 429 + Retry-After.
        max_body_bytes: request bodies above this are refused with 413.
        prediction_timeout_s: a per-prediction deadline (None: none); an overrun prediction fails.
        max_tokens_limit: the most tokens one OpenAI request may ask for.
        drain_grace_s: on SIGTERM / `POST /shutdown`, how long running predictions may finish before
        cancellation.
        retention_s: inputs and outputs of predictions completed longer ago are removed (None: kept for ever).
        max_rerun_attempts: after a crash, a prediction is re-run at most this many times, then failed.
        api_token: if set, `/v1/*` requires `Authorization: Bearer <token>`.
        webhook_min_interval_s: output/log webhooks are sent at most this often (Cog: 500 ms).
        webhook_retries: attempts for a terminal webhook.
        output_inline_max_bytes: file outputs up to this size become data URLs; larger ones are served from
        /v1/files.
        public_url: the base URL clients reach the server at (file URLs); default `http://host:port`.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    data_dir: Path = Path(".cocina")
    model_owner: str = "local"
    model_name: str = "model"
    version_id: str = "0" * 64
    concurrency: int | None = None
    max_queue: int = 64
    max_body_bytes: int = 16 * 2**20
    prediction_timeout_s: float | None = None
    max_tokens_limit: int = 4096
    drain_grace_s: float = 30.0
    retention_s: float | None = None
    max_rerun_attempts: int = 2
    api_token: str | None = None
    webhook_min_interval_s: float = 0.5
    webhook_retries: int = 4
    output_inline_max_bytes: int = 2**20
    public_url: str | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")

    @property
    def model_ref(self) -> str:
        """`owner/name`."""
        return f"{self.model_owner}/{self.model_name}"

    @property
    def base_url(self) -> str:
        """The URL this server is reached at, for URLs that outlive the request (file outputs, webhooks)."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "predictions.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def replace(self, **changes: object) -> ServerSettings:
        """A copy with some fields changed (tests, and the CLI once the port is known)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
