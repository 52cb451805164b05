"""Names: Replicate references, OpenAI names and aliases, and model specs (naming, clashes, engine options)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocina.serving.errors import InvalidModelName
from cocina.serving.registry import parse_reference
from cocina.serving.spec import SpecError, check_name, check_unique, model_spec, project_spec, version_id
from tests.serving.conftest import PROJECTS

V = "a" * 64


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("acme/echo", ("acme/echo", None)),
        (f"acme/echo:{V}", ("acme/echo", V)),
        (V, (None, V)),
        ("Org.x/model-1_2", ("Org.x/model-1_2", None)),
    ],
)
def test_references(ref: str, expected: tuple[str | None, str | None]) -> None:
    assert parse_reference(ref, "version") == expected


@pytest.mark.parametrize("ref", ["", "echo", "acme/echo:", "/echo", "acme/", "a/b/c", "acme/ec ho", "x" * 63, f"{V}:x"])
def test_malformed_references_name_the_field(ref: str) -> None:
    with pytest.raises(InvalidModelName) as err:
        parse_reference(ref, "model")
    assert err.value.param == "model"


def test_model_spec_names_and_aliases(tmp_path: Path) -> None:
    local = tmp_path / "My Model"
    local.mkdir()
    (local / "config.json").write_text("{}")
    spec = model_spec(str(local))
    assert spec.name == "local/My-Model" and spec.aliases == (str(local),) and spec.language_model
    assert spec.version == version_id(local)
    hub = model_spec("org/model")
    assert hub.name == "org/model" and hub.aliases == ()
    served = model_spec(str(local), name="mine")  # vLLM's --served-model-name: no owner
    assert served.name == "local/mine" and set(served.aliases) == {str(local), "mine"}
    assert model_spec("gpt2").name == "local/gpt2"
    with pytest.raises(SpecError):
        model_spec("gpt2", name="a/b/c")


def test_engine_options_layers_and_errors(tmp_path: Path) -> None:
    spec = model_spec(
        "org/m", engine_options={"dtype": "float32"}, environ={"COCINA_DTYPE": "bfloat16", "COCINA_MAX_NUM_SEQS": "3"}
    )
    assert spec.engine is not None
    assert spec.engine.config["dtype"] == "float32" and spec.engine.config["max_num_seqs"] == 3  # flags win
    with pytest.raises(SpecError) as err:
        model_spec("org/m", engine_options={"no_such_option": 1})
    assert "no_such_option" in str(err.value)
    with pytest.raises(SpecError):
        model_spec("org/m", environ={"COCINA_MAX_NUM_SEQS": "many"})


def test_project_specs_and_name_clashes() -> None:
    echo = project_spec(PROJECTS / "echo")
    assert echo.name == "local/echo" and not echo.language_model and echo.version == version_id(PROJECTS / "echo")
    plain = project_spec(PROJECTS / "echo_plain", name="local/echo")
    with pytest.raises(SpecError) as err:
        check_unique([echo, plain])
    assert str(PROJECTS / "echo") in str(err.value) and str(PROJECTS / "echo_plain") in str(err.value)
    aliased = model_spec("org/m", name="local/x").replace(aliases=("local/echo",))
    with pytest.raises(SpecError):
        check_unique([echo, aliased])  # an alias may not name another model either
    check_unique([echo, project_spec(PROJECTS / "echo_plain")])
    assert check_name("a/b") == "a/b"
    with pytest.raises(SpecError):
        check_name("no-owner")
