"""`cocina init` and `cocina predict` as a user runs them: real processes, exit statuses, stdout, stderr."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cocina import commands

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "predictors"


def cocina(
    *args: str | Path, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `cocina` command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "cocina.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def _app() -> typer.Typer:
    app = typer.Typer()
    commands.register(app)
    return app


# --- cocina init --------------------------------------------------------------------------------------------


def test_init_writes_the_project_and_keeps_existing_files(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    result = CliRunner().invoke(_app(), ["init", str(target), "--template", "blank"])
    assert result.exit_code == 0, result.output
    for name in ("cocina.yaml", "predict.py", "requirements.txt", ".cocinaignore"):
        assert (target / name).is_file()
        assert f"wrote {target / name}" in result.output
    (target / "predict.py").write_text("# mine\n")
    again = CliRunner().invoke(_app(), ["init", str(target), "--template", "blank"])
    assert again.exit_code == 0
    assert "kept" in again.output and (target / "predict.py").read_text() == "# mine\n"
    forced = CliRunner().invoke(_app(), ["init", str(target), "--template", "blank", "--force"])
    assert forced.exit_code == 0
    assert "from cog import BasePredictor" in (target / "predict.py").read_text()


def test_init_rejects_an_unknown_template(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["init", str(tmp_path), "--template", "gan"])
    assert result.exit_code == 2
    assert "unknown template 'gan'" in result.output


def test_blank_template_predicts(tmp_path: Path) -> None:
    commands.init_project(tmp_path, template="blank")
    result = cocina("predict", tmp_path, "-i", "text=hola", "-i", "times=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hola hola\n"


# --- cocina predict: outputs --------------------------------------------------------------------------------


def test_predict_prints_a_value() -> None:
    result = cocina("predict", FIXTURES / "value_output", "-i", "name=ana")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello ana\n"
    assert "greeting ana" in result.stderr  # the predictor's logs go to stderr, its output to stdout


def test_predict_streams_a_concatenate_iterator_to_a_terminal() -> None:
    """On a terminal the tokens are shown as they come, without separators."""
    main, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cocina.cli", "predict", str(FIXTURES / "concatenate_output"), "-i", "text=uno dos"],
            stdout=secondary,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        os.close(secondary)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once everything written was read
            while chunk := os.read(main, 4096):
                shown += chunk
    finally:
        os.close(main)
    assert proc.returncode == 0, proc.stderr
    assert shown.decode() == "uno dos\r\n"  # (the terminal turns \n into \r\n)


def test_predict_prints_a_concatenate_iterator_to_a_program_as_cog_does() -> None:
    """Read by a program (a pipe), the output is `cog predict`'s: the JSON array of the tokens, indented."""
    result = cocina("predict", FIXTURES / "concatenate_output", "-i", "text=uno dos tres")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["uno", " dos", " tres"]
    assert result.stdout == json.dumps(["uno", " dos", " tres"], indent=2) + "\n"


def test_predict_prints_iterator_items_one_per_line() -> None:
    result = cocina("predict", FIXTURES / "iterator_output", "-i", "n=3")
    assert result.stdout == "0\n10\n20\n"  # JSON lines


def test_predict_writes_file_outputs_and_json(tmp_path: Path) -> None:
    result = cocina("predict", FIXTURES / "file_output", "-i", "text=abc", "--json", "-o", tmp_path)
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["status"] == "succeeded"
    assert response["input"] == {"text": "abc"}
    assert response["output"] == str(tmp_path / "output.txt")
    assert (tmp_path / "output.txt").read_text() == "ABC"
    assert set(response) >= {"id", "logs", "error", "created_at", "completed_at", "metrics"}
    assert "predict_time" in response["metrics"]


def test_predict_file_input_with_at_path(tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("contenido")
    result = cocina("predict", FIXTURES / "path_input", "-i", f"document=@{doc}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "doc.txt:contenido\n"


def test_predict_json_redacts_secret_inputs() -> None:
    result = cocina("predict", FIXTURES / "logs_and_secrets", "-i", "token=hunter22", "--json")
    assert result.returncode == 0, result.stderr
    assert "hunter22" not in result.stdout and "hunter22" not in result.stderr
    assert json.loads(result.stdout)["input"]["token"] == "**********"


# --- cocina predict: errors ---------------------------------------------------------------------------------


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_bad_input_names_the_input_and_the_constraint() -> None:
    result = cocina("predict", FIXTURES / "value_output", "-i", "name=ana", "-i", "times=9")
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "times" in line and "<= 3" in line
    assert result.stdout == ""


def test_unknown_input_lists_the_valid_ones() -> None:
    result = cocina("predict", FIXTURES / "value_output", "-i", "nme=ana")
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "nme" in line and "name" in line and "times" in line


def test_missing_required_input() -> None:
    result = cocina("predict", FIXTURES / "value_output")
    assert result.returncode == 2
    assert "name" in _one_error_line(result.stderr)


def test_malformed_input_flag() -> None:
    result = cocina("predict", FIXTURES / "value_output", "-i", "ana")
    assert result.returncode == 2
    assert "name=value" in _one_error_line(result.stderr)


def test_predictor_failure_is_one_line_and_debug_shows_the_traceback() -> None:
    result = cocina("predict", FIXTURES / "predict_failures", "-i", "mode=raise")
    assert result.returncode == 1
    assert "prediction failed: something went wrong in predict" in _one_error_line(result.stderr)
    debug = cocina("predict", FIXTURES / "predict_failures", "-i", "mode=raise", "--debug")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "ValueError: something went wrong" in debug.stderr


def test_predictor_crash_is_reported() -> None:
    result = cocina("predict", FIXTURES / "predict_failures", "-i", "mode=segfault")
    assert result.returncode == 1
    assert "segmentation fault" in _one_error_line(result.stderr)


def test_setup_failure() -> None:
    result = cocina("predict", FIXTURES / "setup_raises")
    assert result.returncode == 1
    assert "setup failed: RuntimeError: weights are corrupt" in _one_error_line(result.stderr)
    debug = cocina("predict", FIXTURES / "setup_raises", "--debug")
    assert "loading weights" in debug.stderr and "Traceback" in debug.stderr


def test_missing_project_config(tmp_path: Path) -> None:
    result = cocina("predict", tmp_path)
    assert result.returncode == 1
    _one_error_line(result.stderr)


def test_ctrl_c_cancels_the_prediction() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cocina.cli", "predict", str(FIXTURES / "cancel_sync"), "-i", "seconds=60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while "sleeping" not in seen and time.monotonic() < deadline:
            seen += proc.stderr.readline()
        assert "sleeping" in seen
        os.kill(proc.pid, signal.SIGINT)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "got CancelationException" in rest and "canceled" in rest


# --- the llm template ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 with a locally trained tokenizer (cocina.models.tiny)."""
    from cocina.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", "gpt2", max_position_embeddings=64)


def _template_predictor(project: Path) -> Any:
    """The `Predictor` class of a generated project's predict.py, imported under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"llm_template_{project.name}", project / "predict.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Predictor


# Small engine settings for the tiny model (the COCINA_* variables the predictor reads in setup()).
_TINY_ENGINE_ENV = {"COCINA_DTYPE": "float32", "COCINA_DEVICE": "cpu", "COCINA_KV_CACHE_BYTES": "4M"}


def test_llm_template_is_an_engine_predictor(tmp_path: Path) -> None:
    """The generated Predictor is cocina.llm.LLMPredictor configured by constants: the engine, its inputs
    (system prompt included), Cog concurrency in cocina.yaml, and `cocina serve` seeing a language model."""
    from cocina.config import load_project
    from cocina.llm import LLMPredictor
    from cocina.sdk.schema import derive_schema
    from cocina.serving.project import builtin_llm

    commands.init_project(tmp_path, template="llm")
    predictor = _template_predictor(tmp_path)
    assert issubclass(predictor, LLMPredictor) and predictor.model == "cocina/demo"
    inputs = derive_schema(predictor())["components"]["schemas"]["Input"]["properties"]
    for name in ("pregunta", "prompt", "system_prompt", "max_new_tokens", "temperature", "top_p", "seed"):
        assert name in inputs
    project = load_project(tmp_path)
    assert project.predict_ref == "predict.py:Predictor"
    assert project.concurrency_max == 32  # many predictions at once, all on the one engine
    llm = builtin_llm(project)
    assert llm is not None and llm.model == "cocina/demo"  # `cocina serve` knows it for a language model
    requirements = (tmp_path / "requirements.txt").read_text().splitlines()
    assert "cocina" in [line.strip() for line in requirements if not line.startswith("#")]


async def test_llm_template_predictions_share_one_engine(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setup() loads one engine; two predictions run at the same time (one with a system prompt) are served
    by it, decoded together in the same steps."""
    commands.init_project(tmp_path, template="llm", model=str(tiny_model))
    for key, value in _TINY_ENGINE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("COCINA_MODEL", raising=False)
    predictor = _template_predictor(tmp_path)()
    predictor.setup()
    engine = predictor.engine
    try:
        assert Path(engine.engine.tokenizer.name_or_path).resolve() == tiny_model.resolve()

        async def answer(**inputs: Any) -> str:
            args: dict[str, Any] = {
                "prompt": None,
                "pregunta": None,
                "system_prompt": None,
                "max_new_tokens": 24,
                "temperature": 1.0,
                "top_p": 1.0,
                "top_k": 0,
                "min_p": 0.0,
                "repetition_penalty": 1.0,
                "stop": None,
                "seed": 7,
            }
            return "".join([piece async for piece in predictor.predict(**{**args, **inputs})])

        plain, with_system = await asyncio.gather(
            answer(pregunta="hola"), answer(pregunta="hola", system_prompt="Eres un cocinero")
        )
        assert plain and with_system
        assert predictor.engine is engine
        stats = engine.stats()
        assert stats.num_requests_finished == 2 and stats.num_requests_failed == 0
        assert stats.num_kv_blocks_used == 0  # both finished and gave their KV blocks back
        # One engine step yields at most one token per running request: more tokens than steps means that
        # some steps decoded both predictions together.
        assert stats.generated_tokens > stats.num_steps
        both = stats.prompt_tokens
        assert await answer(pregunta="hola") == plain  # same seed, same answer, alone or beside another
        plain_prompt = engine.stats().prompt_tokens - both
        assert both - plain_prompt > plain_prompt  # the system prompt reached the engine: a longer prompt
    finally:
        engine.shutdown()


@pytest.mark.slow
async def test_llm_template_runs_concurrent_predictions_in_one_worker(tmp_path: Path, tiny_model: Path) -> None:
    """Under the worker (as `cocina predict` and `cocina serve` run predict.py), cocina.yaml's concurrency lets
    two predictions run at once in the one child, whose setup() loaded one engine."""
    from cocina.config import load_project
    from cocina.worker import Done, Log, Output, PredictionStatus, Runner, SetupStatus

    commands.init_project(tmp_path, template="llm", model=str(tiny_model))
    runner = Runner(load_project(tmp_path), env_overrides=_TINY_ENGINE_ENV)
    try:
        setup = await runner.start()
        assert setup.status is SetupStatus.SUCCEEDED, setup.logs
        assert setup.logs.count("cocina engine:") == 1  # one engine, loaded once
        assert runner.concurrency == 32

        async def run(prediction_id: str, **inputs: Any) -> tuple[float, float, str]:
            normalized = runner.validator.validate({"max_new_tokens": 40, "seed": 3, **inputs})
            first: float | None = None
            pieces: list[str] = []
            async for event in runner.predict(normalized, prediction_id=prediction_id):
                if first is None and isinstance(event, Log | Output):
                    first = time.monotonic()
                if isinstance(event, Output):
                    pieces.append(event.value)
                elif isinstance(event, Done):
                    assert event.status is PredictionStatus.SUCCEEDED, event.error
            assert first is not None
            return first, time.monotonic(), "".join(pieces)

        a, b = await asyncio.gather(
            run("a", pregunta="hola"), run("b", pregunta="hola", system_prompt="Eres un cocinero")
        )
        assert a[2] and b[2]
        assert a[0] < b[1] and b[0] < a[1]  # each started before the other ended: they ran at the same time
    finally:
        await runner.shutdown(grace_s=2.0)


@pytest.mark.slow
def test_llm_template_streams_text_from_a_local_model(tmp_path: Path, tiny_model: Path) -> None:
    init = cocina("init", tmp_path / "proj", "--model", tiny_model)
    assert init.returncode == 0, init.stderr
    source = (tmp_path / "proj" / "predict.py").read_text()
    assert "class Predictor(LLMPredictor):" in source and f'model = "{tiny_model}"' in source
    args = ("-i", "pregunta=hola", "-i", "max_new_tokens=12", "-i", "seed=7", "-i", "temperature=1")
    args += ("-i", "system_prompt=Eres un cocinero")
    result = cocina("predict", tmp_path / "proj", *args, "--json", "--debug")
    assert result.returncode == 0, result.stderr
    assert "cocina engine: model on cpu" in result.stderr  # setup() loaded cocina's engine (its memory report)
    response = json.loads(result.stdout)
    assert response["status"] == "succeeded"
    pieces = response["output"]
    assert isinstance(pieces, list) and len(pieces) >= 1  # streamed piece by piece
    assert "seed: 7" in response["logs"]
    again = cocina("predict", tmp_path / "proj", *args)
    # Same seed, same text; to a pipe, a token stream prints as `cog predict` prints it: the JSON array of pieces.
    assert json.loads(again.stdout) == pieces


def test_llm_template_explains_a_model_it_cannot_get(tmp_path: Path) -> None:
    commands.init_project(tmp_path, template="llm", model="someorg/surely-not-cached-model")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("COCINA_MODEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "cocina.cli", "predict", str(tmp_path), "-i", "pregunta=hola"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert "setup failed" in line and "isn't in the local Hugging Face cache" in line
    # How to provide it (download elsewhere, or a local directory), and where this project names it.
    assert "hf download someorg/surely-not-cached-model" in result.stderr
    assert "local directory" in result.stderr
    assert "`model = 'someorg/surely-not-cached-model'` in class Predictor (predict.py" in result.stderr


@pytest.mark.slow
def test_llm_template_with_the_demo_model(tmp_path: Path) -> None:
    init = cocina("init", tmp_path)
    assert init.returncode == 0, init.stderr
    question = "pregunta=Dime un producto de limpieza que blanquee la ropa"
    result = cocina("predict", tmp_path, "-i", question, "-i", "max_new_tokens=40", "-i", "temperature=0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_predict_engine_flags_reach_the_llm_predictor_over_the_project_environment(tmp_path: Path) -> None:
    """--dtype/--quantize/--kv-cache travel to the worker child as COCINA_* and win over `environment:`."""
    (tmp_path / "cocina.yaml").write_text(
        'predict: "cocina.llm:LLMPredictor"\nenvironment:\n  - COCINA_MODEL=cocina/demo\n  - COCINA_KV_CACHE_BYTES=1M\n'
    )
    args = ["-i", "prompt=Hola", "-i", "max_new_tokens=4", "--debug"]
    result = cocina("predict", tmp_path, *args, "--dtype", "float32", "--quantize", "int8", "--kv-cache", "4M")
    assert result.returncode == 0, result.stderr
    # The demo model: 4 layers x 4 heads x 64 dims, K and V, 16 tokens a block, 4 bytes: 128 KiB a block.
    assert "model on cpu (float32, int8)" in result.stderr
    assert "(32 blocks of 16 tokens)" in result.stderr
    bad = cocina("predict", tmp_path, *args, "--kv-cache", "lots")
    assert bad.returncode == 2
    assert _one_error_line(bad.stderr) == "error: --kv-cache: not a size: 'lots' (examples: 512M, 2G, 1073741824)"


# --- Cog's CLI: inputs, outputs and messages as `cog predict` gives them --------------------------------------------


def _cog_project(root: Path, predict_py: str, cog_yaml: str = 'run: "predict.py:Runner"\n') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cog.yaml").write_text(cog_yaml)
    (root / "predict.py").write_text(predict_py)
    return root


_VALIDATED = """
from typing import Optional
from cog import BaseRunner, Input, Path

class Runner(BaseRunner):
    def run(
        self,
        prompt: str,
        count: int = Input(default=5, ge=1, le=10),
        size: str = Input(default="small", choices=["small", "medium", "large"]),
        note: Optional[str] = Input(default=None),
        files: list[Path] = Input(default=[]),
    ) -> str:
        names = ",".join(p.read_text().strip() for p in files)
        return f"{prompt} {count} {size} {note} [{names}]"
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "prompt=hi", "-i", "nope=1"], 'unknown input "nope"; valid inputs are: count, files, note, prompt'),
        (["--input-json", '{"prompt": "hi", "nope": 1, "zap": 2}'], 'unknown inputs "nope", "zap"; valid inputs are'),
        ([], 'missing required input "prompt"'),
        (["-i", "prompt=hi", "-i", "count=0"], 'invalid input "count": must be >= 1, got 0'),
        (["-i", "prompt=hi", "-i", "count=lots"], 'invalid input "count": expected integer, got string'),
        (["-i", "prompt=hi", "-i", "size=huge"], 'invalid input "size": must be one of: small, medium, large'),
        (["--input-json", '{"prompt": "hi", "note": null}'], 'invalid input "note": must not be null'),
        (["--input-json", '{"prompt": "hi", "count": "x"}'], 'invalid input "count": expected integer, got string'),
        (["-i", "prompt=a", "-i", "prompt=b"], 'invalid input "prompt": given more than once'),
        (["--input-json", "[1]"], "--input-json: must be a JSON object of inputs, got list"),
        (["--input-json", "{nope"], "--input-json: not valid JSON"),
        (["--input-json", "@missing.json"], "--input-json: cannot read 'missing.json'"),
        (["-i", "prompt=hi", "--input-json", "{}"], "either with -i or with --input-json, not both"),
    ],
)
def test_input_errors_are_worded_as_cog_words_them(tmp_path: Path, args: list[str], message: str) -> None:
    project = _cog_project(tmp_path / "p", _VALIDATED)
    result = cocina("predict", project, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in _one_error_line(result.stderr)


def test_inputs_from_json_text_file_and_stdin(tmp_path: Path) -> None:
    project = _cog_project(tmp_path / "p", _VALIDATED)
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "in.json").write_text('{"prompt": "file", "files": ["@a.txt"]}')
    inline = cocina("predict", project, "--input-json", '{"prompt": "hi", "count": 2}', "--json", cwd=tmp_path)
    assert inline.returncode == 0, inline.stderr
    assert json.loads(inline.stdout)["output"] == "hi 2 small None []"
    from_file = cocina("predict", project, "--input-json", "@in.json", cwd=tmp_path)
    assert from_file.stdout == "file 5 small None [A]\n", from_file.stderr
    for source in ("-", "@-"):
        piped = subprocess.run(
            [sys.executable, "-m", "cocina.cli", "predict", str(project), "--input-json", source],
            input='{"prompt": "stdin"}',
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert piped.stdout == "stdin 5 small None []\n", piped.stderr


def test_a_repeated_input_makes_a_list(tmp_path: Path) -> None:
    project = _cog_project(tmp_path / "p", _VALIDATED)
    (tmp_path / "1.txt").write_text("one")
    (tmp_path / "2.txt").write_text("two")
    result = cocina("predict", project, "-i", "prompt=x", "-i", "files=@1.txt", "-i", "files=@2.txt", cwd=tmp_path)
    assert result.stdout == "x 5 small None [one,two]\n", result.stderr


def test_cog_yaml_deprecations_are_shown(tmp_path: Path) -> None:
    project = _cog_project(
        tmp_path / "p",
        "from cog import BasePredictor\nclass Predictor(BasePredictor):\n    def predict(self) -> str:\n"
        "        return 'ok'\n",
        'predict: "predict.py:Predictor"\nconcurrency:\n  max: 2\n',
    )
    result = cocina("predict", project)
    assert result.returncode == 0, result.stderr
    assert 'warning: deprecated field "predict": use "run" instead' in result.stderr
    assert 'deprecated field "concurrency.max": use "@cog.concurrent(max=...)" instead' in result.stderr


_OUTPUTS = """
import tempfile
from typing import Any
from cog import BaseRunner, Path

class Runner(BaseRunner):
    def run(self, kind: str) -> Any:
        if kind == "text":
            return "some text"
        if kind == "dict":
            return {"a": 1}
        if kind == "none":
            return None
        out = Path(tempfile.mkdtemp()) / "picture.png"
        out.write_bytes(b"png!")
        return out
"""


def test_outputs_to_a_file_with_dash_o(tmp_path: Path) -> None:
    project = _cog_project(tmp_path / "p", _OUTPUTS)
    text = cocina("predict", project, "-i", "kind=text", "-o", "out.txt", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert (tmp_path / "out.txt").read_text() == "some text" and text.stdout == ""
    assert "Written output to: out.txt" in text.stderr
    value = cocina("predict", project, "-i", "kind=dict", "-o", "out.json", cwd=tmp_path)
    assert json.loads((tmp_path / "out.json").read_text()) == {"a": 1}, value.stderr
    picture = cocina("predict", project, "-i", "kind=file", "-o", "mine.png", cwd=tmp_path)
    assert (tmp_path / "mine.png").read_bytes() == b"png!", picture.stderr
    default = cocina("predict", project, "-i", "kind=file", cwd=tmp_path)
    assert (tmp_path / "output.png").read_bytes() == b"png!" and "Written output to: output.png" in default.stderr
    response = cocina("predict", project, "-i", "kind=text", "--json", "-o", "response.json", cwd=tmp_path)
    assert json.loads((tmp_path / "response.json").read_text())["output"] == "some text", response.stderr
    nothing = cocina("predict", project, "-i", "kind=none", cwd=tmp_path)
    assert nothing.returncode == 0 and "No output generated" in nothing.stderr and nothing.stdout == ""


def test_iterator_items_print_as_json_lines(tmp_path: Path) -> None:
    project = _cog_project(
        tmp_path / "p",
        "from typing import Iterator\nfrom cog import BaseRunner\nclass Runner(BaseRunner):\n"
        "    def run(self) -> Iterator[str]:\n        yield 'line one'\n        yield 'two\\nlines'\n",
    )
    result = cocina("predict", project)
    assert result.stdout == '"line one"\n"two\\nlines"\n', result.stderr


# --- cocina train ---------------------------------------------------------------------------------------------


def test_train_runs_the_train_entry_point_and_writes_weights(tmp_path: Path) -> None:
    project = _cog_project(
        tmp_path / "p",
        "from cog import BaseRunner\nclass Runner(BaseRunner):\n    def run(self) -> str:\n        return ''\n",
        'run: "predict.py:Runner"\ntrain: "train.py:Trainer"\n',
    )
    (project / "train.py").write_text(
        "from cog import BasePredictor, Input\n"
        "class Trainer(BasePredictor):\n"
        "    def setup(self) -> None:\n        print('Trainer is setting up.')\n"
        "    def train(self, s: str, epochs: int = Input(default=1, ge=1)) -> str:\n"
        "        return f'trained {s} x{epochs}'\n"
    )
    result = cocina("train", project, "-i", "s=world", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Trainer is setting up." in result.stderr and "Written output to: weights" in result.stderr
    assert (tmp_path / "weights").read_text() == "trained world x1"
    bad = cocina("train", project, "-i", "s=x", "-i", "epochs=0", cwd=tmp_path)
    assert bad.returncode == 2 and 'invalid input "epochs"' in _one_error_line(bad.stderr)
    out = cocina("train", project, "-i", "s=x", "-o", "model.txt", cwd=tmp_path)
    assert (tmp_path / "model.txt").read_text() == "trained x x1", out.stderr


def test_train_without_a_train_entry_point(tmp_path: Path) -> None:
    result = cocina("train", FIXTURES / "value_output")
    assert result.returncode == 1
    assert "has no `train:` entry point" in _one_error_line(result.stderr)


# --- cocina schema --------------------------------------------------------------------------------------------


def test_schema_prints_the_openapi_document(tmp_path: Path) -> None:
    result = cocina("schema", FIXTURES / "value_output")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["openapi"] == "3.0.2" and "name" in schema["components"]["schemas"]["Input"]["properties"]
    out = cocina("schema", FIXTURES / "cog_features", "--train", "-o", tmp_path / "train.json")
    assert out.returncode == 0, out.stderr
    assert "TrainingInput" in json.loads((tmp_path / "train.json").read_text())["components"]["schemas"]


def test_schema_reports_what_a_build_would_refuse(tmp_path: Path) -> None:
    project = _cog_project(
        tmp_path / "p",
        "from cog import BaseRunner, Input\nclass Runner(BaseRunner):\n"
        "    def run(self, num: int = Input(default=1, ge=2)) -> int:\n        return num\n",
    )
    result = cocina("schema", project)
    assert result.returncode == 1 and result.stdout == ""
    assert "invalid default 1: it is less than the minimum 2 (ge)" in result.stderr
    (project / "predict.py").write_text("import not_a_module_anywhere\nclass Runner: ...\n")
    broken = cocina("schema", project)
    assert broken.returncode == 1 and "ModuleNotFoundError" in broken.stderr
    assert cocina("schema", FIXTURES / "value_output", "--train").returncode == 1
