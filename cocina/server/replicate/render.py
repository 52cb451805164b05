"""Replicate's objects: predictions, models and versions."""

from __future__ import annotations

from typing import Any

from cocina.serving import ServedModel
from cocina.store import PredictionRecord

COG_VERSION = "0.16.0"  # the Cog release whose HTTP behaviour cocina follows


def replicate_prediction(rec: PredictionRecord, base_url: str) -> dict[str, Any]:
    """Replicate's prediction object."""
    base = base_url.rstrip("/")
    return {
        "id": rec.id,
        "model": rec.model,
        "version": rec.version,
        "deployment": rec.deployment,
        "input": rec.input,
        "output": rec.output,
        "logs": rec.logs,
        "error": rec.error,
        "status": rec.status.value,
        "source": rec.source,
        "data_removed": rec.data_removed,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "completed_at": rec.completed_at,
        "metrics": dict(rec.metrics),
        **({"ai_disclosure": rec.guard["ai_disclosure"]} if rec.guard.get("ai_disclosure") else {}),
        "urls": {
            "get": f"{base}/v1/predictions/{rec.id}",
            "cancel": f"{base}/v1/predictions/{rec.id}/cancel",
            "stream": f"{base}/v1/predictions/{rec.id}/stream",
        },
    }


def version_object(model: ServedModel) -> dict[str, Any]:
    """Replicate's version object (`openapi_schema` is empty while the model's schema is not known)."""
    return {
        "id": model.version,
        "created_at": model.version_created_at,
        "cog_version": COG_VERSION,
        "openapi_schema": model.schema or {},
    }


def model_object(model: ServedModel, base_url: str, run_count: int) -> dict[str, Any]:
    """Replicate's model object."""
    return {
        "url": f"{base_url.rstrip('/')}/v1/models/{model.name}",
        "owner": model.spec.owner,
        "name": model.spec.short_name,
        "description": None,
        "visibility": "private",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": run_count,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": version_object(model),
    }
