"""The hub's records in Replicate's shapes (what the HTTP API answers and `--json` prints): versions,
deployments and their releases."""

from __future__ import annotations

from typing import Any

from cocina.hub.deployments import splits_of
from cocina.store import DeploymentRecord, ReleaseRecord, VersionRecord

COG_VERSION = "0.16.0"  # the Cog release whose HTTP behaviour cocina follows


def version_object(record: VersionRecord) -> dict[str, Any]:
    """Replicate's version object (what the `replicate` client's `Version` needs)."""
    return {
        "id": record.id,
        "created_at": record.created_at,
        "cog_version": COG_VERSION,
        "openapi_schema": record.openapi_schema,
    }


def release_object(release: ReleaseRecord, model: str) -> dict[str, Any]:
    """Replicate's release; `version` is the heaviest of cocina's weighted `versions`."""
    splits = splits_of(release.configuration)
    heaviest = max(splits, key=lambda s: s.weight).version if splits else None
    who = release.created_by or "local"
    return {
        "number": release.number,
        "model": model,
        "version": heaviest,
        "created_at": release.created_at,
        "created_by": {"type": "user", "username": who, "name": who, "github_url": None},
        "configuration": {
            "hardware": "cpu",
            "min_instances": release.configuration["min_instances"],
            "max_instances": release.configuration["max_instances"],
            "versions": release.configuration["versions"],
        },
    }


def deployment_object(record: DeploymentRecord) -> dict[str, Any]:
    owner, name = record.name.split("/", 1)
    current = record.current_release
    return {
        "owner": owner,
        "name": name,
        "model": record.model,
        "created_at": record.created_at,
        "current_release": release_object(current, record.model) if current else None,
    }
