"""The model page's form, made from a version's input schema (Cog's OpenAPI `Input`), in `x-order`.

Each input becomes one `Field`: its control (`kind`), label, description, constraint hints and the value it
starts with (a prefill, else the schema's default). The page renders the fields as HTML (so the form works with
the keyboard and reads well without JavaScript); its script only reads them back into a JSON input, by `kind`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_REF = "#/components/schemas/"
SHORT_TEXT_MAX = 120  # a string input with a smaller maxLength gets one line; others a text area


@dataclass(frozen=True)
class Field:
    """One input of the form.

    `kind`: text, textarea, password (a Secret), integer, number, boolean (a switch), select (an enum), file (a
    Path: a file picker, or a URL), files (a list of Paths), json (lists and objects, typed as JSON).
    `value` is the control's starting text (JSON for `json`; "true"/"false" for booleans).
    """

    name: str
    kind: str
    label: str
    description: str | None
    required: bool
    value: str
    choices: tuple[str, ...] = ()  # a select's options, each as JSON when `enum_type` is not string
    enum_type: str = "string"
    minimum: float | int | None = None
    maximum: float | int | None = None
    max_length: int | None = None
    accept: str | None = None
    hints: tuple[str, ...] = field(default_factory=tuple)

    @property
    def checked(self) -> bool:
        return self.value == "true"


def _resolve(prop: Mapping[str, Any], schemas: Mapping[str, Any]) -> dict[str, Any]:
    """A property with Cog's `allOf: [{$ref}]` (enums) folded in; the enum schema's generic title and
    description ("An enumeration.") are not the input's."""
    out = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        target = schemas.get(ref.removeprefix(_REF), {}) if ref.startswith(_REF) else part
        for key, value in target.items():
            if key not in ("title", "description"):
                out.setdefault(key, value)
    return out


def input_properties(openapi: Mapping[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """(name, flattened schema, required) of each input, in `x-order`."""
    schemas = openapi.get("components", {}).get("schemas", {})
    input_schema = schemas.get("Input", {})
    required = set(input_schema.get("required", []))
    props = {name: _resolve(p, schemas) for name, p in input_schema.get("properties", {}).items()}
    ordered = sorted(props, key=lambda n: (props[n].get("x-order", 1_000_000), n))
    return [(name, props[name], name in required) for name in ordered]


def output_schema(openapi: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened `Output` schema (how the page shows the output: text, files, a stream of tokens)."""
    schemas = openapi.get("components", {}).get("schemas", {})
    return _resolve(schemas.get("Output", {}), schemas)


def _kind(prop: Mapping[str, Any]) -> str:
    kind = prop.get("type")
    if "enum" in prop:
        return "select"
    if kind == "boolean":
        return "boolean"
    if kind in ("integer", "number"):
        return str(kind)
    if kind == "string":
        if prop.get("format") == "uri":
            return "file"
        if prop.get("format") == "password":
            return "password"
        max_length = prop.get("maxLength")
        return "text" if isinstance(max_length, int) and max_length <= SHORT_TEXT_MAX else "textarea"
    if kind == "array" and prop.get("items", {}).get("format") == "uri":
        return "files"
    return "json"


def _text(kind: str, value: Any) -> str:
    """A JSON value as its control's starting text."""
    if value is None:
        return ""
    if kind == "boolean":
        return "true" if value is True else "false"
    if kind == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    if kind == "files":
        return "\n".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _hints(prop: Mapping[str, Any], kind: str) -> tuple[str, ...]:
    hints = []
    if "default" in prop and kind != "password":
        hints.append(f"default {json.dumps(prop['default'], ensure_ascii=False)}")
    for key, word in (("minimum", "min"), ("maximum", "max"), ("minLength", "min length"), ("maxLength", "max length")):
        if key in prop:
            hints.append(f"{word} {prop[key]}")
    if "pattern" in prop:
        hints.append(f"pattern {prop['pattern']}")
    return tuple(hints)


def form_fields(openapi: Mapping[str, Any], values: Mapping[str, Any] | None = None) -> list[Field]:
    """The form of a version: one field per input, in `x-order`, starting from `values` (a prefill: an example's
    or an earlier prediction's input) where given, else the schema's defaults. A Secret never starts filled."""
    values = values or {}
    fields = []
    for name, prop, required in input_properties(openapi):
        kind = _kind(prop)
        if kind == "password":
            start = None
        elif name in values:
            start = values[name]
        else:
            start = prop.get("default")
        if kind == "boolean" and start is None:
            start = False
        choices: tuple[str, ...] = ()
        if kind == "select":
            choices = tuple(c if isinstance(c, str) else json.dumps(c) for c in prop["enum"])
        fields.append(
            Field(
                name=name,
                kind=kind,
                label=name,  # the name the API takes (the snippets use it too)
                description=prop.get("description"),
                required=required,
                value=_text(kind, start),
                choices=choices,
                enum_type=str(prop.get("type", "string")),
                minimum=prop.get("minimum"),
                maximum=prop.get("maximum"),
                max_length=prop.get("maxLength"),
                accept=prop.get("x-cog-accept") or (prop.get("items", {}).get("x-cog-accept")),
                hints=_hints(prop, kind),
            )
        )
    return fields
