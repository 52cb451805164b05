"""Cog's `PredictionResponse` of a prediction record (responses, SSE `start`/`completed`, webhooks)."""

from __future__ import annotations

from typing import Any

from cocina.store import PredictionRecord


def cog_prediction(rec: PredictionRecord) -> dict[str, Any]:
    """Cog's `PredictionResponse`."""
    body: dict[str, Any] = {
        "id": rec.id,
        "input": rec.input,
        "output": rec.output,
        "logs": rec.logs,
        "error": rec.error,
        "status": rec.status.value,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "completed_at": rec.completed_at,
        # What the predictor recorded and `predict_time`, as Cog's; `total_time` is Replicate's (the queue too).
        "metrics": {k: v for k, v in rec.metrics.items() if k != "total_time"},
    }
    if rec.sources is not None:
        body["sources"] = rec.sources  # cocina's: the passages of retrieval-augmented generation
    if rec.retrieval is not None:
        body["retrieval"] = rec.retrieval
    if rec.guard.get("ai_disclosure"):
        body["ai_disclosure"] = rec.guard["ai_disclosure"]  # the machine-readable AI marker (EU AI Act art. 50)
    if rec.webhook:
        body["webhook"] = rec.webhook
        body["webhook_events_filter"] = rec.webhook_events_filter or ["start", "output", "logs", "completed"]
    return body
