"""InputValidator works from the JSON document alone: constraints, messages, defaults, CLI parsing."""

import pathlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocina.sdk import Input, Path
from cocina.sdk.schema import InputValidationError, InputValidator, derive_schema


def predict(
    prompt: str = Input(min_length=1, max_length=5, regex="^[a-z]+$"),
    max_new_tokens: int = Input(default=128, ge=1, le=512),
    temperature: float = Input(default=0.7, ge=0.0, le=2.0),
    stream: bool = False,
    color: str = Input(default="red", choices=["red", "green"]),
    image: Path | None = Input(default=None),
    sizes: list[int] = Input(default=[1]),
) -> str:
    return ""


VALIDATOR = InputValidator(derive_schema(predict))


def _errors(raw: Any) -> list[dict[str, Any]]:
    with pytest.raises(InputValidationError) as info:
        VALIDATOR.validate(raw)
    return info.value.errors


def test_fills_defaults_and_drops_unknown_fields() -> None:
    assert VALIDATOR.validate({"prompt": "abc", "nope": 1}) == {
        "prompt": "abc",
        "max_new_tokens": 128,
        "temperature": 0.7,
        "stream": False,
        "color": "red",
        "image": None,  # an Optional input's None default, as newer Cog publishes it
        "sizes": [1],
    }


@pytest.mark.parametrize(
    ("raw", "msg", "type_"),
    [
        ({}, "prompt: required input is missing", "missing"),
        (
            {"prompt": "abc", "max_new_tokens": 1000},
            "max_new_tokens: must be <= 512, got 1000",
            "less_than_equal",
        ),
        ({"prompt": "abc", "max_new_tokens": 0}, "max_new_tokens: must be >= 1, got 0", "greater_than_equal"),
        ({"prompt": ""}, "prompt: must have at least 1 characters, got 0", "string_too_short"),
        ({"prompt": "abcdef"}, "prompt: must have at most 5 characters, got 6", "string_too_long"),
        ({"prompt": "AB"}, "prompt: must match pattern '^[a-z]+$'", "string_pattern_mismatch"),
        ({"prompt": "a", "color": "blue"}, "color: must be one of 'red', 'green', got 'blue'", "enum"),
        ({"prompt": "a", "max_new_tokens": 2.5}, "max_new_tokens: must be an integer", "int_parsing"),
        ({"prompt": "a", "max_new_tokens": True}, "max_new_tokens: must be an integer", "int_type"),
        ({"prompt": "a", "temperature": "hot"}, "temperature: must be a number", "float_parsing"),
        ({"prompt": "a", "stream": "maybe"}, "stream: must be a boolean", "bool_parsing"),
        ({"prompt": 3}, "prompt: must be a string", "string_type"),
        ({"prompt": "a", "image": "relative.png"}, "image: must be an http(s) or data URL", "url_parsing"),
        ({"prompt": "a", "sizes": 3}, "sizes: must be a list", "list_type"),
    ],
)
def test_each_constraint_has_a_clear_error(raw: dict[str, Any], msg: str, type_: str) -> None:
    errors = _errors(raw)
    assert len(errors) == 1
    assert errors[0]["msg"].startswith(msg)
    assert errors[0]["type"] == type_
    assert errors[0]["loc"][:2] == ["body", "input"]


def test_list_item_errors_point_at_the_item() -> None:
    [error] = _errors({"prompt": "a", "sizes": [1, "x"]})
    assert error["loc"] == ["body", "input", "sizes", 1]


def test_lax_coercions_like_pydantic() -> None:
    out = VALIDATOR.validate(
        {"prompt": "a", "max_new_tokens": "3", "temperature": 1, "stream": "yes", "image": "data:,x"}
    )
    assert out["max_new_tokens"] == 3
    assert out["temperature"] == 1.0 and isinstance(out["temperature"], float)
    assert out["stream"] is True
    assert VALIDATOR.validate({"prompt": "a", "max_new_tokens": 4.0})["max_new_tokens"] == 4


def test_uri_accepts_urls_and_absolute_paths() -> None:
    for value in (
        "https://example.com/a.png",
        "http://127.0.0.1/x",
        "data:image/png;base64,AA==",
        "/tmp/a.png",
    ):
        assert VALIDATOR.validate({"prompt": "a", "image": value})["image"] == value
    assert VALIDATOR.validate({"prompt": "a"})["image"] is None


@pytest.mark.parametrize("name", ["image", "max_new_tokens", "prompt"])
def test_explicit_null_is_refused_even_for_optional_inputs(name: str) -> None:
    # As Cog: null is no value; an input is left out to get its default.
    [error] = _errors({"prompt": "a", name: None})
    assert error["loc"] == ["body", "input", name]
    assert error["type"] == "none_forbidden"
    assert error["msg"] == f"{name}: must not be null (omit the input to use its default)"


def test_all_errors_are_reported_together() -> None:
    errors = _errors({"max_new_tokens": 1000, "color": "blue"})
    assert {e["loc"][2] for e in errors} == {"prompt", "max_new_tokens", "color"}


def test_non_object_input() -> None:
    [error] = _errors([1, 2])
    assert error["loc"] == ["body", "input"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["prompt", "max_new_tokens", "temperature", "stream", "color", "image", "sizes", "x"]
        ),
        json_values,
    )
    | json_values
)
def test_validator_only_ever_raises_input_validation_error(raw: Any) -> None:
    try:
        VALIDATOR.validate(raw)
    except InputValidationError as exc:
        assert exc.errors and all(e["loc"][:2] == ["body", "input"] for e in exc.errors)


def test_parse_cli_by_type(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert VALIDATOR.parse_cli("max_new_tokens", "12") == 12
    assert VALIDATOR.parse_cli("temperature", "0.5") == 0.5
    assert VALIDATOR.parse_cli("stream", "yes") is True
    assert VALIDATOR.parse_cli("stream", "0") is False
    assert VALIDATOR.parse_cli("prompt", "hello world") == "hello world"
    assert VALIDATOR.parse_cli("image", "@photo.png") == str(photo)
    assert VALIDATOR.parse_cli("image", "https://x/y.png") == "https://x/y.png"
    assert VALIDATOR.parse_cli("sizes", "[1, 2]") == [1, 2]
    assert VALIDATOR.parse_cli("sizes", "1,2,3") == [1, 2, 3]


def test_parse_cli_errors() -> None:
    with pytest.raises(
        InputValidationError, match="unknown input 'promt'; valid inputs: prompt, max_new_tokens"
    ):
        VALIDATOR.parse_cli("promt", "x")
    with pytest.raises(InputValidationError, match="max_new_tokens: must be an integer"):
        VALIDATOR.parse_cli("max_new_tokens", "lots")
    with pytest.raises(InputValidationError, match="file not found"):
        VALIDATOR.parse_cli("image", "@/does/not/exist.png")
