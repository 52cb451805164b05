"""The records a store keeps: predictions (with their model, version, principal and lease), model versions, the
hub's models and deployments, and the web page's shares and examples."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utc_now() -> str:
    """ISO 8601 UTC timestamp, the format Cog and Replicate use."""
    return datetime.now(UTC).isoformat()


class PredictionStatus(enum.StrEnum):
    """A prediction's lifecycle, with Cog's and Replicate's names."""

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        """True for succeeded, failed and canceled."""
        return self in _TERMINAL


_TERMINAL = frozenset({PredictionStatus.SUCCEEDED, PredictionStatus.FAILED, PredictionStatus.CANCELED})


@dataclass
class PredictionRecord:
    """One prediction as stored; each API renders it in its own shape.

    - `model` (`owner/name`), `version` (a 64-hex id) and `deployment` (`owner/name`, when one routed it) say what
      ran it; `principal` who asked (an API key's id; `None` without keys); `source` where from (`api` or `web`,
      as Replicate reports it); `surface` which API created it (`cog`, `replicate`, `openai`), which decides the
      shape of its webhooks.
    - `input` is what the client sent (shown back); `run_input` the validated, normalized input the predictor
      gets, kept so the prediction can be re-run after a crash (`None`: never re-run, e.g. an OpenAI request,
      whose client is gone after a crash).
    - `lease_owner` / `lease_expires_at` (epoch seconds): the server instance working on it and until when. The
      owner renews its leases while it lives; a prediction whose lease expired is reclaimed by whichever instance
      serves its model, so several models and several servers can share one store.
    - `kind` is `prediction` or `training` (the version's `train` entry point ran; `destination` is the model
      its trained version goes to); `context` is the request's context (Cog's `current_scope().context`), kept
      for a re-run.
    - `sources`: with retrieval-augmented generation, the passages put into the prompt, each
      `{index, version, document, chunk, score, text, section?, page?}`; None without RAG.
    - `retrieval`: with RAG, what was searched: `{index, version, query, rewritten, top_k, min_score}` (`query`
      is the text embedded for the search: the question, or the model's rewriting of it when `rewritten`).
    - `guard` is what the guard decided (scanner verdicts, the AI-disclosure marker; in privacy mode the keyed
      hashes that stand for the input and output, which are then not stored).
    """

    id: str
    status: PredictionStatus = PredictionStatus.STARTING
    model: str | None = None
    version: str | None = None
    deployment: str | None = None
    principal: str | None = None
    source: str = "api"
    surface: str = "cog"
    input: dict[str, Any] | None = None
    run_input: dict[str, Any] | None = None
    output: Any = None
    logs: str = ""
    error: str | None = None
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    completed_at: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    webhook: str | None = None
    webhook_events_filter: list[str] = field(default_factory=list)
    deadline: float | None = None  # epoch seconds (Cancel-After); past it the prediction is canceled
    data_removed: bool = False
    attempts: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    guard: dict[str, Any] = field(default_factory=dict)  # the guard's verdicts, disclosure marker, keyed hashes
    release: int | None = None  # the deployment's release that routed it
    kind: str = "prediction"  # or "training"
    destination: str | None = None  # a training's destination model
    context: dict[str, str] = field(default_factory=dict)
    sources: list[dict[str, Any]] | None = None  # retrieved passages the answer was given (RAG; docs/rag.md)
    retrieval: dict[str, Any] | None = None  # what RAG searched for (the query, rewritten or not) and where
    seq: int = 0  # insertion order: the list cursor


@dataclass
class VersionRecord:
    """A model version the server has run: its id, when it was first seen, and what it takes and gives.

    `openapi_schema` is the predictor's Cog document (kept so inputs can be validated before a cold model has
    loaded); `info` holds facts learnt when it loaded (e.g. `{"language_model": {"max_model_len": 2048}}`). A
    pushed version also has its `manifest` (its files: `[{path, size, sha256, executable}]`) and `environment`
    (`{"python", "hash", "installed"}`); a version served from a directory has neither.
    """

    model: str
    id: str
    created_at: str = field(default_factory=utc_now)
    openapi_schema: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    manifest: list[dict[str, Any]] | None = None
    environment: dict[str, Any] | None = None


@dataclass
class KeyRecord:
    """An API key as stored: never the key itself, only a keyed hash of it.

    `id` is stable across rotations (usage and audit entries name it); `lookup` is the short non-secret part of
    the current key that finds its record (the key is `ck_` + lookup + secret + checksum); after a rotation the
    old key keeps working until `previous_expires_at`. `models` are glob patterns (`acme/*`; empty: every
    model), `scopes` what the key may do (`predict`, `push`, `deploy`, `admin`). `rpm`, `tpm` and
    `monthly_tokens` are its limits (None: none). Times are epoch seconds.
    """

    id: str
    name: str
    lookup: str
    secret_hash: bytes
    models: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    rpm: int | None = None
    tpm: int | None = None
    monthly_tokens: int | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    rotated_at: float | None = None
    last_used_at: float | None = None
    previous_lookup: str | None = None
    previous_hash: bytes | None = None
    previous_expires_at: float | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log: its position, the prediction it records, its bytes and its RFC 6962 leaf hash."""

    idx: int
    prediction_id: str | None
    entry: bytes
    leaf_hash: bytes


@dataclass(frozen=True)
class CheckpointRecord:
    """A signed checkpoint of the audit log: the tree's size and root, and the signed note that states them."""

    size: int
    root: bytes
    note: str
    created_at: float


@dataclass
class ModelRecord:
    """A model of the hub (`owner/name`): created by a push or by the API."""

    name: str
    description: str | None = None
    visibility: str = "private"
    created_at: str = field(default_factory=utc_now)


@dataclass
class ReleaseRecord:
    """One release of a deployment: which versions it routes to, with what weights, and its scaling.

    `configuration` is `{"versions": [{"version": id, "weight": 90}, ...], "min_instances": n,
    "max_instances": n}`; every change to a deployment is a new release (`number` counts from 1).
    """

    deployment: str
    number: int
    configuration: dict[str, Any]
    created_at: str = field(default_factory=utc_now)
    created_by: str | None = None


@dataclass
class DeploymentRecord:
    """A deployment (`owner/name`) of one model, and its current (newest) release."""

    name: str
    model: str
    created_at: str = field(default_factory=utc_now)
    current_release: ReleaseRecord | None = None


@dataclass
class ShareRecord:
    """A read-only link to one prediction (`/p/{token}`), never to "the latest output" of anything.

    The token itself is never stored: `digest` is its SHA-256 (hex), so a copy of the store holds no working
    link. `id` is a short public handle to list and revoke it by. A share past `expires_at` or with `revoked_at`
    set opens nothing.
    """

    id: str
    prediction_id: str
    digest: str
    created_at: str = field(default_factory=utc_now)
    expires_at: str | None = None
    revoked_at: str | None = None
    created_by: str | None = None  # the principal that shared it (None without keys)


@dataclass
class ExampleRecord:
    """A prediction shown as an example of a model; the `is_default` one pre-fills the model page's form."""

    model: str
    prediction_id: str
    is_default: bool = False
    created_at: str = field(default_factory=utc_now)
    created_by: str | None = None
