"""The form is made from the schema Cog derives: every kind of input gets its control, in `x-order`, with its
description, default, bounds and choices; prefills win over defaults; a Secret never starts filled."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from cocina.server.web.forms import form_fields, input_properties, output_schema

KITCHEN = Path(__file__).parent / "fixtures" / "projects" / "kitchen"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    from cocina.sdk.schema import derive_schema
    from cocina.sdk.shim import install_cog_shim

    install_cog_shim()
    spec = importlib.util.spec_from_file_location("kitchen_predict", KITCHEN / "predict.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return derive_schema(module.Predictor)


def test_every_input_gets_its_control_in_x_order(schema: dict[str, Any]) -> None:
    fields = form_fields(schema)
    assert [(f.name, f.kind) for f in fields] == [
        ("prompt", "textarea"),
        ("title", "text"),
        ("steps", "integer"),
        ("scale", "number"),
        ("upscale", "boolean"),
        ("style", "select"),
        ("size", "select"),
        ("image", "file"),
        ("api_key", "password"),
        ("tags", "json"),
    ]
    by = {f.name: f for f in fields}
    assert by["prompt"].required and not by["title"].required
    assert by["prompt"].description == "A long text: a text area"
    assert (by["steps"].minimum, by["steps"].maximum, by["steps"].value) == (1, 50, "4")
    assert by["steps"].hints == ("default 4", "min 1", "max 50")
    assert by["title"].max_length == 40 and by["title"].value == "untitled"
    assert by["upscale"].value == "false" and not by["upscale"].checked
    assert by["style"].choices == ("plain", "bold", "italic") and by["style"].value == "plain"
    assert by["style"].description == "One of a few"  # not the enum schema's "An enumeration."
    assert by["size"].choices == ("256", "512", "1024") and by["size"].enum_type == "integer"
    assert by["size"].value == "512"
    assert by["image"].value == "" and by["tags"].value == ""


def test_a_prefill_wins_over_defaults_but_never_fills_a_secret(schema: dict[str, Any]) -> None:
    values = {
        "prompt": "hola\nqué tal",
        "steps": 9,
        "upscale": True,
        "size": 1024,
        "tags": ["a", "b"],
        "image": "https://example.org/x.png",
        "api_key": "sk-should-not-show",
        "unknown": 1,
    }
    by = {f.name: f for f in form_fields(schema, values)}
    assert by["prompt"].value == "hola\nqué tal" and by["steps"].value == "9"
    assert by["upscale"].checked and by["size"].value == "1024"
    assert json.loads(by["tags"].value) == ["a", "b"]
    assert by["image"].value == "https://example.org/x.png"
    assert by["api_key"].value == "" and "unknown" not in by


def test_output_and_unknown_shapes() -> None:
    doc = {
        "components": {
            "schemas": {
                "Input": {
                    "properties": {
                        "b": {"type": "array", "items": {"type": "string", "format": "uri"}, "x-order": 1},
                        "a": {"type": "object", "x-order": 0},
                        "c": {"x-order": 2},
                    },
                },
                "Output": {"type": "array", "items": {"type": "string"}, "x-cog-array-type": "iterator"},
            }
        }
    }
    assert [(n, r) for n, _p, r in input_properties(doc)] == [("a", False), ("b", False), ("c", False)]
    assert [f.kind for f in form_fields(doc, {"b": ["u1", "u2"]})] == ["json", "files", "json"]
    assert form_fields(doc, {"b": ["u1", "u2"]})[1].value == "u1\nu2"
    assert output_schema(doc)["x-cog-array-type"] == "iterator"
    assert form_fields({}) == [] and output_schema({}) == {}
