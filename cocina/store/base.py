"""The `Store` protocol: what serving (and later the hub and the guard) need from durable state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from cocina.store.records import (
    DeploymentRecord,
    ExampleRecord,
    ModelRecord,
    PredictionRecord,
    ReleaseRecord,
    ShareRecord,
    VersionRecord,
)


class StoreError(Exception):
    """The store could not do what was asked (disk full, database locked too long, connection lost)."""


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

    def close(self) -> None: ...
