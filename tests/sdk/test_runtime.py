"""Child-side pieces: coerce_inputs, encode_output, Secret, predictor loading, weights, and the cog shim."""

import http.server
import pathlib
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from cocina.sdk import BaseModel, Input, Path, Secret
from cocina.sdk.predictor import (
    PredictorLoadError,
    get_predict_function,
    get_weights_arg,
    is_async_callable,
    load_predictor,
    setup_kwargs,
)
from cocina.sdk.schema import FILE_MARKER, coerce_inputs, encode_output

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "schema"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"image bytes"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def predict(
    image: Path,
    images: list[Path] = Input(default=[]),
    token: Secret | None = Input(default=None),
    scale: float = Input(default=1),
    tags: list[str] = Input(default_factory=lambda: ["a"]),
) -> str:
    return ""


def test_coerce_local_path_url_and_secret(tmp_path: pathlib.Path, http_url: str) -> None:
    local = tmp_path / "in.png"
    local.write_bytes(b"x")
    kwargs = coerce_inputs(
        predict,
        {
            "image": str(local),
            "images": [f"{http_url}/dir/cat.png", "data:text/plain;base64,aGk="],
            "token": "k",
        },
        tmp_dir=tmp_path / "downloads",
    )
    assert isinstance(kwargs["image"], Path) and kwargs["image"] == local
    downloaded, decoded = kwargs["images"]
    assert isinstance(downloaded, Path) and downloaded.name == "cat.png"
    assert downloaded.read_bytes() == b"image bytes"
    assert decoded.read_bytes() == b"hi" and decoded.suffix == ".txt"
    assert isinstance(kwargs["token"], Secret) and kwargs["token"].get_secret_value() == "k"
    # Defaults come from Input(...), never the Input object itself.
    assert kwargs["scale"] == 1.0 and isinstance(kwargs["scale"], float)
    assert kwargs["tags"] == ["a"]


def test_secret_is_redacted() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret)
    assert str(secret) == "**********"
    assert secret.get_secret_value() == "hunter2"
    assert encode_output(secret) == "**********"


class Result(BaseModel):
    text: str
    file: Path
    score: float | None = None


def test_encode_output(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("x")
    encoded = encode_output([Result(text="hi", file=Path(out)), {"n": 1, "p": Path(out)}, (1.5, None)])
    assert encoded == [
        {"text": "hi", "file": {FILE_MARKER: str(out)}, "score": None},
        {"n": 1, "p": {FILE_MARKER: str(out)}},
        [1.5, None],
    ]
    with out.open("rb") as fh:
        assert encode_output(fh) == {FILE_MARKER: str(out)}
    with pytest.raises(TypeError, match="cannot encode output of type object"):
        encode_output(object())


def test_load_predictor_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PredictorLoadError, match=r"'missing\.py' not found"):
        load_predictor("missing.py:Predictor", tmp_path)
    with pytest.raises(
        PredictorLoadError, match="has no 'Nope'; classes and functions defined there: Predictor"
    ):
        load_predictor("output_path.py:Nope", FIXTURES)
    (tmp_path / "notpred.py").write_text("class Thing:\n    pass\n\nVALUE = 3\n")
    with pytest.raises(PredictorLoadError, match=r"notpred\.py:Thing is not a predictor"):
        load_predictor("notpred.py:Thing", tmp_path)
    with pytest.raises(PredictorLoadError, match="not a predictor"):
        load_predictor("notpred.py:VALUE", tmp_path)


def test_load_predictor_module_refs(tmp_path: pathlib.Path) -> None:
    # An installed module (the built-in LLM predictor) and a package inside the project directory.
    from cocina.llm import LLMPredictor

    assert load_predictor("cocina.llm:LLMPredictor", tmp_path) is LLMPredictor
    pkg = tmp_path / "mypkg_for_refs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "preds.py").write_text(
        "from cog import BasePredictor\n\nclass P(BasePredictor):\n"
        "    def predict(self, x: int) -> int:\n        return x\n"
    )
    assert load_predictor("mypkg_for_refs.preds:P", tmp_path).__name__ == "P"
    with pytest.raises(PredictorLoadError, match="predictor module 'no_such_module_xyz' not found"):
        load_predictor("no_such_module_xyz:P", tmp_path)
    with pytest.raises(PredictorLoadError, match="has no 'Nope'"):
        load_predictor("mypkg_for_refs.preds:Nope", tmp_path)


def test_predict_function_and_async_detection() -> None:
    runner = load_predictor("runner_style.py:Runner", FIXTURES)
    assert get_predict_function(runner()).__name__ == "run"
    async_pred = load_predictor("output_async_concatenate.py:Predictor", FIXTURES)
    assert is_async_callable(get_predict_function(async_pred()))
    assert is_async_callable(async_pred().setup)
    assert not is_async_callable(get_predict_function(runner()))


def test_weights(tmp_path: pathlib.Path) -> None:
    class WithWeights:
        def setup(self, weights: Path) -> None:
            pass

    class WithStr:
        def setup(self, weights: str) -> None:
            pass

    class NoWeights:
        def setup(self) -> None:
            pass

    assert setup_kwargs(NoWeights(), tmp_path, {}) == {}
    assert setup_kwargs(WithWeights(), tmp_path, {}) == {"weights": None}
    (tmp_path / "weights").mkdir()
    assert setup_kwargs(WithWeights(), tmp_path, {}) == {"weights": Path(tmp_path / "weights")}
    url = "https://example.com/w.tar"
    assert get_weights_arg(WithStr().setup, tmp_path, {"COG_WEIGHTS": url}) == url


def test_cog_shim_in_a_subprocess(tmp_path: pathlib.Path) -> None:
    code = (
        "from cocina.sdk.shim import install_cog_shim\n"
        "install_cog_shim()\n"
        "import cog\n"
        "from cog import BasePredictor, Input, Path, Secret, ConcatenateIterator, BaseModel, File\n"
        "from cog import AsyncConcatenateIterator, CancelationException, emit_metric, current_scope\n"
        "from cog.types import Path as TypesPath\n"
        "import cocina.sdk\n"
        "assert cog.Path is cocina.sdk.Path is TypesPath\n"
        "assert issubclass(CancelationException, BaseException)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
