"""derive_schema against what the real Cog 0.16.12 serves for the same predictors (reference/*.json)."""

import json
import pathlib
from typing import Any

import pytest

from cocina.sdk import BasePredictor, Input, Path, Secret
from cocina.sdk.predictor import load_predictor
from cocina.sdk.schema import derive_schema

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "schema"
# The fixtures and their Cog 0.16.12 references: one list, the one the script that regenerates them uses.
from tests.fixtures.schema.make_reference import REFERENCES  # noqa: E402

# Where cocina differs from Cog on purpose, tested on its own below: a Literal input keeps its default and
# description (Cog 0.16.12 drops both).
DELIBERATE_DIFFERENCES = {"input_literal"}
# What newer Cog publishes differently for these fixtures' inputs (its integration suite checks the schema label:
# ../shared/conformance/cog/tests/typeddict_input.txtar, static_schema_secret_optional.txtar): an Optional input's
# None default is written out.
NEWER_COG_INPUTS: dict[str, dict[str, dict[str, Any]]] = {"inputs_all": {"maybe": {"default": None}}}


def _schema(ref: str) -> dict[str, Any]:
    return derive_schema(load_predictor(ref, FIXTURES))


@pytest.mark.parametrize("name", sorted(set(REFERENCES) - DELIBERATE_DIFFERENCES))
def test_matches_cog_field_by_field(name: str) -> None:
    mine = _schema(REFERENCES[name])
    cog = json.loads((FIXTURES / "reference" / f"{name}.json").read_text())
    assert mine["openapi"] == cog["openapi"] == "3.0.2"
    assert mine["info"] == cog["info"]
    assert mine["paths"] == cog["paths"]
    assert set(mine["components"]["schemas"]) == set(cog["components"]["schemas"])
    for schema_name, expected in cog["components"]["schemas"].items():
        actual = mine["components"]["schemas"][schema_name]
        if schema_name == "Input":
            assert actual.get("required") == expected.get("required")
            assert list(actual["properties"]) == list(expected["properties"])
            for prop, expected_prop in expected["properties"].items():
                newer = NEWER_COG_INPUTS.get(name, {}).get(prop, {})
                assert actual["properties"][prop] == {**expected_prop, **newer}, prop
        else:
            assert actual == expected, schema_name


def test_literal_is_an_enum_like_choices_and_keeps_its_default() -> None:
    # Deliberate difference from Cog 0.16, which drops default and description for Literal inputs.
    schemas = _schema("input_literal.py:Predictor")["components"]["schemas"]
    assert schemas["mode"] == {
        "type": "string",
        "enum": ["fast", "slow"],
        "title": "mode",
        "description": "An enumeration.",
    }
    assert schemas["Input"]["properties"]["mode"] == {
        "allOf": [{"$ref": "#/components/schemas/mode"}],
        "default": "fast",
        "description": "Speed",
        "x-order": 0,
    }


def test_runner_style_uses_run() -> None:
    schemas = _schema("runner_style.py:Runner")["components"]["schemas"]
    assert schemas["Input"]["properties"]["prompt"] == {
        "type": "string",
        "title": "Prompt",
        "default": "hi",
        "maxLength": 100,
        "x-order": 0,
    }
    assert schemas["Output"] == {"type": "string", "title": "Output"}


def test_title_case_of_names() -> None:
    def predict(max_new_tokens: int = 1, gpt2_model: str = "x") -> str:
        return ""

    props = derive_schema(predict)["components"]["schemas"]["Input"]["properties"]
    assert props["max_new_tokens"]["title"] == "Max New Tokens"
    assert props["gpt2_model"]["title"] == "Gpt2 Model"


def test_optional_list_and_secret_inputs() -> None:
    def predict(
        files: list[Path] = Input(min_length=1, max_length=3),
        maybe: int | None = Input(default=None, ge=0),
        key: Secret = Input(default=Secret("s3cret")),
        options: dict = Input(default={"a": 1}),
    ) -> Any:
        return None

    schemas = derive_schema(predict)["components"]["schemas"]
    props = schemas["Input"]["properties"]
    assert props["files"] == {
        "type": "array",
        "items": {"type": "string", "format": "uri"},
        "title": "Files",
        "minItems": 1,
        "maxItems": 3,
        "x-order": 0,
    }
    assert props["maybe"] == {
        "type": "integer",
        "title": "Maybe",
        "nullable": True,
        "minimum": 0,
        "default": None,
        "x-order": 1,
    }
    # A Secret's default is never published in the schema.
    assert props["key"] == {
        "type": "string",
        "format": "password",
        "writeOnly": True,
        "x-cog-secret": True,
        "title": "Key",
        "x-order": 2,
    }
    assert props["options"]["default"] == {"a": 1}
    assert schemas["Input"]["required"] == ["files"]
    assert schemas["Output"] == {"title": "Output"}


class _Plain:
    pass


@pytest.mark.parametrize(
    ("annotation", "needle"),
    [(_Plain, "_Plain"), (set, "set"), (tuple[int, int], "tuple")],
)
def test_unsupported_input_types_name_the_argument(annotation: Any, needle: str) -> None:
    def predict(thing: annotation) -> str:
        return ""

    with pytest.raises(TypeError, match=r"parameter `thing`.*Supported input types are: str, int") as info:
        derive_schema(predict)
    assert needle in str(info.value)


def test_missing_annotations_are_errors() -> None:
    def no_input_type(x) -> str:
        return ""

    def no_output_type(x: int):
        return ""

    with pytest.raises(TypeError, match="parameter `x`"):
        derive_schema(no_input_type)
    with pytest.raises(TypeError, match="no return type annotation"):
        derive_schema(no_output_type)


def test_unsupported_output_type() -> None:
    def predict(x: int) -> set:
        return set()

    with pytest.raises(TypeError, match="Unsupported output type set"):
        derive_schema(predict)


@pytest.mark.parametrize(
    ("annotation", "field", "message"),
    [
        (str, Input(ge=1), "`ge` only applies to int and float"),
        (int, Input(le="9"), "`le` must be a number"),  # type: ignore[arg-type]
        (int, Input(ge=5, le=1), "`ge` \\(5\\) is greater than `le`"),
        (int, Input(min_length=1), "`min_length` only applies"),
        (int, Input(regex="a+"), "`regex` only applies to str"),
        (str, Input(regex="(unclosed"), "not a valid regular expression"),
        (str, Input(choices=["a", 1]), "`choices` must be all str or all int"),
        (str, Input(choices=[]), "`choices` must not be empty"),
        (int, Input(choices=["a", "b"]), "`choices` are strings but the input is integer"),
        (str, Input(default="c", choices=["a", "b"]), "invalid default 'c': must be one of 'a', 'b'"),
        (int, Input(default="x"), "invalid default 'x': must be an integer"),
        (int, Input(default=1000, le=512), "invalid default 1000: it is greater than the maximum 512 \\(le\\)"),
        (int, Input(default=1, ge=2), "invalid default 1: it is less than the minimum 2 \\(ge\\)"),
        (float, Input(choices=[1.0]), "`choices` only applies to str and int"),
    ],
)
def test_input_misuse_is_a_type_error_naming_the_argument(annotation: Any, field: Any, message: str) -> None:
    def predict(arg: annotation = field) -> str:
        return ""

    with pytest.raises(TypeError, match=rf"Input `arg`: .*{message}|Input `arg`: {message}"):
        derive_schema(predict)


def test_input_rejects_default_and_factory_together() -> None:
    with pytest.raises(TypeError, match="default_factory"):
        Input(default=1, default_factory=lambda: 1)


def test_default_factory_makes_the_input_optional_without_a_published_default() -> None:
    class Predictor(BasePredictor):
        def predict(self, tags: list[str] = Input(default_factory=list)) -> list[str]:
            return tags

    schema = derive_schema(Predictor)["components"]["schemas"]["Input"]
    assert "required" not in schema
    assert "default" not in schema["properties"]["tags"]


def test_instance_and_class_give_the_same_schema() -> None:
    predictor_class = load_predictor("inputs_all.py:Predictor", FIXTURES)
    assert derive_schema(predictor_class) == derive_schema(predictor_class())
