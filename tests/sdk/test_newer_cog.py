"""What newer Cog (0.17 to 0.22) added to the SDK, as a predictor uses it through `import cog`: the names, the
deprecated names and their notices, the decorators, and the schema of unions, TypedDicts, Opaque and `accept`.

(No `from __future__ import annotations` here: `NotRequired` in a TypedDict needs evaluated annotations on 3.11.)
"""

import subprocess
import sys
import textwrap
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, NotRequired, Optional, TypedDict

import pytest

from cocina.sdk import BasePredictor, BaseRunner, File, Input, Opaque, Secret, concurrent, streaming
from cocina.sdk import Path as CogPath
from cocina.sdk.decorators import concurrent_max, is_streaming
from cocina.sdk.predictor import PredictorLoadError, get_predict_function, load_predictor
from cocina.sdk.schema import InputValidationError, InputValidator, coerce_inputs, derive_schema, encode_output
from cocina.sdk.types import ExperimentalFeatureWarning, Weights


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with the cog shim installed (the notices print once per process)."""
    prelude = "from cocina.sdk.shim import install_cog_shim\ninstall_cog_shim()\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_the_names_cog_exports() -> None:
    result = _run_python(
        """
        import cog
        from cog import BaseRunner, BasePredictor, Input, Path, Secret, File, Opaque, current_scope, streaming
        from cog import concurrent, FieldInfo, __version__, ConcatenateIterator, AsyncConcatenateIterator
        from cog.types import Weights, Path as TypesPath, Input as TypesInput
        assert issubclass(BasePredictor, BaseRunner) and TypesPath is Path and TypesInput is Input
        print(__version__)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.22.0+cocina"
    assert result.stderr == ""  # nothing deprecated was used


def test_deprecated_names_work_and_print_cogs_notice_once() -> None:
    result = _run_python(
        """
        import warnings
        import cog
        from cog import BasePredictor, ExperimentalFeatureWarning, emit_metric
        from cog.types import ExperimentalFeatureWarning as Again
        warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)
        assert Again is ExperimentalFeatureWarning and issubclass(Again, FutureWarning)
        assert cog.emit_metric is emit_metric
        from cocina.sdk.scope import prediction_scope
        with prediction_scope() as scope:
            emit_metric("output_tokens", 42)
            cog.emit_metric("input_tokens", 10)
        print(scope.metrics.snapshot())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'output_tokens': 42, 'input_tokens': 10}"
    notices = result.stderr.splitlines()
    assert notices == [
        "cog: ExperimentalFeatureWarning is deprecated and will be removed in a future release. Remove "
        "`ExperimentalFeatureWarning` from your imports and any associated `warnings.filterwarnings(...)` calls.",
        "cog: emit_metric() is deprecated and will be removed in a future release. "
        "Use current_scope().record_metric(name, value) instead.",
    ]


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    result = _run_python("import cog\ncog.NotAThing\n")
    assert result.returncode == 1 and "module 'cog' has no attribute 'NotAThing'" in result.stderr


def test_experimental_feature_warning_filters_like_a_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=ExperimentalFeatureWarning)
        warnings.warn("hidden", ExperimentalFeatureWarning, stacklevel=1)
    assert caught == []


def test_streaming_and_concurrent_decorators() -> None:
    class Predictor(BaseRunner):
        @streaming
        @concurrent(max=4)
        async def run(self) -> str:
            return ""

    predictor = Predictor()
    assert is_streaming(predictor.run) and concurrent_max(predictor.run) == 4
    assert not is_streaming(BaseRunner().setup) and concurrent_max(BaseRunner().setup) is None
    plain = lambda: None  # noqa: E731
    assert streaming()(plain) is plain and is_streaming(plain)  # @streaming() with parentheses too
    with pytest.raises(TypeError, match="concurrent max greater than 1 requires an async function"):
        concurrent(max=2)(lambda: None)
    with pytest.raises(ValueError, match="at least 1"):
        concurrent(max=0)
    with pytest.raises(TypeError, match="must be an integer"):
        concurrent(max=True)


def test_run_and_predict_names(tmp_path: Path) -> None:
    class OldStyle(BasePredictor):
        def predict(self, x: int) -> int:
            return x + 1

    class NewStyle(BaseRunner):
        def run(self, x: int) -> int:
            return x * 2

    assert OldStyle().run(x=1) == 2  # run() calls a predict() the class defines
    assert NewStyle().predict(x=3) == 6  # and the other way round
    assert get_predict_function(OldStyle()).__name__ == "predict"
    (tmp_path / "both.py").write_text(
        "from cog import BaseRunner\nclass R(BaseRunner):\n    def run(self) -> str: ...\n"
        "    def predict(self) -> str: ...\n"
    )
    with pytest.raises(PredictorLoadError, match="must define either run\\(\\) or predict\\(\\), not both"):
        load_predictor("both.py:R", tmp_path)


def test_train_entry_points(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(
        "from cog import BasePredictor\n"
        "class Trainer(BasePredictor):\n"
        "    def train(self, s: str) -> str:\n        return s\n"
        "    def predict(self, s: str) -> str:\n        return s\n"
        "def train(n: int) -> int:\n    return n\n"
        "class NoTrain(BasePredictor):\n    def predict(self) -> str: ...\n"
    )
    trainer = load_predictor("train.py:Trainer", tmp_path, mode="train")
    assert get_predict_function(trainer(), "train").__name__ == "train"
    assert load_predictor("train.py:train", tmp_path, mode="train").__name__ == "train"
    with pytest.raises(PredictorLoadError, match="not a trainer: expected a class with a train\\(\\) method"):
        load_predictor("train.py:NoTrain", tmp_path, mode="train")
    schema = derive_schema(trainer, mode="train")
    components = schema["components"]["schemas"]
    assert {"TrainingInput", "TrainingOutput", "TrainingRequest", "TrainingResponse"} <= set(components)
    assert not {"Input", "Output", "PredictionRequest"} & set(components)
    assert components["TrainingInput"]["required"] == ["s"]
    assert "/trainings" in schema["paths"] and "/predictions" not in schema["paths"]
    assert InputValidator(schema).validate({"s": "x"}) == {"s": "x"}


def test_weights_alias() -> None:
    assert typing.get_args(Weights) == (File, CogPath, str)


# --- schema ---------------------------------------------------------------------------------------------------


class Payload(TypedDict):
    name: str
    count: int


class External:
    pass


def union_predict(
    value: str | float | None = Input(default=None),
    flipped: float | str = Input(default=1.0),
    nums: list[int] | list[float] = Input(default=[1]),
    data: Payload = Input(default={"name": "a", "count": 1}),
    items: list[Payload] | None = None,
    raw: Annotated[External, Opaque] = Input(default={}),
    raws: Annotated[list[External], Opaque] = Input(default=[]),
    bare: Optional[str] = None,  # noqa: UP045 - the spelling Cog users write
) -> str:
    return ""


def test_union_typeddict_and_opaque_inputs_schema() -> None:
    props = derive_schema(union_predict)["components"]["schemas"]["Input"]["properties"]
    assert props["value"] == {
        "anyOf": [{"type": "string"}, {"type": "number"}],
        "title": "Value",
        "nullable": True,
        "default": None,
        "x-order": 0,
    }
    assert props["flipped"]["anyOf"] == [{"type": "number"}, {"type": "string"}]
    assert props["nums"]["anyOf"] == [
        {"type": "array", "items": {"type": "integer"}},
        {"type": "array", "items": {"type": "number"}},
    ]
    assert props["data"] == {"type": "object", "title": "Data", "default": {"name": "a", "count": 1}, "x-order": 3}
    assert props["items"] == {
        "type": "array",
        "items": {"type": "object"},
        "title": "Items",
        "nullable": True,
        "default": None,
        "x-order": 4,
    }
    assert props["raw"]["type"] == "object" and props["raws"]["items"] == {"type": "object"}


VALIDATOR = InputValidator(derive_schema(union_predict))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"value": "hello"}, "hello"),
        ({"value": 1.5}, 1.5),
        ({"value": 1}, 1),  # an integer stays an integer: no coercion inside a union
        ({"nums": [1]}, [1]),
        ({"nums": [1.5]}, [1.5]),
        ({"nums": []}, []),
    ],
)
def test_unions_keep_the_json_type(raw: dict[str, Any], expected: Any) -> None:
    name = next(iter(raw))
    value = VALIDATOR.validate(raw)[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "raw",
    [{"value": True}, {"value": {"x": 1}}, {"nums": ["3"]}, {"nums": [True]}, {"nums": 1}, {"value": None}],
)
def test_unions_refuse_other_types_and_null(raw: dict[str, Any]) -> None:
    with pytest.raises(InputValidationError) as info:
        VALIDATOR.validate(raw)
    assert info.value.errors[0]["loc"] == ["body", "input", next(iter(raw))]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("value", "hello", "hello"),
        ("value", "1.5", 1.5),
        ("value", "1", 1),
        ("flipped", "world", "world"),  # a number first in the union still falls back to the string
        ("flipped", "2", 2),
        ("nums", "[1.5, 2]", [1.5, 2]),
        ("nums", "1,2", [1, 2]),
    ],
)
def test_unions_from_the_command_line(name: str, text: str, expected: Any) -> None:
    value = VALIDATOR.parse_cli(name, text)
    assert value == expected and type(value) is type(expected)


def test_optional_without_default_is_optional_and_none() -> None:
    schema = derive_schema(union_predict)["components"]["schemas"]["Input"]
    assert "bare" not in schema.get("required", [])
    assert coerce_inputs(union_predict, VALIDATOR.validate({}))["bare"] is None


def test_a_union_with_files_or_choices_is_refused() -> None:
    def predict(x: str | File) -> str:
        return ""

    with pytest.raises(TypeError, match="Input `x`: a union may only join JSON types"):
        derive_schema(predict)


def test_accept_on_file_inputs_only() -> None:
    def predict(image: CogPath = Input(accept="image/*"), files: list[CogPath] = Input(accept=".bin")) -> str:
        return ""

    props = derive_schema(predict)["components"]["schemas"]["Input"]["properties"]
    assert props["image"]["x-cog-accept"] == "image/*" and props["files"]["x-cog-accept"] == ".bin"

    def bad(name: str = Input(accept="text/plain")) -> str:
        return ""

    with pytest.raises(TypeError, match="accept is only valid on Path or File inputs \\(parameter 'name'\\)"):
        derive_schema(bad)
    with pytest.raises(TypeError, match="`accept` must be a non-empty string"):
        Input(accept="")


def test_optional_secret_with_none_default() -> None:
    def predict(key: Secret = Input(default=None), needed: Secret = Input()) -> str:
        return ""

    schema = derive_schema(predict)["components"]["schemas"]["Input"]
    assert schema["properties"]["key"]["nullable"] is True and schema["properties"]["key"]["default"] is None
    assert schema["required"] == ["needed"]


class Result(TypedDict):
    name: str
    count: NotRequired[int]


def test_typeddict_and_opaque_outputs() -> None:
    def typed() -> Result:
        return {"name": "a"}

    assert derive_schema(typed)["components"]["schemas"]["Output"] == {
        "properties": {"name": {"type": "string", "title": "Name"}, "count": {"type": "integer", "title": "Count"}},
        "type": "object",
        "title": "Output",
        "required": ["name"],
    }

    def opaque() -> Annotated[list[External], Opaque]:
        return []

    assert derive_schema(opaque)["components"]["schemas"]["Output"] == {
        "type": "array",
        "items": {"type": "object"},
        "title": "Output",
    }
    assert encode_output({"name": "a", "count": 3}) == {"name": "a", "count": 3}


def test_base_model_takes_fields_positionally_as_cogs_dataclasses_do() -> None:
    from cocina.sdk import BaseModel

    class Output(BaseModel):
        text: str
        score: float
        image: CogPath | None = None

    assert Output("hi", 0.5) == Output(text="hi", score=0.5)
    assert Output("hi", score=1).score == 1.0
    with pytest.raises(TypeError, match=r"takes 3 positional arguments but 4 were given"):
        Output("a", 1.0, None, "extra")
    with pytest.raises(TypeError, match="got multiple values for argument 'text'"):
        Output("a", text="b")
    assert encode_output(Output("hi", 0.5)) == {"text": "hi", "score": 0.5, "image": None}
