"""The `/openapi.json` document: the predictor's schema in Cog's form, with the Cog HTTP paths.

The predictor backend gives `components.schemas.Input` and `Output` (derived from its type hints). This module adds
what the Cog server adds around them — `PredictionRequest`, `PredictionResponse`, `Status`, `WebhookEvent`, the
validation error shapes and the paths — keeping the component schemas the backend already provides.
"""

from __future__ import annotations

import copy
from typing import Any

_REF = "#/components/schemas/"
# Prediction ids cocina accepts from clients (they appear in URLs and file names).
_ID = {"title": "Id", "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._-]+$"}


def _json(schema: dict[str, Any], description: str = "Successful Response") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _detail_string(description: str) -> dict[str, Any]:
    return _json({"$ref": _REF + "ErrorDetail"}, description)


_VALIDATION = _json({"$ref": _REF + "HTTPValidationError"}, "Validation Error")
_PREDICT_RESPONSES: dict[str, Any] = {
    "200": _json({"$ref": _REF + "PredictionResponse"}),
    "202": _json({"$ref": _REF + "PredictionResponse"}, "Accepted (Prefer: respond-async)"),
    "413": _detail_string("Request body too large"),
    "422": _VALIDATION,
    "429": _detail_string("Queue full"),
    "503": _detail_string("Not ready or shutting down"),
}
_PREDICT_HEADERS = [
    {
        "name": "prefer",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": ["respond-async"]},
    },
]


def _paths() -> dict[str, Any]:
    request_body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF + "PredictionRequest"}}},
    }
    path_id = {"name": "prediction_id", "in": "path", "required": True, "schema": _ID}
    return {
        "/": {
            "get": {
                "summary": "Root",
                "operationId": "root__get",
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/health-check": {
            "get": {
                "summary": "Healthcheck",
                "operationId": "healthcheck_health_check_get",
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/predictions": {
            "post": {
                "summary": "Predict",
                "operationId": "predict_predictions_post",
                "parameters": _PREDICT_HEADERS,
                "requestBody": request_body,
                "responses": _PREDICT_RESPONSES,
            }
        },
        "/predictions/{prediction_id}": {
            "put": {
                "summary": "Predict Idempotent",
                "operationId": "predict_idempotent_predictions__prediction_id__put",
                "parameters": [path_id, *_PREDICT_HEADERS],
                "requestBody": request_body,
                "responses": _PREDICT_RESPONSES,
            }
        },
        "/predictions/{prediction_id}/cancel": {
            "post": {
                "summary": "Cancel",
                "operationId": "cancel_predictions__prediction_id__cancel_post",
                "parameters": [path_id],
                "responses": {"200": _json({"type": "object"}), "404": _detail_string("Not found")},
            }
        },
        "/shutdown": {
            "post": {
                "summary": "Start Shutdown",
                "operationId": "start_shutdown_shutdown_post",
                "responses": {"200": _json({"type": "object"})},
            }
        },
    }


def _schemas() -> dict[str, Any]:
    status = {
        "title": "Status",
        "description": "An enumeration.",
        "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
        "type": "string",
    }
    webhook_event = {
        "title": "WebhookEvent",
        "description": "An enumeration.",
        "enum": ["start", "output", "logs", "completed"],
        "type": "string",
    }
    request = {
        "title": "PredictionRequest",
        "type": "object",
        "properties": {
            "id": _ID,
            "input": {"$ref": _REF + "Input"},
            "webhook": {
                "title": "Webhook",
                "type": "string",
                "format": "uri",
                "minLength": 1,
                "maxLength": 65536,
            },
            "webhook_events_filter": {
                "type": "array",
                "items": {"$ref": _REF + "WebhookEvent"},
                "default": ["start", "output", "logs", "completed"],
            },
            "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
            "output_file_prefix": {"title": "Output File Prefix", "type": "string"},
        },
    }
    response = {
        "title": "PredictionResponse",
        "type": "object",
        "required": ["id", "status"],
        "properties": {
            "id": {"title": "Id", "type": "string"},
            "input": {"title": "Input", "type": "object", "nullable": True},
            "output": {"title": "Output"},
            "logs": {"title": "Logs", "type": "string", "default": ""},
            "error": {"title": "Error", "type": "string", "nullable": True},
            "status": {"$ref": _REF + "Status"},
            "created_at": {"title": "Created At", "type": "string", "format": "date-time", "nullable": True},
            "started_at": {"title": "Started At", "type": "string", "format": "date-time", "nullable": True},
            "completed_at": {
                "title": "Completed At",
                "type": "string",
                "format": "date-time",
                "nullable": True,
            },
            "metrics": {"title": "Metrics", "type": "object"},
            "webhook": {"title": "Webhook", "type": "string", "nullable": True},
            "webhook_events_filter": {"type": "array", "items": {"$ref": _REF + "WebhookEvent"}},
        },
    }
    validation_error = {
        "title": "ValidationError",
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {
                "title": "Location",
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "msg": {"title": "Message", "type": "string"},
            "type": {"title": "Error Type", "type": "string"},
        },
    }
    http_validation_error = {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {"detail": {"title": "Detail", "type": "array", "items": {"$ref": _REF + "ValidationError"}}},
    }
    error_detail = {"title": "ErrorDetail", "type": "object", "properties": {"detail": {"type": "string"}}}
    return {
        "Status": status,
        "WebhookEvent": webhook_event,
        "PredictionRequest": request,
        "PredictionResponse": response,
        "ValidationError": validation_error,
        "HTTPValidationError": http_validation_error,
        "ErrorDetail": error_detail,
    }


def cog_openapi(predictor_schema: dict[str, Any]) -> dict[str, Any]:
    """The full document `/openapi.json` serves, from the backend's schema (which must have Input and
    Output)."""
    doc = copy.deepcopy(predictor_schema)
    doc.setdefault("openapi", "3.0.2")
    doc.setdefault("info", {"title": "Cog", "version": "0.1.0"})
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Input", {"title": "Input", "type": "object", "properties": {}})
    schemas.setdefault("Output", {"title": "Output"})
    for name, schema in _schemas().items():
        schemas.setdefault(name, schema)
    # Cog's own `PredictionResponse` refers `output` to `Output`, yet a failed or canceled prediction has none
    # (null), as in Cog: the response schema says what the server really sends.
    schemas["PredictionResponse"] = _schemas()["PredictionResponse"]
    request = schemas["PredictionRequest"]
    if schemas["Input"].get("required") and "input" not in request.get("required", []):
        # A missing `input` fails validation when some input is required: say so, as the server answers 422.
        request["required"] = [*request.get("required", []), "input"]
    # The paths describe this server (queueing: 429, limits: 413, ...), so ours replace the backend's.
    doc.setdefault("paths", {}).update(_paths())
    return doc
