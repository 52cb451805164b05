"""One schema, derived once from the predictor's type hints, in the OpenAPI 3.0.2 form Cog 0.16 serves.

Three uses, on two sides of a process boundary:

- child side (user code imported): `derive_schema()` builds the document, `coerce_inputs()` turns
  validated JSON into Python objects for `predict()`, `encode_output()` turns its return value into JSON;
- parent side (no user code): `InputValidator` validates and normalizes request inputs and parses CLI
  `-i` values from the JSON document alone.

Compatibility notes (the reference is the output of Cog 0.16.12, see tests/fixtures/schema/reference/):
- `Literal[...]` inputs are treated like `choices`: the property keeps its `default` and `description`.
  Cog 0.16 drops both for `Literal` (and moves the description into the enum schema), losing the default.

From newer Cog (the behaviour its integration suite checks):
- unions of JSON types (`str | float`, `list[int] | list[float]`, with or without `None`) are `anyOf` inputs,
  validated strictly (a value keeps its JSON type: no coercion between members);
- `TypedDict` inputs are objects; a `TypedDict` output has its fields in the schema;
- `Annotated[T, Opaque]` is an opaque object (a list of them when `T` is a list), passed through as is;
- `Input(accept=...)` on a `Path`/`File` input is `x-cog-accept`;
- an `Optional[T]` input without a default is optional (None when left out);
- an explicit JSON `null` is refused for every input ("omit the input to use its default");
- a training entry point's schema names its input and output `TrainingInput` and `TrainingOutput`.
"""

from __future__ import annotations

import collections.abc
import contextlib
import copy
import enum
import inspect
import io
import json
import math
import pathlib
import re
import shutil
import tempfile
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from cocina.sdk.files import fetch_to_local, is_url
from cocina.sdk.input import MISSING, FieldInfo
from cocina.sdk.predictor import get_predict_function
from cocina.sdk.types import (
    REDACTED,
    SECRET_SCHEMA,
    AsyncConcatenateIterator,
    ConcatenateIterator,
    File,
    Opaque,
    Path,
    Secret,
    opaque_schema,
)

__all__ = [
    "FILE_MARKER",
    "InputValidationError",
    "InputValidator",
    "coerce_inputs",
    "derive_schema",
    "encode_output",
]

OPENAPI_VERSION = "3.0.2"
FILE_MARKER = "__cocina_file__"
_REF = "#/components/schemas/"
_SUPPORTED_INPUTS = (
    "str, int, float, bool, cog.Path, cog.File, cog.Secret, dict, a TypedDict, list[T] of those, Optional[T], "
    "unions of str, int, float, bool and lists of them, Literal[...] of str or int, Annotated[T, cog.Opaque]"
)
_SUPPORTED_OUTPUTS = (
    "str, int, float, bool, cog.Path, cog.File, dict, list[T], a pydantic BaseModel, Optional[T], Any, "
    "Iterator[T], AsyncIterator[T], ConcatenateIterator[str], AsyncConcatenateIterator[str]"
)
_ITERATOR_ORIGINS = (
    collections.abc.Iterator,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncGenerator,
)
_CONCATENATE = (ConcatenateIterator, AsyncConcatenateIterator)


def _title(name: str) -> str:
    """pydantic's default title, which Cog shows: `max_new_tokens` -> `Max New Tokens`."""
    return name.replace("_", " ").title()


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp)


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """`Optional[T]` / `T | None` -> (T, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        members = [a for a in args if a is not type(None)]
        if len(members) == 1 and len(args) == 2:
            return members[0], True
    return tp, False


def _union_members(tp: Any) -> tuple[list[Any], bool] | None:
    """(members without None, whether None is one) for a union with two or more non-None members, else None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = typing.get_args(tp)
    members = [a for a in args if a is not type(None)]
    if len(members) < 2:
        return None
    return members, len(members) < len(args)


def _is_opaque(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Annotated and any(m is Opaque for m in tp.__metadata__)


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


# ------------------------------------------------------------------------------------------------------------
# derive_schema


@dataclass(frozen=True)
class _Param:
    name: str
    annotation: Any
    field: FieldInfo


def _predict_params(predictor: Any, mode: str = "predict") -> tuple[list[_Param], Any]:
    fn = get_predict_function(predictor, mode)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise TypeError(f"cannot resolve the type hints of {fn.__qualname__}(): {exc}") from exc
    params = list(inspect.signature(fn).parameters.values())
    if inspect.isclass(predictor) and params:
        params = params[1:]  # self
    result: list[_Param] = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"predict() parameter `{p.name}`: *args and **kwargs are not supported as inputs")
        if p.name not in hints:
            raise TypeError(
                f"No input type provided for parameter `{p.name}`. "
                f"Supported input types are: {_SUPPORTED_INPUTS}."
            )
        if isinstance(p.default, FieldInfo):
            field = p.default
        elif p.default is inspect.Parameter.empty:
            field = FieldInfo()
        else:
            field = FieldInfo(default=p.default)
        result.append(_Param(p.name, hints[p.name], field))
    if "return" not in hints:
        raise TypeError(
            f"{fn.__qualname__}() has no return type annotation; Cog needs one to describe the output. "
            f"Supported output types are: {_SUPPORTED_OUTPUTS}."
        )
    return result, hints["return"]


def _input_type_schema(name: str, tp: Any) -> dict[str, Any]:
    """Schema of an input type (no title/default); raises TypeError naming the argument for unsupported
    types."""
    if _is_opaque(tp):
        return opaque_schema(tp)
    tp = _strip_annotated(tp)
    inner, nullable = _split_optional(tp)
    if nullable:
        return {**_input_type_schema(name, inner), "nullable": True}
    union = _union_members(tp)
    if union is not None:
        members, has_none = union
        options = [_input_type_schema(name, member) for member in members]
        for option in options:
            if option.get("format") is not None or "enum" in option or option.get("type") is None:
                raise TypeError(
                    f"Input `{name}`: a union may only join JSON types (str, int, float, bool, dict and lists of "
                    f"them), got {_type_name(tp)}"
                )
        union_schema: dict[str, Any] = {"anyOf": options}
        if has_none:
            union_schema["nullable"] = True
        return union_schema
    origin = typing.get_origin(tp)
    schema: dict[str, Any]
    if tp is bool:
        schema = {"type": "boolean"}
    elif tp is int:
        schema = {"type": "integer"}
    elif tp is float:
        schema = {"type": "number"}
    elif tp is str:
        schema = {"type": "string"}
    elif tp is Secret:
        schema = dict(SECRET_SCHEMA)
    elif isinstance(tp, type) and (issubclass(tp, pathlib.PurePath) or tp is File):
        schema = {"type": "string", "format": "uri"}
    elif tp is dict or origin is dict or typing.is_typeddict(tp):
        schema = {"type": "object"}  # any object (newer Cog; 0.16 wrote `additionalProperties: true`)
    elif tp is list or origin is list:
        args = typing.get_args(tp)
        schema = {"type": "array", "items": _input_type_schema(name, args[0]) if args else {}}
    elif origin is Literal:
        schema = _enum_schema(name, list(typing.get_args(tp)))
    else:
        raise TypeError(
            f"Unsupported input type {_type_name(tp)} for parameter `{name}`. "
            f"Supported input types are: {_SUPPORTED_INPUTS}."
        )
    return schema


def _enum_schema(name: str, values: list[Any]) -> dict[str, Any]:
    if not values:
        raise TypeError(f"Input `{name}`: `choices` must not be empty")
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return {"type": "string", "enum": values}
    if kinds == {int}:
        return {"type": "integer", "enum": values}
    raise TypeError(
        f"Input `{name}`: `choices` must be all str or all int, "
        f"got {', '.join(sorted(k.__name__ for k in kinds))}"
    )


def _json_default(name: str, value: Any) -> Any:
    """A Python default as JSON for the schema; TypeError if it has no JSON form."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"Input `{name}`: default {value!r} cannot be written in JSON")
        return value
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return _json_default(name, value.value)
    if isinstance(value, list | tuple):
        return [_json_default(name, v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_default(name, v) for k, v in value.items()}
    raise TypeError(
        f"Input `{name}`: default {value!r} of type {type(value).__name__} cannot be written in JSON"
    )


def _check_constraints(name: str, base: dict[str, Any], field: FieldInfo) -> None:
    kind = base.get("type")
    is_number = kind in ("integer", "number") and "enum" not in base
    is_text = kind == "string" and base.get("format") is None and "enum" not in base
    for arg in ("ge", "le"):
        if getattr(field, arg) is not None and not is_number:
            raise TypeError(f"Input `{name}`: `{arg}` only applies to int and float inputs")
        value = getattr(field, arg)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TypeError(f"Input `{name}`: `{arg}` must be a number, got {value!r}")
    if field.ge is not None and field.le is not None and field.ge > field.le:
        raise TypeError(f"Input `{name}`: `ge` ({field.ge}) is greater than `le` ({field.le})")
    for arg in ("min_length", "max_length"):
        value = getattr(field, arg)
        if value is None:
            continue
        if not (is_text or kind == "array" or base.get("format") == "password"):
            raise TypeError(f"Input `{name}`: `{arg}` only applies to str, Secret and list inputs")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TypeError(f"Input `{name}`: `{arg}` must be a non-negative int, got {value!r}")
    if field.min_length is not None and field.max_length is not None and field.min_length > field.max_length:
        raise TypeError(f"Input `{name}`: `min_length` ({field.min_length}) is greater than `max_length`")
    if field.regex is not None:
        if not is_text:
            raise TypeError(f"Input `{name}`: `regex` only applies to str inputs")
        try:
            re.compile(field.regex)
        except re.error as exc:
            raise TypeError(
                f"Input `{name}`: `regex` {field.regex!r} is not a valid regular expression: {exc}"
            ) from exc


def _input_property(
    param: _Param, order: int, enums: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], bool]:
    """The `Input` property of one argument and whether it is required; enum schemas are added to `enums`."""
    name, field = param.name, param.field
    base = _input_type_schema(name, param.annotation)
    nullable = bool(base.pop("nullable", False))
    if base.get("format") == "password" and field.default is None:
        nullable = True  # `Secret = Input(default=None)`: an optional credential, as newer Cog reads it
    if field.choices is not None:
        if "enum" in base:
            raise TypeError(f"Input `{name}`: give either `choices` or a Literal type, not both")
        if base.get("type") not in ("string", "integer") or base.get("format") is not None:
            raise TypeError(f"Input `{name}`: `choices` only applies to str and int inputs")
        choice_schema = _enum_schema(name, list(field.choices))
        if choice_schema["type"] != base["type"]:
            raise TypeError(
                f"Input `{name}`: `choices` are {choice_schema['type']}s but the input is {base['type']}"
            )
        base = choice_schema
    _check_constraints(name, base, field)
    if field.accept is not None and base.get("format") != "uri" and base.get("items", {}).get("format") != "uri":
        raise TypeError(f"accept is only valid on Path or File inputs (parameter '{name}')")

    prop: dict[str, Any]
    if "enum" in base:
        enums[name] = {
            "type": base["type"],
            "enum": base["enum"],
            "title": name,
            "description": "An enumeration.",
        }
        prop = {"allOf": [{"$ref": f"{_REF}{name}"}]}
    else:
        prop = {**base, "title": _title(name)}
    if nullable:
        prop["nullable"] = True
    if field.description is not None:
        prop["description"] = field.description
    if field.ge is not None:
        prop["minimum"] = field.ge
    if field.le is not None:
        prop["maximum"] = field.le
    if field.min_length is not None:
        prop["minItems" if base["type"] == "array" else "minLength"] = field.min_length
    if field.max_length is not None:
        prop["maxItems" if base["type"] == "array" else "maxLength"] = field.max_length
    if field.regex is not None:
        prop["pattern"] = field.regex
    # A Secret's default stays out of the schema (it would be published); the child uses the Python default.
    if field.default is not MISSING and field.default is not None and base.get("format") != "password":
        default = _json_default(name, field.default)
        checker = InputValidator._for_property(name, prop, enums)
        try:
            checker._check(name, checker._properties[name], default)
        except InputValidationError as exc:
            raise TypeError(f"Input `{name}`: invalid default {default!r}: {_default_problem(exc, prop)}") from exc
        prop["default"] = default
    elif field.default is None and nullable:
        prop["default"] = None  # newer Cog publishes an Optional input's None default
    if field.deprecated:
        prop["deprecated"] = True
    if field.accept is not None:
        prop["x-cog-accept"] = field.accept
    prop["x-order"] = order
    # An Optional input without a default is optional too: left out, it is None.
    return prop, not field.has_default and not nullable


def _default_problem(exc: InputValidationError, prop: Mapping[str, Any]) -> str:
    """Why a default does not fit its input, naming the schema keyword it breaks (as Cog's build error does)."""
    kind = exc.errors[0].get("type") if exc.errors else None
    if kind == "greater_than_equal":
        return f"it is less than the minimum {prop['minimum']} (ge)"
    if kind == "less_than_equal":
        return f"it is greater than the maximum {prop['maximum']} (le)"
    msg = str(exc.errors[0]["msg"]) if exc.errors else str(exc)
    return msg.split(": ", 1)[1] if ": " in msg else msg


def _nullable_anyof(node: Any) -> Any:
    """OpenAPI 3.0 has no `null` type: turn pydantic's `anyOf [X, null]` into `X` + `nullable: true`, as Cog
    does."""
    if isinstance(node, list):
        return [_nullable_anyof(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_anyof(v) for k, v in node.items()}
    options = out.get("anyOf")
    if isinstance(options, list):
        non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        if len(non_null) < len(options):
            del out["anyOf"]
            if len(non_null) == 1:
                out.update(non_null[0])
            elif non_null:
                out["anyOf"] = non_null
            out["nullable"] = True
    return out


def _drop_null_defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """Cog 0.16 shows no `default: null` on a model's optional fields; pydantic 2 writes one."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict) and "default" in prop and prop["default"] is None:
            del prop["default"]
    return schema


def _model_schema(model: type[pydantic.BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """Register `model` (and the models it nests) under components; return a `$ref` to it."""
    schema = model.model_json_schema(ref_template=_REF + "{model}")
    for def_name, definition in schema.pop("$defs", {}).items():
        components[def_name] = _drop_null_defaults(_nullable_anyof(definition))
    components[model.__name__] = _drop_null_defaults(_nullable_anyof(schema))
    return {"$ref": f"{_REF}{model.__name__}"}


def _typeddict_schema(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    """A TypedDict's fields as an object schema (`NotRequired` fields left out of `required`)."""
    hints = typing.get_type_hints(tp)  # Required[...] / NotRequired[...] stripped
    required_keys = getattr(tp, "__required_keys__", frozenset(hints))
    properties = {
        name: {**_output_type_schema(field_type, components), "title": _title(name)}
        for name, field_type in hints.items()
    }
    schema: dict[str, Any] = {"properties": properties, "type": "object", "title": tp.__name__}
    required = [name for name in hints if name in required_keys]
    if required:
        schema["required"] = required
    return schema


def _output_type_schema(tp: Any, components: dict[str, Any]) -> dict[str, Any]:
    if _is_opaque(tp):
        return opaque_schema(tp)
    tp = _strip_annotated(tp)
    inner, nullable = _split_optional(tp)
    if nullable:
        return {**_output_type_schema(inner, components), "nullable": True}
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if _is_model(tp):
        return _model_schema(tp, components)
    if typing.is_typeddict(tp):
        return _typeddict_schema(tp, components)
    if origin is list or tp is list:
        args = typing.get_args(tp)
        return {"type": "array", "items": _output_type_schema(args[0], components) if args else {}}
    if tp is dict or origin is dict:
        return {"type": "object", "additionalProperties": True}
    if tp is Secret:
        return dict(SECRET_SCHEMA)
    try:
        schema = _input_type_schema("output", tp)
    except TypeError:
        raise TypeError(
            f"Unsupported output type {_type_name(tp)}. Supported output types are: {_SUPPORTED_OUTPUTS}."
        ) from None
    return schema


def _output_schema(tp: Any, components: dict[str, Any], title: str = "Output") -> dict[str, Any]:
    if _is_opaque(tp):
        return {**opaque_schema(tp), "title": title}
    tp = _strip_annotated(tp)
    origin = typing.get_origin(tp) or tp
    if origin in _CONCATENATE or origin in _ITERATOR_ORIGINS:
        args = typing.get_args(tp)
        items = _output_type_schema(args[0], components) if args else {}
        schema: dict[str, Any] = {
            "type": "array",
            "items": items,
            "title": title,
            "x-cog-array-type": "iterator",
        }
        if origin in _CONCATENATE:
            if items.get("type") != "string" or "format" in items:
                raise TypeError("ConcatenateIterator output must be ConcatenateIterator[str]")
            schema["x-cog-array-display"] = "concatenate"
        return schema
    if _is_model(tp) and tp.__name__ == title:
        schema = _model_schema(tp, components)
        return components.pop(title)
    if _is_model(tp):
        return _model_schema(tp, components)  # Cog 0.16 gives a bare $ref, without a title
    return {**_output_type_schema(tp, components), "title": title}


def derive_schema(predictor: Any, mode: str = "predict") -> dict[str, Any]:
    """The OpenAPI 3.0.2 document Cog serves for `predictor` (a class, instance or predict function); with mode
    "train", for a training entry point (`TrainingInput`, `TrainingOutput`, `/trainings`).

    Raises TypeError, naming the argument, for unsupported types and misused `Input(...)` constraints.
    """
    params, return_type = _predict_params(predictor, mode)
    train = mode == "train"
    input_name, output_name = ("TrainingInput", "TrainingOutput") if train else ("Input", "Output")
    enums: dict[str, dict[str, Any]] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for order, param in enumerate(params):
        prop, is_required = _input_property(param, order, enums)
        properties[param.name] = prop
        if is_required:
            required.append(param.name)
    input_schema: dict[str, Any] = {"properties": properties, "type": "object", "title": input_name}
    if required:
        input_schema["required"] = required

    models: dict[str, Any] = {}
    output_schema = _output_schema(return_type, models, output_name)
    components: dict[str, Any] = {
        **_static_components(),
        **models,
        input_name: input_schema,
        output_name: output_schema,
        **enums,
    }
    document = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": _paths(),
        "components": {"schemas": components},
    }
    return _as_training(document) if train else document


def _as_training(document: dict[str, Any]) -> dict[str, Any]:
    """A prediction document turned into a training one: Cog's `Training*` names and `/trainings` paths."""
    text = json.dumps(document)
    for old, new in (
        ('"#/components/schemas/Input"', '"#/components/schemas/TrainingInput"'),
        ('"#/components/schemas/Output"', '"#/components/schemas/TrainingOutput"'),
        ("PredictionRequest", "TrainingRequest"),
        ("PredictionResponse", "TrainingResponse"),
        ("/predictions", "/trainings"),
        ("prediction_id", "training_id"),
    ):
        text = text.replace(old, new)
    trained: dict[str, Any] = json.loads(text)
    return trained


def _json_response(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "Successful Response", "content": {"application/json": {"schema": schema}}}


_VALIDATION_RESPONSE = {
    "description": "Validation Error",
    "content": {"application/json": {"schema": {"$ref": f"{_REF}HTTPValidationError"}}},
}
_PREFER_HEADER = {
    "name": "prefer",
    "in": "header",
    "required": False,
    "schema": {"title": "Prefer", "type": "string"},
}
_PREDICTION_ID = {
    "name": "prediction_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "title": "Prediction ID"},
}


def _paths() -> dict[str, Any]:
    """The paths of Cog's HTTP server, with FastAPI's generated summaries and operation ids (clients show
    them)."""
    prediction_response = _json_response({"$ref": f"{_REF}PredictionResponse"})
    return {
        "/shutdown": {
            "post": {
                "summary": "Start Shutdown",
                "operationId": "start_shutdown_shutdown_post",
                "responses": {"200": _json_response({"title": "Response Start Shutdown Shutdown Post"})},
            }
        },
        "/": {
            "get": {
                "summary": "Root",
                "operationId": "root__get",
                "responses": {"200": _json_response({"title": "Response Root  Get"})},
            }
        },
        "/health-check": {
            "get": {
                "summary": "Healthcheck",
                "operationId": "healthcheck_health_check_get",
                "responses": {"200": _json_response({"title": "Response Healthcheck Health Check Get"})},
            }
        },
        "/predictions": {
            "post": {
                "summary": "Predict",
                "description": "Run a single prediction on the model",
                "operationId": "predict_predictions_post",
                "parameters": [dict(_PREFER_HEADER)],
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": f"{_REF}PredictionRequest"}}}
                },
                "responses": {"200": prediction_response, "422": _VALIDATION_RESPONSE},
            }
        },
        "/predictions/{prediction_id}": {
            "put": {
                "summary": "Predict Idempotent",
                "description": "Run a single prediction on the model (idempotent creation).",
                "operationId": "predict_idempotent_predictions__prediction_id__put",
                "parameters": [dict(_PREDICTION_ID), dict(_PREFER_HEADER)],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [{"$ref": f"{_REF}PredictionRequest"}],
                                "title": "Prediction Request",
                            }
                        }
                    },
                },
                "responses": {"200": prediction_response, "422": _VALIDATION_RESPONSE},
            }
        },
        "/predictions/{prediction_id}/cancel": {
            "post": {
                "summary": "Cancel",
                "description": "Cancel a running prediction",
                "operationId": "cancel_predictions__prediction_id__cancel_post",
                "parameters": [dict(_PREDICTION_ID)],
                "responses": {
                    "200": _json_response(
                        {"title": "Response Cancel Predictions  Prediction Id  Cancel Post"}
                    ),
                    "422": _VALIDATION_RESPONSE,
                },
            }
        },
    }


def _nullable(schema: dict[str, Any], title: str | None = None) -> dict[str, Any]:
    out = {"title": title} if title else {}
    return {**out, **schema, "nullable": True}


def _static_components() -> dict[str, Any]:
    """The request/response schemas that do not depend on the predictor (as Cog 0.16 with pydantic 2 emits
    them)."""
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "HTTPValidationError": {
            "properties": {
                "detail": {"items": {"$ref": f"{_REF}ValidationError"}, "type": "array", "title": "Detail"}
            },
            "type": "object",
            "title": "HTTPValidationError",
        },
        "PredictionRequest": {
            "properties": {
                "input": {"$ref": f"{_REF}Input", "nullable": True},
                "id": _nullable({"type": "string"}, "Id"),
                "created_at": _nullable(timestamp, "Created At"),
                "context": _nullable(
                    {"additionalProperties": {"type": "string"}, "type": "object"}, "Context"
                ),
                "output_file_prefix": _nullable({"type": "string"}, "Output File Prefix"),
                "webhook": _nullable(
                    {"type": "string", "maxLength": 65536, "minLength": 1, "format": "uri"}, "Webhook"
                ),
                "webhook_events_filter": {
                    "default": ["start", "output", "logs", "completed"],
                    "items": {"$ref": f"{_REF}WebhookEvent"},
                    "type": "array",
                    "nullable": True,
                },
            },
            "type": "object",
            "title": "PredictionRequest",
        },
        "PredictionResponse": {
            "properties": {
                "input": {"$ref": f"{_REF}Input", "nullable": True},
                "output": {"$ref": f"{_REF}Output"},
                "id": _nullable({"type": "string"}, "Id"),
                "version": _nullable({"type": "string"}, "Version"),
                "created_at": _nullable(timestamp, "Created At"),
                "started_at": _nullable(timestamp, "Started At"),
                "completed_at": _nullable(timestamp, "Completed At"),
                "logs": {"type": "string", "title": "Logs", "default": ""},
                "error": _nullable({"type": "string"}, "Error"),
                "status": {"$ref": f"{_REF}Status", "nullable": True},
                "metrics": _nullable({"additionalProperties": True, "type": "object"}, "Metrics"),
            },
            "type": "object",
            "title": "PredictionResponse",
        },
        "Status": {
            "type": "string",
            "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
            "title": "Status",
            "description": "An enumeration.",
        },
        "ValidationError": {
            "properties": {
                "loc": {
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "type": "array",
                    "title": "Location",
                },
                "msg": {"type": "string", "title": "Message"},
                "type": {"type": "string", "title": "Error Type"},
            },
            "type": "object",
            "required": ["loc", "msg", "type"],
            "title": "ValidationError",
        },
        "WebhookEvent": {
            "type": "string",
            "enum": ["start", "output", "logs", "completed"],
            "title": "WebhookEvent",
            "description": "An enumeration.",
        },
    }


# ------------------------------------------------------------------------------------------------------------
# InputValidator (parent side: JSON only)


class InputValidationError(ValueError):
    """Inputs that do not fit the schema; `.errors` are Cog's 422 `detail` items."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e["msg"]) for e in errors))


def _error(name: str | None, msg: str, type_: str) -> dict[str, Any]:
    loc: list[str | int] = ["body", "input"] if name is None else ["body", "input", name]
    return {"loc": loc, "msg": msg, "type": type_}


_TRUE = frozenset({"true", "1", "yes", "on", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "off", "n", "f"})
_INT_TEXT = re.compile(r"^[+-]?\d+$")


def _schema_kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type", "a value")
    if kind == "array":
        return f"a list of {_schema_kind(schema.get('items', {}))}"
    return {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
            "object": "an object"}.get(kind, str(kind))


def _matches_strictly(schema: Mapping[str, Any], value: Any) -> bool:
    """Whether `value` is, as JSON, of `schema`'s type: a member of a union takes no coercion (Cog validates unions
    with JSON Schema, where "3" is no integer and true is no number)."""
    kind = schema.get("type")
    if kind is None:
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        items = schema.get("items", {})
        return isinstance(value, list) and all(_matches_strictly(items, item) for item in value)
    return False


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class InputValidator:
    """Validates and normalizes prediction inputs from the OpenAPI JSON document alone (no user code needed).

    Type checks follow pydantic's lax mode, which Cog uses: an integer accepts an int, an integral float (3.0) and a
    string of digits ("3"); a number accepts ints, floats and numeric strings; a boolean accepts true/false and the
    strings "true"/"false"/"yes"/"no"/"on"/"off"/"1"/"0" and the ints 0/1; a string accepts only strings. Booleans
    are never taken as numbers. A `format: uri` string must be an http(s) or data URL or (a cocina extension, for
    local runs) an absolute local path.
    """

    def __init__(self, openapi: Mapping[str, Any]) -> None:
        schemas = openapi.get("components", {}).get("schemas", {})
        input_schema = schemas.get("Input", schemas.get("TrainingInput", {}))  # a training's inputs
        self._schemas: Mapping[str, Any] = schemas
        self._properties: dict[str, dict[str, Any]] = {
            name: self._resolve(prop) for name, prop in input_schema.get("properties", {}).items()
        }
        self._required: list[str] = list(input_schema.get("required", []))

    @classmethod
    def _for_property(cls, name: str, prop: dict[str, Any], enums: Mapping[str, Any]) -> InputValidator:
        return cls({"components": {"schemas": {**enums, "Input": {"properties": {name: prop}}}}})

    def _resolve(self, prop: dict[str, Any]) -> dict[str, Any]:
        """Merge `allOf: [{$ref}]` (Cog's form for enums) into one flat property schema."""
        out = {k: v for k, v in prop.items() if k != "allOf"}
        for part in prop.get("allOf", []):
            ref = part.get("$ref", "")
            target = self._schemas.get(ref.removeprefix(_REF), {}) if ref.startswith(_REF) else part
            for key, value in target.items():
                out.setdefault(key, value)
        return out

    @property
    def names(self) -> list[str]:
        """Input names in `x-order` order."""
        return sorted(self._properties, key=lambda n: self._properties[n].get("x-order", 0))

    @property
    def required(self) -> list[str]:
        """Names of inputs without a default."""
        return list(self._required)

    def property_schema(self, name: str) -> dict[str, Any]:
        """The flattened schema of input `name` (enum references resolved)."""
        return copy.deepcopy(self._properties[name])

    def validate(self, raw: Any) -> dict[str, Any]:
        """Check `raw` against the schema; return normalized JSON values with defaults filled, unknown keys
        dropped.

        Inputs neither given nor defaulted in the schema (an optional argument whose default is None, a default
        factory or a Secret) are left out: the child then uses the Python default.
        """
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InputValidationError([_error(None, "input must be a JSON object", "dict_type")])
        errors: list[dict[str, Any]] = []
        out: dict[str, Any] = {}
        for name in self.names:
            prop = self._properties[name]
            if name in raw and raw[name] is None:
                # As Cog: null is never a value, even for an Optional input; leaving the input out is.
                errors.append(
                    _error(name, f"{name}: must not be null (omit the input to use its default)", "none_forbidden")
                )
            elif name in raw:
                try:
                    out[name] = self._check(name, prop, raw[name])
                except InputValidationError as exc:
                    errors.extend(exc.errors)
            elif "default" in prop:
                out[name] = copy.deepcopy(prop["default"])
            elif name in self._required:
                errors.append(_error(name, f"{name}: required input is missing", "missing"))
        if errors:
            raise InputValidationError(errors)
        return out

    def _check(self, name: str, prop: Mapping[str, Any], value: Any) -> Any:
        def fail(msg: str, type_: str) -> typing.NoReturn:
            raise InputValidationError([_error(name, f"{name}: {msg}", type_)])

        if value is None:
            if prop.get("nullable"):
                return None
            fail("must not be null", "none_forbidden")
        if "anyOf" in prop:
            options = [self._resolve(option) for option in prop["anyOf"]]
            if not any(_matches_strictly(option, value) for option in options):
                kinds = " or ".join(_schema_kind(option) for option in options)
                fail(f"must be {kinds}, got {_describe(value)}", "union_type")
            return value
        kind = prop.get("type")
        if kind == "integer":
            value = self._to_int(value, fail)
        elif kind == "number":
            value = self._to_number(value, fail)
        elif kind == "boolean":
            value = self._to_bool(value, fail)
        elif kind == "string":
            if not isinstance(value, str):
                fail(f"must be a string, got {_describe(value)}", "string_type")
            if prop.get("format") == "uri" and not (is_url(value) or value.startswith("/")):
                fail(
                    f"must be an http(s) or data URL or an absolute file path, got {_describe(value)}",
                    "url_parsing",
                )
        elif kind == "array":
            if not isinstance(value, list):
                fail(f"must be a list, got {_describe(value)}", "list_type")
            item_schema = prop.get("items", {})
            items: list[Any] = []
            item_errors: list[dict[str, Any]] = []
            for index, item in enumerate(value):
                try:
                    items.append(self._check(f"{name}[{index}]", item_schema, item))
                except InputValidationError as exc:
                    for err in exc.errors:
                        item_errors.append({**err, "loc": ["body", "input", name, index]})
            if item_errors:
                raise InputValidationError(item_errors)
            value = items
        elif kind == "object" and not isinstance(value, dict):
            fail(f"must be an object, got {_describe(value)}", "dict_type")

        if "enum" in prop and value not in prop["enum"]:
            choices = ", ".join(repr(c) for c in prop["enum"])
            fail(f"must be one of {choices}, got {_describe(value)}", "enum")
        if "minimum" in prop and value < prop["minimum"]:
            fail(f"must be >= {prop['minimum']}, got {value}", "greater_than_equal")
        if "maximum" in prop and value > prop["maximum"]:
            fail(f"must be <= {prop['maximum']}, got {value}", "less_than_equal")
        if "minLength" in prop and len(value) < prop["minLength"]:
            fail(f"must have at least {prop['minLength']} characters, got {len(value)}", "string_too_short")
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            fail(f"must have at most {prop['maxLength']} characters, got {len(value)}", "string_too_long")
        if "minItems" in prop and len(value) < prop["minItems"]:
            fail(f"must have at least {prop['minItems']} items, got {len(value)}", "too_short")
        if "maxItems" in prop and len(value) > prop["maxItems"]:
            fail(f"must have at most {prop['maxItems']} items, got {len(value)}", "too_long")
        if "pattern" in prop and isinstance(value, str) and re.search(prop["pattern"], value) is None:
            fail(f"must match pattern {prop['pattern']!r}, got {_describe(value)}", "string_pattern_mismatch")
        return value

    @staticmethod
    def _to_int(value: Any, fail: Callable[[str, str], typing.NoReturn]) -> int:
        if isinstance(value, bool):
            fail(f"must be an integer, got {_describe(value)}", "int_type")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT_TEXT.match(value.strip()) and len(value) <= 4300:
            return int(value.strip())
        fail(f"must be an integer, got {_describe(value)}", "int_parsing")

    @staticmethod
    def _to_number(value: Any, fail: Callable[[str, str], typing.NoReturn]) -> float:
        if isinstance(value, bool):
            fail(f"must be a number, got {_describe(value)}", "float_type")
        if isinstance(value, int):
            try:
                return float(value)
            except OverflowError:
                fail(f"is too large, got {_describe(value)}", "float_parsing")
        if isinstance(value, float):
            return value
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        fail(f"must be a number, got {_describe(value)}", "float_parsing")

    @staticmethod
    def _to_bool(value: Any, fail: Callable[[str, str], typing.NoReturn]) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
        fail(f"must be a boolean, got {_describe(value)}", "bool_parsing")

    def _parse_union(self, name: str, options: list[dict[str, Any]], text: str) -> Any:
        """The JSON value `text` stands for in a union: a JSON list or object when it is one; else an integer, a
        number or a boolean when it reads as one and the union has that type; else the string itself."""
        kinds = {option.get("type") for option in options}
        stripped = text.strip()
        if stripped[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                parsed = json.loads(stripped)
                if any(_matches_strictly(option, parsed) for option in options):
                    return parsed
        if kinds & {"integer", "number"} and _INT_TEXT.match(stripped):
            return int(stripped)
        if "number" in kinds:
            with contextlib.suppress(ValueError):
                number = float(stripped)
                if math.isfinite(number):
                    return number
        if "boolean" in kinds and stripped.lower() in ("true", "false"):
            return stripped.lower() == "true"
        for option in options:
            if option.get("type") == "array":
                with contextlib.suppress(InputValidationError):
                    items = self._parse_text(name, option, text)
                    if _matches_strictly(option, items):
                        return items
        if "string" in kinds:
            return text
        kinds_text = " or ".join(_schema_kind(option) for option in options)
        raise InputValidationError([_error(name, f"{name}: must be {kinds_text}, got {text!r}", "union_type")])

    def parse_cli(self, name: str, text: str) -> Any:
        """Turn the text of `-i name=text` into a JSON value by the input's type.

        Numbers and booleans are parsed; strings are taken as they are; a `Path` input takes `@file` (made an
        absolute path; the file must exist), an existing relative file name, or a URL; a list takes a JSON array, or
        for lists of numbers/booleans also `1,2,3`, or else a single item; a dict takes a JSON object. Unknown names
        raise InputValidationError listing the valid ones. The result still goes through `validate`.
        """
        if name not in self._properties:
            valid = ", ".join(self.names) or "none"
            raise InputValidationError(
                [_error(name, f"unknown input {name!r}; valid inputs: {valid}", "unknown")]
            )
        return self._parse_text(name, self._properties[name], text)

    def _parse_text(self, name: str, prop: Mapping[str, Any], text: str) -> Any:
        def fail(msg: str, type_: str) -> typing.NoReturn:
            raise InputValidationError([_error(name, f"{name}: {msg}", type_)])

        if "anyOf" in prop:
            return self._parse_union(name, [self._resolve(option) for option in prop["anyOf"]], text)
        kind = prop.get("type")
        if prop.get("nullable") and kind != "string" and text.strip().lower() in ("null", "none"):
            return None
        if kind == "integer":
            return self._to_int(text, fail)
        if kind == "number":
            number = self._to_number(text, fail)
            return int(number) if _INT_TEXT.match(text.strip()) else number
        if kind == "boolean":
            return self._to_bool(text, fail)
        if kind == "string" and prop.get("format") == "uri":
            if text.startswith("@"):
                path = pathlib.Path(text[1:]).expanduser()
                if not path.is_file():
                    fail(f"file not found: {text[1:]}", "file_not_found")
                return str(path.resolve())
            if not is_url(text) and pathlib.Path(text).expanduser().is_file():
                return str(pathlib.Path(text).expanduser().resolve())
            return text
        if kind == "array":
            items = prop.get("items", {})
            if text.lstrip().startswith("["):
                try:
                    parsed = json.loads(text)
                except ValueError as exc:
                    fail(f"not a valid JSON list: {exc}", "json_invalid")
                return parsed
            if items.get("type") in ("integer", "number", "boolean"):
                return [self._parse_text(name, items, part) for part in text.split(",")]
            return [self._parse_text(name, items, text)]
        if kind == "object":
            try:
                return json.loads(text)
            except ValueError as exc:
                fail(f"not a valid JSON object: {exc}", "json_invalid")
        return text


# ------------------------------------------------------------------------------------------------------------
# coerce_inputs / encode_output (child side)


def _coerce(tp: Any, value: Any, tmp_dir: pathlib.Path | None) -> Any:
    tp = _strip_annotated(tp)
    inner, nullable = _split_optional(tp)
    if nullable:
        return None if value is None else _coerce(inner, value, tmp_dir)
    origin = typing.get_origin(tp)
    if value is None:
        return None
    if tp is Secret:
        return value if isinstance(value, Secret) else Secret(str(value))
    if tp is File:
        return fetch_to_local(str(value), tmp_dir).open("rb")
    if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        return Path(fetch_to_local(str(value), tmp_dir))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is list and isinstance(value, list):
        args = typing.get_args(tp)
        return [_coerce(args[0], v, tmp_dir) for v in value] if args else value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    return value


def coerce_inputs(
    predict_fn: Callable[..., Any], normalized: Mapping[str, Any], *, tmp_dir: pathlib.Path | None = None
) -> dict[str, Any]:
    """Keyword arguments for `predict_fn` from validated JSON inputs (child side).

    `Path` inputs become local files (URLs downloaded under `tmp_dir`, keeping their file names; data URLs decoded;
    local paths kept), `Secret` inputs are wrapped, `File` inputs opened. Arguments missing from `normalized` get
    their Python default (`Input(default=...)`, `default_factory`, or a plain default), so `predict` never receives
    an `Input(...)` object. Unknown keys are ignored.
    """
    hints = typing.get_type_hints(predict_fn, include_extras=True)
    kwargs: dict[str, Any] = {}
    params = list(inspect.signature(predict_fn).parameters.values())
    if params and params[0].name == "self" and not inspect.ismethod(predict_fn):
        params = params[1:]
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name in normalized:
            kwargs[param.name] = _coerce(hints.get(param.name, Any), normalized[param.name], tmp_dir)
            continue
        default = param.default
        if isinstance(default, FieldInfo):
            if default.default_factory is not None:
                kwargs[param.name] = default.default_factory()
            elif default.default is not MISSING:
                kwargs[param.name] = _coerce(
                    hints.get(param.name, Any), copy.deepcopy(default.default), tmp_dir
                )
            else:
                kwargs[param.name] = None
        elif default is not inspect.Parameter.empty:
            kwargs[param.name] = default
        else:
            # Validation should have caught this; None makes the error visible in predict() rather than here.
            kwargs[param.name] = None
    return kwargs


def encode_output(value: Any) -> Any:
    """A predictor's return value (or one yielded item) as JSON: files become `{"__cocina_file__":
    "/abs/path"}`.

    pydantic models become dicts, enums their values, secrets `**********`; containers are encoded recursively.
    Objects with `.tolist()` (numpy arrays, tensors) are converted through it without importing numpy.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, pathlib.PurePath):
        return {FILE_MARKER: str(pathlib.Path(value).resolve())}
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, pydantic.BaseModel):
        return {k: encode_output(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, enum.Enum):
        return encode_output(value.value)
    if isinstance(value, dict):
        return {str(k): encode_output(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [encode_output(v) for v in value]
    if isinstance(value, io.IOBase):
        return {FILE_MARKER: _file_object_to_path(value)}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return encode_output(tolist())
    raise TypeError(f"cannot encode output of type {type(value).__name__} as JSON")


def _file_object_to_path(fileobj: io.IOBase) -> str:
    """Cog's deprecated `File` outputs: a file object; reuse its path if it has one, else copy it to a temp
    file."""
    name = getattr(fileobj, "name", None)
    if isinstance(name, str) and pathlib.Path(name).is_file():
        return str(pathlib.Path(name).resolve())
    suffix = pathlib.Path(name).suffix if isinstance(name, str) else ""
    with tempfile.NamedTemporaryFile(prefix="output-", suffix=suffix, delete=False) as out:
        fileobj.seek(0) if fileobj.seekable() else None
        shutil.copyfileobj(fileobj, out)
    return out.name
