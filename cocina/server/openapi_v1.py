"""`/v1/openapi.json`: one OpenAPI 3.0 document for every surface and every model this server has.

`/openapi.json` stays exactly what a Cog container serves (the predictor's Input/Output and the Cog paths):
Cog's tooling and Replicate's version objects read the predictor's schema from it, and extra paths there would
describe a server Cog does not have. This second document adds the Replicate v1 and (for language models) the
OpenAI paths, with their request constraints as the server enforces them — the model and version the server
serves as enums, OpenAI's bounds, `--max-tokens` — and every response the server can give, error shapes
included (problem+json on Replicate, `{"error": {...}}` on OpenAI). The fuzz tests hold the server to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cocina.server.cog.openapi import cog_openapi

_REF = "#/components/schemas/"
_NAME = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9._-]+$"}
_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def _content(media: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return _content("application/problem+json", {"$ref": _REF + "Problem"}, description)


def _openai_error(description: str) -> dict[str, Any]:
    return _content("application/json", {"$ref": _REF + "OpenAIError"}, description)


def _ok(ref: str, status_description: str = "OK") -> dict[str, Any]:
    return _content("application/json", {"$ref": _REF + ref}, status_description)


def _problems(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request (header or parameter)",
        401: "Missing or wrong bearer token",
        404: "Not found",
        413: "Request body too large",
        422: "The body or the predictor's input is invalid",
        429: "Queue full (Retry-After says when to retry)",
        503: "Setting up, setup failed, or shutting down",
    }
    return {str(c): _problem(text[c]) for c in codes}


def _openai_errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid request (bounds, context length, unsupported option)",
        401: "Missing or wrong API key",
        404: "Unknown model",
        413: "Request body too large",
        429: "Queue full",
        503: "Engine overloaded or server not ready",
    }
    return {str(c): _openai_error(text[c]) for c in codes}


def _sse(events: list[str] | None) -> dict[str, Any]:
    """One server-sent event as schemathesis and SSE parsers see it: `event` (named or not), `data`, `id`."""
    event: dict[str, Any] = {"type": "string", "enum": events} if events else {"type": "string"}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"event": event, "data": {"type": "string"}, "id": {"type": "string"}},
    }


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or _NAME}


@dataclass(frozen=True)
class ModelEntry:
    """A served model as the document describes it."""

    name: str  # owner/name
    version: str
    default: bool  # Cog's root model: its Input is the document's `Input`
    aliases: tuple[str, ...] = ()
    language_model: bool = False


def _replicate_paths(models: list[ModelEntry]) -> dict[str, Any]:
    headers = [
        {
            "name": "prefer",
            "in": "header",
            "required": False,
            "description": "`wait` or `wait=N` (1-60 s): answer when the prediction is done",
            "schema": {"type": "string", "pattern": "^wait(=([1-9]|[1-5][0-9]|60))?$"},
        },
        {
            "name": "cancel-after",
            "in": "header",
            "required": False,
            "description": "Cancel the prediction after this long: 30s, 5m, 1h30m, 500ms",
            "schema": {"type": "string", "pattern": "^([0-9]{1,4}(ms|s|m|h)){1,3}$"},
        },
    ]

    def body(ref: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": {"$ref": _REF + ref}}}}

    create_responses = {
        "201": _ok("Prediction", "Created (done, when `Prefer: wait` let it finish)"),
        **_problems(400, 401, 404, 413, 422, 429, 503),
    }
    pid = _path("prediction_id")
    fid = _path("file_id")
    paths: dict[str, Any] = {}
    for m in models:
        # Each model's own paths (its name literal): its predictions take its Input (the default model's is the
        # document's `Input`; another model's input is any object here, its own schema being in its version).
        create = "PredictionCreate" if m.default else "AnyPredictionCreate"
        slug = m.name.replace("/", "_")
        paths[f"/v1/models/{m.name}/predictions"] = {
            "post": {
                "operationId": f"replicate_create_model_prediction_{slug}",
                "security": _SECURITY,
                "parameters": headers,
                "requestBody": body(create),
                "responses": create_responses,
            }
        }
        paths[f"/v1/deployments/{m.name}/predictions"] = {
            "post": {
                "operationId": f"replicate_create_deployment_prediction_{slug}",
                "description": "A deployment named like a model routes to that model.",
                "security": _SECURITY,
                "parameters": headers,
                "requestBody": body(create),
                "responses": create_responses,
            }
        }
        paths[f"/v1/models/{m.name}"] = {
            "get": {
                "operationId": f"replicate_get_model_{slug}",
                "security": _SECURITY,
                "responses": {"200": _ok("Model"), **_problems(401, 404)},
            }
        }
        paths[f"/v1/models/{m.name}/versions"] = {
            "get": {
                "operationId": f"replicate_list_versions_{slug}",
                "security": _SECURITY,
                "responses": {"200": _ok("VersionPage"), **_problems(401, 404)},
            }
        }
        paths[f"/v1/models/{m.name}/examples"] = {
            "get": {
                "operationId": f"replicate_list_examples_{slug}",
                "description": "The model's examples (predictions), the default first.",
                "security": _SECURITY,
                "responses": {"200": _ok("PredictionPage"), **_problems(401, 404)},
            }
        }
        paths[f"/v1/models/{m.name}/readme"] = {
            "get": {
                "operationId": f"replicate_get_readme_{slug}",
                "description": "The model's README.md (Markdown); 404 when it has none.",
                "security": _SECURITY,
                "responses": {"200": _content("text/markdown", {"type": "string"}, "Markdown"), **_problems(401, 404)},
            }
        }
        paths[f"/v1/models/{m.name}/versions/{m.version}"] = {
            "get": {
                "operationId": f"replicate_get_version_{slug}",
                "security": _SECURITY,
                "responses": {"200": _ok("Version"), **_problems(401, 404)},
            }
        }
        paths[f"/v1/models/{m.name}/versions/{m.version}/trainings"] = {
            "post": {
                "operationId": f"replicate_create_training_{slug}",
                "description": "Runs the version's `train:` entry point; a succeeded training is a new version "
                "of `destination` (a model of the hub). 400 when the version has no `train:`.",
                "security": _SECURITY,
                "requestBody": body("TrainingCreate"),
                "responses": {"201": _ok("Training", "Created"), **_problems(400, 401, 404, 413, 422, 429, 503)},
            }
        }
    tid = _path("training_id")
    paths["/v1/trainings"] = {
        "get": {
            "operationId": "replicate_list_trainings",
            "security": _SECURITY,
            "parameters": [
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                }
            ],
            "responses": {"200": _ok("TrainingPage"), **_problems(400, 401)},
        }
    }
    paths["/v1/trainings/{training_id}"] = {
        "get": {
            "operationId": "replicate_get_training",
            "security": _SECURITY,
            "parameters": [tid],
            "responses": {"200": _ok("Training"), **_problems(401, 404)},
        }
    }
    paths["/v1/trainings/{training_id}/cancel"] = {
        "post": {
            "operationId": "replicate_cancel_training",
            "security": _SECURITY,
            "parameters": [tid],
            "responses": {"200": _ok("Training"), **_problems(401, 404)},
        }
    }
    return paths | {
        "/v1/predictions": {
            "post": {
                "operationId": "replicate_create_prediction",
                "security": _SECURITY,
                "parameters": headers,
                "requestBody": body("VersionPredictionCreate"),
                "responses": create_responses,
            },
            "get": {
                "operationId": "replicate_list_predictions",
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "cursor",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    }
                ],
                "responses": {"200": _ok("PredictionPage"), **_problems(400, 401)},
            },
        },
        "/v1/predictions/{prediction_id}": {
            "get": {
                "operationId": "replicate_get_prediction",
                "security": _SECURITY,
                "parameters": [pid],
                "responses": {"200": _ok("Prediction"), **_problems(401, 404)},
            }
        },
        "/v1/predictions/{prediction_id}/cancel": {
            "post": {
                "operationId": "replicate_cancel_prediction",
                "security": _SECURITY,
                "parameters": [pid],
                "responses": {"200": _ok("Prediction"), **_problems(401, 404)},
            }
        },
        "/v1/predictions/{prediction_id}/stream": {
            "get": {
                "operationId": "replicate_stream_prediction",
                "security": _SECURITY,
                "parameters": [pid],
                "responses": {
                    "200": _content(
                        "text/event-stream",
                        _sse(["output", "logs", "error", "done"]),
                        "Events: output, logs, error, done (each with an id)",
                    ),
                    **_problems(401, 404),
                },
            }
        },
        "/v1/files": {
            "post": {
                "operationId": "replicate_create_file",
                "security": _SECURITY,
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["content"],
                                "properties": {
                                    "content": {"type": "string", "format": "binary"},
                                    "metadata": {"type": "string", "description": "A JSON object"},
                                },
                            }
                        }
                    },
                },
                "responses": {"201": _ok("File", "Created"), **_problems(400, 401, 413)},
            }
        },
        "/v1/files/{file_id}": {
            "get": {
                "operationId": "replicate_get_file",
                "security": _SECURITY,
                "parameters": [fid],
                "responses": {"200": _ok("File"), **_problems(401, 404)},
            },
            "delete": {
                "operationId": "replicate_delete_file",
                "security": _SECURITY,
                "parameters": [fid],
                "responses": {"204": {"description": "Deleted"}, **_problems(401, 404)},
            },
        },
        "/v1/files/{file_id}/download": {
            "get": {
                "operationId": "replicate_download_file",
                "security": _SECURITY,
                "parameters": [fid],
                "responses": {
                    "200": {"description": "The file's bytes", "content": {"*/*": {"schema": {}}}},
                    **_problems(401, 404),
                },
            }
        },
    }


def _openai_paths() -> dict[str, Any]:
    def generation(ref: str, result: str) -> dict[str, Any]:
        return {
            "security": _SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": _REF + ref}}}},
            "responses": {
                "200": {
                    "description": "The result, or with `stream: true` SSE chunks ending with `data: [DONE]`",
                    "content": {
                        "application/json": {"schema": {"$ref": _REF + result}},
                        "text/event-stream": {"schema": _sse(None)},
                    },
                },
                **_openai_errors(400, 401, 404, 413, 429, 503),
            },
        }

    return {
        "/v1/completions": {
            "post": {"operationId": "openai_completions", **generation("CompletionRequest", "Completion")}
        },
        "/v1/chat/completions": {
            "post": {"operationId": "openai_chat_completions", **generation("ChatRequest", "ChatCompletion")}
        },
    }


def _common_paths() -> dict[str, Any]:
    health = {
        "type": "object",
        "required": ["status", "models"],
        "properties": {"status": {"type": "string"}, "models": {"type": "object"}},
    }
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "description": "200 when the server can serve (every warm model loaded), 503 while starting, "
                "draining or when a warm model failed to load.",
                "responses": {
                    "200": _content("application/json", health, "Ready"),
                    "503": _content("application/json", health, "Not ready"),
                },
            }
        },
        "/v1/models": {
            "get": {
                "operationId": "list_models",
                "description": "OpenAI's model list, with Replicate's page keys (both clients call it).",
                "security": _SECURITY,
                "responses": {"200": _ok("ModelList"), **_openai_errors(401)},
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi_full",
                "security": _SECURITY,
                "responses": {"200": _ok("Object", "This document"), **_problems(401)},
            }
        },
        "/openapi.json": {"get": {"operationId": "openapi_cog", "responses": {"200": _ok("Object", "Cog's document")}}},
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "responses": {"200": _content("text/plain", {"type": "string"}, "Prometheus text exposition format")},
            }
        },
    }


def _audit_paths() -> dict[str, Any]:
    """The audit log's routes (404 when the server runs without the guard's audit log)."""
    text = _content("text/plain", {"type": "string"}, "A signed note")
    proof = {"type": "object", "required": ["proof", "checkpoint"]}
    size = {"in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}}
    return {
        "/v1/audit/checkpoint": {
            "get": {"operationId": "audit_checkpoint", "security": _SECURITY,
                    "description": "The latest signed checkpoint (C2SP tlog-checkpoint in a signed note).",
                    "responses": {"200": text, **_problems(401, 404)}}
        },
        "/v1/audit/key": {
            "get": {"operationId": "audit_key", "security": _SECURITY,
                    "description": "The verifier key of the checkpoints (<name>+<hex id>+<base64 key>).",
                    "responses": {"200": _content("text/plain", {"type": "string"}, "A verifier key"),
                                  **_problems(401, 404)}}
        },
        "/v1/audit/proof/{prediction_id}": {
            "get": {"operationId": "audit_inclusion_proof", "security": _SECURITY,
                    "description": "The prediction's audit entry and its RFC 9162 inclusion proof.",
                    "parameters": [_path("prediction_id", {"type": "string"}), {**size, "name": "size"}],
                    "responses": {"200": _content("application/json", proof, "Entry and proof"),
                                  **_problems(400, 401, 404, 422)}}
        },
        "/v1/audit/consistency": {
            "get": {"operationId": "audit_consistency_proof", "security": _SECURITY,
                    "description": "An RFC 9162 consistency proof from the first `first` entries to a checkpoint.",
                    "parameters": [{**size, "name": "first", "required": True}, {**size, "name": "second"}],
                    "responses": {"200": _content("application/json", proof, "Proof"),
                                  **_problems(400, 401, 404, 422)}}
        },
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _schemas(
    models: list[ModelEntry], openai_names: list[str], max_tokens_limit: int, input_required: bool
) -> dict[str, Any]:
    ts = _nullable({"type": "string"})
    prediction = {
        "type": "object",
        "required": ["id", "model", "version", "status", "urls", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "model": {"type": "string"},
            "version": {"type": "string"},
            "input": _nullable({"type": "object"}),
            "output": {},
            "logs": {"type": "string"},
            "error": ts,
            "status": {"$ref": _REF + "Status"},
            "source": {"type": "string"},
            "data_removed": {"type": "boolean"},
            "created_at": {"type": "string"},
            "started_at": ts,
            "completed_at": ts,
            "metrics": {"type": "object"},
            "urls": {
                "type": "object",
                "required": ["get", "cancel", "stream"],
                "properties": {k: {"type": "string"} for k in ("get", "cancel", "stream", "web")},
            },
        },
    }
    webhook = {"type": "string", "format": "uri", "minLength": 1, "maxLength": 2048}
    create_props = {
        "input": {"$ref": _REF + "Input"},
        "webhook": webhook,
        "webhook_completed": webhook,
        "webhook_events_filter": {
            "type": "array",
            "items": {"type": "string", "enum": ["start", "output", "logs", "completed"]},
        },
        "stream": _nullable({"type": "boolean"}),
    }
    refs: list[str] = []
    for m in models:
        refs += [m.version, m.name, f"{m.name}:{m.version}"]
    version = {"type": "string", "enum": refs}
    version_obj = {
        "type": "object",
        "required": ["id", "created_at", "cog_version", "openapi_schema"],
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "string"},
            "cog_version": {"type": "string"},
            "openapi_schema": {"type": "object"},
        },
    }
    page_keys = {"next": ts, "previous": ts}
    sampling = {
        "model": {"type": "string", "enum": openai_names or ["-"]},
        "max_tokens": _nullable({"type": "integer", "minimum": 1, "maximum": max_tokens_limit}),
        "temperature": _nullable({"type": "number", "minimum": 0, "maximum": 2}),
        "top_p": _nullable({"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1}),
        "n": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},
        "stream": {"type": "boolean", "default": False},
        "stream_options": _nullable(
            {"type": "object", "properties": {"include_usage": {"type": "boolean", "default": False}}}
        ),
        "stop": _nullable(
            {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}},
                ]
            }
        ),
        "seed": _nullable({"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}),
        "presence_penalty": _nullable({"type": "number", "minimum": -2, "maximum": 2}),
        "frequency_penalty": _nullable({"type": "number", "minimum": -2, "maximum": 2}),
        "user": _nullable({"type": "string"}),
    }
    token_ids = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
    completion_request = {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            **sampling,
            "prompt": {
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    token_ids,
                    {"type": "array", "minItems": 1, "items": token_ids},
                ]
            },
            "logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": 5}),
            "echo": {"type": "boolean", "default": False},
        },
    }
    message = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": _nullable(
                {
                    "oneOf": [
                        {"type": "string"},
                        {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "description": "Only text parts: {type: text, text}",
                                "properties": {"type": {"type": "string"}, "text": {"type": "string"}},
                            },
                        },
                    ]
                }
            ),
            "name": _nullable({"type": "string"}),
        },
    }
    chat_request = {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            **sampling,
            "messages": {"type": "array", "minItems": 1, "items": {"$ref": _REF + "ChatMessage"}},
            "max_completion_tokens": _nullable({"type": "integer", "minimum": 1, "maximum": max_tokens_limit}),
            "logprobs": {"type": "boolean", "default": False},
            "top_logprobs": _nullable({"type": "integer", "minimum": 0, "maximum": 20}),
            "response_format": _nullable(
                {
                    "type": "object",
                    "required": ["type"],
                    "description": "Only `text` is supported; the others are refused with 400",
                    "properties": {"type": {"type": "string", "enum": ["text", "json_object", "json_schema"]}},
                }
            ),
        },
    }
    usage = {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }
    finish = _nullable({"type": "string", "enum": ["stop", "length"]})

    def answer(object_name: str, content_key: str, content: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed OpenAI answer: completions and chat differ only in `object` and each choice's content."""
        return {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {
                "id": {"type": "string"},
                "object": {"type": "string", "enum": [object_name]},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", content_key, "finish_reason"],
                        "properties": {
                            "index": {"type": "integer"},
                            content_key: content,
                            "logprobs": _nullable({"type": "object"}),
                            "finish_reason": finish,
                        },
                    },
                },
                "usage": {"$ref": _REF + "Usage"},
            },
        }

    completion = answer("text_completion", "text", {"type": "string"})
    answer_message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
    }
    chat_completion = answer("chat.completion", "message", answer_message)
    prediction_properties: dict[str, Any] = prediction["properties"]  # type: ignore[assignment]
    training = {
        "type": "object",
        "required": ["id", "model", "version", "status", "urls", "created_at", "destination"],
        "properties": {
            **prediction_properties,
            "destination": ts,
            "urls": {
                "type": "object",
                "required": ["get", "cancel"],
                "properties": {k: {"type": "string"} for k in ("get", "cancel")},
            },
        },
    }
    return {
        "Prediction": prediction,
        "Training": training,
        "TrainingCreate": {
            "type": "object",
            "required": ["destination"],
            "properties": {
                "destination": {"type": "string", "minLength": 1, "maxLength": 300, "description": "owner/name"},
                # The version's training input, checked against its own training schema (422 otherwise).
                "input": {"type": "object"},
                **{k: create_props[k] for k in ("webhook", "webhook_completed", "webhook_events_filter")},
            },
        },
        "TrainingPage": {
            "type": "object",
            "required": ["next", "results"],
            "properties": {**page_keys, "results": {"type": "array", "items": {"$ref": _REF + "Training"}}},
        },
        "PredictionCreate": {
            "type": "object",
            "required": ["input"] if input_required else [],
            "properties": create_props,
        },
        "AnyPredictionCreate": {
            "type": "object",
            "properties": {**create_props, "input": {"type": "object"}},
        },
        "VersionPredictionCreate": {
            "type": "object",
            "required": ["version"],
            # The version picks the model, whose input is checked against its own schema (422 otherwise).
            "properties": {"version": version, **create_props, "input": {"type": "object"}},
        },
        "PredictionPage": {
            "type": "object",
            "required": ["next", "results"],
            "properties": {**page_keys, "results": {"type": "array", "items": {"$ref": _REF + "Prediction"}}},
        },
        "Version": version_obj,
        "VersionPage": {
            "type": "object",
            "required": ["results"],
            "properties": {**page_keys, "results": {"type": "array", "items": {"$ref": _REF + "Version"}}},
        },
        "Model": {
            "type": "object",
            "required": ["url", "owner", "name", "visibility", "run_count"],
            "properties": {
                "url": {"type": "string"},
                "owner": {"type": "string"},
                "name": {"type": "string"},
                "visibility": {"type": "string"},
                "run_count": {"type": "integer", "minimum": 0},
                "latest_version": _nullable({"$ref": _REF + "Version"}),
            },
        },
        "File": {
            "type": "object",
            "required": ["id", "name", "content_type", "size", "urls"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "content_type": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "metadata": {"type": "object"},
                "urls": {"type": "object"},
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "object", "owned_by"],
                        "properties": {
                            "id": {"type": "string"},
                            "object": {"type": "string"},
                            "created": {"type": "integer"},
                            "owned_by": {"type": "string"},
                        },
                    },
                },
                **page_keys,
                "results": {"type": "array"},
            },
        },
        "CompletionRequest": completion_request,
        "ChatMessage": message,
        "ChatRequest": chat_request,
        "Usage": usage,
        "Completion": completion,
        "ChatCompletion": chat_completion,
        "Problem": {
            "type": "object",
            "required": ["title", "detail", "status"],
            "properties": {
                "title": {"type": "string"},
                "detail": {"type": "string"},
                "status": {"type": "integer"},
                "invalid_fields": {"type": "array", "items": {"type": "object"}},
            },
        },
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": ts,
                        "code": ts,
                    },
                }
            },
        },
        "Object": {"type": "object"},
    }


def full_openapi(default_schema: dict[str, Any], models: list[ModelEntry], *, max_tokens_limit: int) -> dict[str, Any]:
    """The whole server's document: Cog's (the default model's schema) plus Replicate v1 for every model, and
    OpenAI's paths when the server has language models (their names and aliases as `model`'s enum)."""
    doc = cog_openapi(default_schema)
    doc["info"] = {"title": "cocina", "version": "1", "description": "Cog, Replicate v1 and OpenAI APIs"}
    schemas = doc["components"]["schemas"]
    input_required = bool(schemas["Input"].get("required"))
    openai_names = [n for m in models if m.language_model for n in (m.name, *m.aliases)]
    schemas.update(_schemas(models, openai_names, max_tokens_limit, input_required))
    doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    paths = doc["paths"]
    paths.update(_replicate_paths(models))
    paths.update(_common_paths())
    paths.update(_audit_paths())
    if openai_names:
        paths.update(_openai_paths())
    else:
        for schema_name in ("CompletionRequest", "ChatMessage", "ChatRequest", "Usage", "Completion", "ChatCompletion"):
            schemas.pop(schema_name)
    return doc
