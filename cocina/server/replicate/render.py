"""Replicate's objects: predictions, trainings, models and versions."""

from __future__ import annotations

from typing import Any

from cocina.hub.objects import COG_VERSION
from cocina.serving import ServedModel
from cocina.store import PredictionRecord


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
        **({"sources": rec.sources} if rec.sources is not None else {}),
        **({"retrieval": rec.retrieval} if rec.retrieval is not None else {}),
        **({"ai_disclosure": rec.guard["ai_disclosure"]} if rec.guard.get("ai_disclosure") else {}),
        "urls": {
            # "View the prediction in a browser": the model's page with this prediction opened.
            **({"web": f"{base}/{rec.model}/predictions/{rec.id}"} if rec.model else {}),
            "get": f"{base}/v1/predictions/{rec.id}",
            "cancel": f"{base}/v1/predictions/{rec.id}/cancel",
            "stream": f"{base}/v1/predictions/{rec.id}/stream",
        },
    }


def replicate_training(rec: PredictionRecord, base_url: str) -> dict[str, Any]:
    """Replicate's training object: the prediction's fields, its `destination`, and its own URLs; once it
    succeeded, `output` is `{"version": "owner/name:id", "weights": url}` (the destination's new version)."""
    base = base_url.rstrip("/")
    body = replicate_prediction(rec, base)
    body["destination"] = rec.destination
    body["urls"] = {"get": f"{base}/v1/trainings/{rec.id}", "cancel": f"{base}/v1/trainings/{rec.id}/cancel"}
    return body


def version_object(model: ServedModel) -> dict[str, Any]:
    """Replicate's version object (`openapi_schema` is empty while the model's schema is not known)."""
    return {
        "id": model.version,
        "created_at": model.version_created_at,
        "cog_version": COG_VERSION,
        "openapi_schema": model.schema or {},
    }
