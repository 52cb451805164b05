"""The `Store` protocol: what serving, the guard (and later the hub) need from durable state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cocina.store.records import (
    AuditEntry,
    CheckpointRecord,
    DeploymentRecord,
    ExampleRecord,
    KeyRecord,
    ModelRecord,
    PredictionRecord,
    ReleaseRecord,
    ShareRecord,
    VersionRecord,
)

UsageCell = tuple[str, int]
"""A usage counter of a key: (kind, window), e.g. ("tokens", minute number) or ("month_tokens", 202611)."""


class StoreError(Exception):
    """The store could not do what was asked (disk full, database locked too long, connection lost)."""


@dataclass(frozen=True)
class Write:
    """One write of serving's hot path, for `Store.write_many`: the acceptance `insert` of a new prediction, or an
    update of one (under `owner`'s lease when given, as `Store.update`)."""

    record: PredictionRecord
    insert: bool = False
    owner: str | None = None


def write_each(store: Store, writes: Sequence[Write]) -> list[bool | StoreError]:
    """`writes` one by one, each in its own transaction: what `write_many` falls back to when one write spoils the
    transaction of all (a value the database refuses), so that the others still land."""
    results: list[bool | StoreError] = []
    for w in writes:
        try:
            results.append(store.insert(w.record) if w.insert else store.update(w.record, owner=w.owner))
        except StoreError as exc:
            results.append(exc)
    return results


class Store(Protocol):
    """Durable predictions and versions. Every method is short and synchronous; failures raise `StoreError`."""

    def insert(self, rec: PredictionRecord) -> bool:
        """Insert a new prediction; False (nothing written) if its id exists already."""
        ...

    def update(self, rec: PredictionRecord, *, owner: str | None = None) -> bool:
        """Write the mutable fields of `rec` (status, output, logs, times, metrics, attempts, lease).

        With `owner`, only while that instance holds the lease (fencing): False if another took it over.
        """
        ...

    def write_many(self, writes: Sequence[Write]) -> list[bool | StoreError]:
        """The writes in order, in one transaction (one commit for all: serving batches the acceptances, "running"
        writes and final states of concurrent predictions this way). Each write's result is what `insert` or
        `update` would have returned, or the `StoreError` it alone met; a store that cannot be reached raises
        `StoreError` for the whole batch."""
        ...

    def get(self, prediction_id: str) -> PredictionRecord | None: ...

    def page(
        self,
        before_seq: int | None,
        limit: int,
        *,
        model: str | None = None,
        version: str | None = None,
        status: str | None = None,
        source: str | None = None,
        principal: str | None = None,
        kind: str | None = None,
    ) -> list[PredictionRecord]:
        """Newest first; `before_seq` is the cursor (the `seq` of the last item of the previous page). Each
        other argument given keeps only the predictions with that value (the web page's history filters;
        `kind`: only predictions or only trainings)."""
        ...

    def of_deployment(self, deployment: str, limit: int = 10_000) -> list[PredictionRecord]:
        """A deployment's predictions, newest first."""
        ...

    def renew_leases(self, owner: str, until: float) -> int:
        """Extend every unfinished prediction `owner` holds to `until`; how many."""
        ...

    def claim_expired(
        self, models: list[str], owner: str, now: float, until: float, *, dead_owners: tuple[str, ...] = ()
    ) -> list[PredictionRecord]:
        """Take over unfinished predictions of `models` whose lease expired before `now` (or whose owner is
        in `dead_owners`): each is atomically re-leased to `owner` until `until`, so that two instances never
        claim the same one. Oldest first."""
        ...

    def adopt_unowned(self, model: str) -> int:
        """Give predictions that name no model (stored before models were recorded) to `model`; how many."""
        ...

    def lease_owners(self) -> list[str]:
        """The owners of unfinished predictions' leases."""
        ...

    def remove_data_before(self, completed_before: str) -> int:
        """Retention: drop inputs and outputs of predictions completed before this timestamp; how many.
        Predictions that are examples, or shared by a link still open, keep theirs (as on Replicate)."""
        ...

    def run_counts(self) -> dict[str, int]:
        """Predictions per model."""
        ...

    def put_version(self, version: VersionRecord) -> None:
        """Insert a version, or update what is known of it (its creation time stays the first one)."""
        ...

    def get_version(self, model: str, version_id: str) -> VersionRecord | None: ...

    def watch(self, prediction_id: str, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call `on_change` (from any thread) whenever the prediction is written, by this server or another
        sharing the store; returns the function that stops watching. PostgreSQL tells (LISTEN/NOTIFY); SQLite
        cannot, and never calls: a follower polls as well."""
        ...

    def list_versions(self, model: str | None = None, *, pushed_only: bool = False) -> list[VersionRecord]:
        """Newest first."""
        ...

    def delete_version(self, model: str, version_id: str) -> bool: ...

    def count_unfinished(self, model: str, version: str | None = None) -> int:
        """Predictions of a model (or of one of its versions) that have not ended."""
        ...

    def put_model(self, model: ModelRecord) -> bool:
        """Create a model; False when it exists."""
        ...

    def get_model(self, name: str) -> ModelRecord | None: ...

    def list_models(self) -> list[ModelRecord]: ...

    def delete_model(self, name: str) -> bool: ...

    def create_deployment(self, deployment: DeploymentRecord, configuration: dict[str, Any], by: str | None) -> bool:
        """A deployment and its release 1, atomically; False when the name is taken."""
        ...

    def add_release(self, deployment: str, configuration: dict[str, Any], by: str | None) -> ReleaseRecord:
        """The deployment's next release (numbered one more than the last), atomically."""
        ...

    def list_releases(self, deployment: str) -> list[ReleaseRecord]:
        """Newest first."""
        ...

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        """With its current (newest) release."""
        ...

    def list_deployments(self, model: str | None = None) -> list[DeploymentRecord]: ...

    def delete_deployment(self, name: str) -> bool: ...

    # ---- the web page: shares and examples

    def put_share(self, share: ShareRecord) -> bool:
        """Record a new share; False when its id or digest exists (nothing written)."""
        ...

    def get_share(self, share_id: str) -> ShareRecord | None: ...

    def find_share(self, digest: str) -> ShareRecord | None:
        """The share whose token has this SHA-256 digest (revoked and expired ones included)."""
        ...

    def list_shares(self, prediction_id: str) -> list[ShareRecord]:
        """A prediction's shares, newest first (revoked and expired ones included)."""
        ...

    def revoke_share(self, share_id: str, when: str) -> bool:
        """Mark a share revoked at `when`; False when there is no such share or it was revoked already."""
        ...

    def put_example(self, example: ExampleRecord) -> bool:
        """Add a prediction to a model's examples (the only default one if `is_default`); False when it is one
        already (nothing written)."""
        ...

    def list_examples(self, model: str) -> list[ExampleRecord]:
        """A model's examples: the default first, then newest first."""
        ...

    def set_default_example(self, model: str, prediction_id: str) -> bool:
        """Make this example the model's only default; False when it is not one of its examples."""
        ...

    def delete_example(self, model: str, prediction_id: str) -> bool: ...

    # ---- API keys (the guard)

    def insert_key(self, key: KeyRecord) -> bool:
        """Insert a new key; False (nothing written) if its id or lookup exists already."""
        ...

    def update_key(self, key: KeyRecord) -> None:
        """Write every field of an existing key (rotation, revocation, limits)."""
        ...

    def get_key(self, key_id: str) -> KeyRecord | None: ...

    def find_key(self, lookup: str) -> KeyRecord | None:
        """The key whose current or previous (still in its grace time or not) lookup is `lookup`."""
        ...

    def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        ...

    def count_keys(self) -> int:
        """How many keys exist (revoked or expired included): with none, the server is not keyed."""
        ...

    def touch_key(self, key_id: str, when: float) -> None:
        """Record that the key was used at `when`."""
        ...

    # ---- usage counters (rate limits and quotas)

    def usage_update(
        self,
        key_id: str,
        cells: list[UsageCell],
        decide: Callable[[dict[UsageCell, int]], dict[UsageCell, int] | None],
    ) -> dict[UsageCell, int] | None:
        """Atomically read the key's counters `cells` (0 when absent), call `decide(current)`, and add the deltas
        it returns (None: change nothing). Returns what `decide` returned. No other writer of the key's
        counters runs between the read and the write (SQLite: a write transaction; PostgreSQL: row locks), so
        concurrent requests of one key never overshoot a limit."""
        ...

    def usage_rows(self, key_id: str) -> list[tuple[str, int, int]]:
        """(kind, window, amount) of every counter of the key."""
        ...

    def usage_prune(self, kind: str, before_window: int) -> int:
        """Delete counters of `kind` whose window is before `before_window`; how many."""
        ...

    # ---- the audit log (an append-only RFC 6962 Merkle tree)

    def audit_size(self) -> int:
        """How many entries the log has."""
        ...

    def audit_append(self, entry: AuditEntry, nodes: list[tuple[int, int, bytes]]) -> bool:
        """Append `entry` at `entry.idx` with the perfect-subtree roots (level, idx, hash) it completes, in one
        transaction; False (nothing written) if that position is taken (another writer appended first)."""
        ...

    def audit_entries(self, start: int, end: int) -> list[AuditEntry]:
        """Entries with start <= idx < end, in order (gaps are not filled: the verifier notices them)."""
        ...

    def audit_entry_for(self, prediction_id: str) -> AuditEntry | None:
        """The (last) entry recording that prediction."""
        ...

    def audit_nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Hashes of the perfect subtrees (level, idx); level 0 are leaf hashes. Missing ones are left out."""
        ...

    def audit_put_checkpoint(self, checkpoint: CheckpointRecord) -> None:
        """Keep a signed checkpoint (a second one for the same size is ignored)."""
        ...

    def audit_checkpoint(self, size: int | None = None) -> CheckpointRecord | None:
        """The checkpoint for `size`, or the latest one."""
        ...

    def audit_checkpoints(self) -> list[CheckpointRecord]:
        """Every checkpoint, oldest first."""
        ...

    def close(self) -> None: ...
