"""`ServingConfig`: every knob of serving (queues, deadlines, leases, loading, retention, webhooks), typed and
built once by the CLI. Nothing reads the environment; tests build it directly."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServingConfig:
    """How predictions are queued, run, kept and recovered.

    Attributes:
        data_dir: holds the store (`predictions.db`, unless `store_url`) and files (`files/`).
        store_url: a shared store instead of the data directory's SQLite file (`postgresql://...`): several
            replicas serving the same models share their predictions through it.
        public_url: the base URL clients reach the server at (file outputs, webhooks).
        concurrency: predictions one model runs at once; None: what the model supports (an async predictor's
            `concurrency.max`; the engine's `max_num_seqs` for a language model).
        max_queue: predictions that may wait per model beyond the running ones; more get `QueueFull`.
        prediction_timeout_s: a per-prediction deadline (None: none); an overrun prediction fails.
        max_tokens_limit: the most tokens one OpenAI request may ask for.
        drain_grace_s: on shutdown, how long running predictions may finish before they are canceled.
        retention_s: inputs and outputs of predictions completed longer ago are removed (None: kept).
        max_rerun_attempts: a prediction reclaimed after a crash is re-run at most this many times, then failed.
        lease_s: how long a server's claim on a prediction lasts without renewal; after it, another server
            (or this one, restarted) takes the prediction over.
        load_timeout_s: how long a request waits for its model to load before `ModelUnavailable`.
        max_loaded: models loaded at once (None: no limit); the least recently used idle one is unloaded.
        memory_budget_bytes: resident memory all model processes may use together (None: no limit).
        webhook_min_interval_s, webhook_retries: webhook throttling and retries of the terminal event.
        output_inline_max_bytes: file outputs up to this size become data URLs; larger ones are served.
        store_threads: how many batches of the hot path's store writes (acceptances, "running" writes, partial
            output, final states) may be in flight at once, each one transaction on a thread and connection of its
            own (`StoreWriter`); writes made meanwhile gather into the next batch. 0 makes each write a call on
            the event loop. None (default): 2 for a store that serves concurrent calls (PostgreSQL; on 2 cores
            1-2 gave 980-1,060 echo predictions/s, 4 gave 810, 8 gave 610: smaller batches, more commits), 0 for
            SQLite (one file, one lock: threads would only add hops).
        upload_url: when set, file outputs are PUT under this URL instead (Cog's `--upload-url`) and the
            output is where they went (see `cocina.serving.files`).
        embedding_models: names `/v1/embeddings` answers to -> a built-in embedding model or a directory (the
            default embedding model is always there under its own name); indexes live in `data_dir/indexes`.
        allow_private_urls: `Path` inputs may be URLs of loopback, private and link-local addresses (refused
            by default: SSRF).
        url_allow_hosts: hosts (`name` or `name:port`) that `Path` URLs may name whatever they resolve to.
    """

    data_dir: Path = Path(".cocina")
    store_url: str | None = None
    public_url: str = "http://127.0.0.1:5000"
    concurrency: int | None = None
    max_queue: int = 64
    prediction_timeout_s: float | None = None
    max_tokens_limit: int = 4096
    drain_grace_s: float = 30.0
    retention_s: float | None = None
    max_rerun_attempts: int = 2
    lease_s: float = 20.0
    load_timeout_s: float = 300.0
    max_loaded: int | None = None
    memory_budget_bytes: int | None = None
    webhook_min_interval_s: float = 0.5
    webhook_retries: int = 4
    output_inline_max_bytes: int = 2**20
    store_threads: int | None = None
    upload_url: str | None = None
    embedding_models: Mapping[str, str] = field(default_factory=dict)
    allow_private_urls: bool = False
    url_allow_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        if self.lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {self.lease_s}")
        if self.max_loaded is not None and self.max_loaded < 1:
            raise ValueError(f"max_loaded must be >= 1, got {self.max_loaded}")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "predictions.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    def replace(self, **changes: object) -> ServingConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
