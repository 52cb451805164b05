"""`cocina serve` as a real process: `--model DIR`, projects whose predictor is `cocina.llm.LLMPredictor` (its
engine in the model's process, shared by Cog, Replicate and OpenAI), several models at once, names and their
clashes, load failures, engine options, and stopping during a load.

The real `openai` and `replicate` clients talk to it; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import replicate

from cocina.config import load_project
from cocina.serving.project import BuiltinLLM, builtin_llm, resolve_project_model
from tests.server.test_metrics import value

pytest.importorskip("torch")

# A tiny engine: CPU, a short context, a small KV cache (the test machine has 2 cores).
ENGINE_ENV = {
    "COCINA_DEVICE": "cpu",
    "COCINA_MAX_MODEL_LEN": "256",
    "COCINA_KV_CACHE_BYTES": "8M",
    "COCINA_MAX_NUM_SEQS": "8",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cocina.models.tiny import make_tiny_model

    return Path(make_tiny_model(tmp_path_factory.mktemp("m") / "tiny-gpt2", arch="gpt2"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """`cocina serve ARGS` in its own process group, its output in a log file (shown when it fails)."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"serve-{self.port}.log"
        cmd = [sys.executable, "-m", "cocina.cli", "serve", *args, "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                # The default data directory is $COCINA_HOME: a test's own, never the real home's.
                env={**os.environ, **ENGINE_ENV, "COCINA_HOME": str(tmp / "home"), **(env or {})},
                start_new_session=True,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until `/health` is 200: every warm model (the default one at least) loaded."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"cocina serve exited ({self.proc.returncode}):\n{self.log[-3000:]}"
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"never READY:\n{self.log[-3000:]}")

    def sigterm(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then a clean exit: drained, the store closed, no traceback."""
        self.proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done: -SIGTERM is a clean exit here.
        assert self.proc.wait(timeout_s) in (0, -signal.SIGTERM), self.log[-3000:]
        assert "Application shutdown complete." in self.log and "Traceback" not in self.log, self.log[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def serve_procs() -> Iterator[list[Served]]:
    procs: list[Served] = []
    yield procs
    for p in procs:
        p.kill()


def test_serve_model_dir_end_to_end(tiny_model: Path, tmp_path: Path, serve_procs: list[Served]) -> None:
    srv = Served(tmp_path, "--model", str(tiny_model), "--name", "acme/tiny", "--data-dir", str(tmp_path / "data"))
    serve_procs.append(srv)
    srv.wait_ready()
    # It listened first, then loaded the model in its own process, printing what it loaded.
    log = srv.log
    assert f"serving acme/tiny: language model from --model {tiny_model}" in log
    assert f"loading model acme/tiny (--model {tiny_model})" in log
    assert log.index("Uvicorn running on") < log.index("acme/tiny: cocina engine: model on cpu")
    assert log.index("acme/tiny: cocina engine: model on cpu") < log.index("model acme/tiny loaded in")

    oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    assert [m.id for m in oa.models.list()] == ["acme/tiny", str(tiny_model)]
    chunks = list(
        oa.chat.completions.create(
            model="acme/tiny",
            messages=[{"role": "user", "content": "hola"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
            seed=1,
        )
    )
    assert chunks[-1].usage is not None and 1 <= chunks[-1].usage.completion_tokens <= 8
    assert any(c.choices and c.choices[0].finish_reason in ("stop", "length") for c in chunks)

    rep = replicate.Client(api_token="x", base_url=srv.url)
    out = rep.run("acme/tiny", input={"prompt": "hola", "max_new_tokens": 5, "seed": 2})
    assert isinstance("".join(out), str)
    listed = httpx.get(f"{srv.url}/v1/predictions").json()["results"]
    assert {p["status"] for p in listed} == {"succeeded"} and len(listed) == 2  # the chat is stored too

    srv.sigterm()


def _write_project(root: Path, predict: str, config: str = 'predict: "predict.py:Predictor"\n') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(predict))
    (root / "cocina.yaml").write_text(config)
    return root


def test_serve_builtin_llm_project_shares_one_engine(
    tiny_model: Path, tmp_path: Path, serve_procs: list[Served]
) -> None:
    # A configuration-only subclass naming its model by a path relative to the project.
    project = _write_project(
        tmp_path / "proj",
        f'''
        from cocina.llm import LLMPredictor


        class Predictor(LLMPredictor):
            """The tiny test model."""

            model = "{os.path.relpath(tiny_model, tmp_path / "proj")}"
        ''',
    )
    srv = Served(tmp_path, str(project), "--name", "acme/proj")
    serve_procs.append(srv)
    srv.wait_ready()
    assert "serving acme/proj: language model from project" in srv.log

    oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    chat = oa.chat.completions.create(model="acme/proj", messages=[{"role": "user", "content": "a"}], max_tokens=4)
    assert chat.usage is not None and chat.usage.completion_tokens >= 1
    rep = replicate.Client(api_token="x", base_url=srv.url)
    out = rep.run("acme/proj", input={"prompt": "b", "max_new_tokens": 3, "seed": 5})
    assert isinstance("".join(out), str), (out, httpx.get(f"{srv.url}/v1/predictions").json())
    cog = httpx.post(f"{srv.url}/predictions", json={"input": {"pregunta": "c", "max_new_tokens": 3}}, timeout=30)
    assert cog.json()["status"] == "succeeded"

    # One engine behind all three surfaces: it counted the three requests.
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(httpx.get(f"{srv.url}/metrics").text)
        for s in f.samples
    }
    from cocina.serving.spec import version_id

    mine = {"model_name": "acme/proj", "version": version_id(project)}
    assert value(samples, "cocina_engine_requests_total", outcome="finished", **mine) == 3
    assert (tmp_path / "home" / "predictions.db").exists()  # the default data directory: $COCINA_HOME
    srv.sigterm()


# ---- which projects are language models (read from the files, never imported) ------------------------------


def test_builtin_llm_detection(tmp_path: Path) -> None:
    def detect(name: str, predict: str, config: str = 'predict: "predict.py:Predictor"\n') -> BuiltinLLM | None:
        return builtin_llm(load_project(_write_project(tmp_path / name, predict, config)))

    plain = "from cocina.llm import LLMPredictor\n"
    assert detect("ref", plain, 'predict: "predict.py:LLMPredictor"\n') == BuiltinLLM(
        None, "predict.py:LLMPredictor is cocina.llm.LLMPredictor"
    )
    alias = detect("alias", "import cocina.llm as llm\nPredictor = llm.LLMPredictor\n")
    assert alias is not None and alias.model is None
    sub = detect("sub", 'from cocina.llm import LLMPredictor as L\nclass Predictor(L):\n    model: str = "org/m"\n')
    assert sub is not None and sub.model == "org/m"
    # Methods of its own: still on the engine (its process runs it like any predictor).
    custom = "from cocina.llm import LLMPredictor\nclass Predictor(LLMPredictor):\n    def setup(self): ...\n"
    assert detect("custom", custom) == BuiltinLLM(None, "predict.py:Predictor subclasses cocina.llm.LLMPredictor")
    assert detect("mixin", "from cocina.llm import LLMPredictor\nclass Predictor(LLMPredictor, dict): pass\n") is None
    assert detect("user", "from cog import BasePredictor\nclass Predictor(BasePredictor):\n    pass\n") is None
    # Module references: cocina's own LLMPredictor; a user module is read like a file.
    assert detect("mod", "", 'predict: "cocina.llm:LLMPredictor"\n') == BuiltinLLM(
        None, "cocina.llm:LLMPredictor is cocina.llm.LLMPredictor"
    )
    assert detect("mod2", "", 'predict: "cocina.llm.predictor:LLMPredictor"\n') is not None
    assert detect("mod3", "", 'predict: "cocina.llm:build_prompt"\n') is None
    (tmp_path / "usermod").mkdir()
    user_module = 'from cocina.llm import LLMPredictor\nclass P(LLMPredictor):\n    model = "o/m"\n'
    (tmp_path / "usermod" / "llmcfg.py").write_text(user_module)
    usermod = detect("usermod", "", 'predict: "llmcfg:P"\n')
    assert usermod is not None and usermod.model == "o/m"
    keyed = detect("keyed", "class Predictor: pass\n", 'predict: "predict.py:Predictor"\ncocina:\n  model: weights\n')
    assert keyed == BuiltinLLM("weights", "cocina.model in the project's config")


def test_default_model_is_llm_predictors() -> None:
    """`cocina serve` names the built-in predictor's default model without importing it (torch): the same one."""
    from cocina.llm import LLMPredictor
    from cocina.serving.spec import LLM_DEFAULT_MODEL

    assert LLMPredictor.model == LLM_DEFAULT_MODEL


def test_project_model_resolution(tmp_path: Path) -> None:
    config = 'predict: "predict.py:Predictor"\ncocina:\n  model: w\n'
    root = _write_project(tmp_path / "p", "class Predictor: pass\n", config)
    (root / "w").mkdir()
    project = load_project(root)
    llm = builtin_llm(project)
    assert llm is not None
    assert resolve_project_model(project, llm, "cocina/demo", env={}) == str(root / "w")  # relative: the project's
    assert resolve_project_model(project, llm, "cocina/demo", env={"COCINA_MODEL": "org/x"}) == "org/x"
    assert resolve_project_model(project, BuiltinLLM(None, ""), "cocina/demo", env={}) == "cocina/demo"


def test_serve_module_ref_project(tiny_model: Path, tmp_path: Path, serve_procs: list[Served]) -> None:
    """`predict: "cocina.llm:LLMPredictor"` (a module, no predict.py needed) is the built-in predictor."""
    root = tmp_path / "modref"
    root.mkdir()
    config = f'predict: "cocina.llm:LLMPredictor"\nenvironment:\n  - COCINA_MODEL={tiny_model}\n'
    (root / "cocina.yaml").write_text(config)
    srv = Served(tmp_path, str(root), "--name", "acme/modref")
    serve_procs.append(srv)
    srv.wait_ready()
    assert "serving acme/modref: language model from project" in srv.log
    cog = httpx.post(f"{srv.url}/predictions", json={"input": {"prompt": "c", "max_new_tokens": 3}}, timeout=30)
    assert cog.json()["status"] == "succeeded"
    oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    assert oa.completions.create(model="acme/modref", prompt="a", max_tokens=2).usage is not None
    srv.sigterm()


def test_serve_reports_a_model_that_fails_to_load(tmp_path: Path, serve_procs: list[Served]) -> None:
    """A load failure is SETUP_FAILED with the error in the setup logs; the process stays up to say so."""
    missing = tmp_path / "no-such-model"
    srv = Served(tmp_path, "--model", str(missing), "--data-dir", str(tmp_path / "data"))
    serve_procs.append(srv)
    deadline = time.monotonic() + 60
    health: dict[str, object] = {}
    while time.monotonic() < deadline and health.get("status") != "SETUP_FAILED":
        assert srv.proc.poll() is None, srv.log[-3000:]
        try:
            health = httpx.get(f"{srv.url}/health-check", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.1)
    assert health.get("status") == "SETUP_FAILED", srv.log[-3000:]
    setup = health["setup"]
    assert isinstance(setup, dict) and str(missing) in setup["logs"] and "Traceback" not in setup["logs"]
    assert "model local/no-such-model failed to load: ModelNotFoundError: Model" in srv.log
    assert httpx.get(f"{srv.url}/health").status_code == 503  # never ready: orchestrators send it no traffic
    r = httpx.post(f"{srv.url}/v1/completions", json={"model": "local/no-such-model", "prompt": "x"})
    assert r.status_code == 503 and "failed to set up" in r.json()["error"]["message"]
    time.sleep(0.3)
    assert srv.proc.poll() is None and httpx.get(f"{srv.url}/health-check").json()["status"] == "SETUP_FAILED"
    srv.sigterm()


def test_serve_refuses_a_bad_project_clearly(tiny_model: Path, tmp_path: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "cocina.cli", "serve", *args, "--port", str(_free_port())]
        env = {**os.environ, **ENGINE_ENV, "COCINA_HOME": str(tmp_path / "home")}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    broken = _write_project(tmp_path / "broken", "class Predictor: pass\n", "predict: 42\n")
    bad = serve(str(broken))
    assert bad.returncode == 1 and "cocina serve:" in bad.stderr and "Traceback" not in bad.stderr
    config = f'predict: "predict.py:Predictor"\ncocina:\n  model: {tiny_model}\n  engine:\n    no_such_option: 1\n'
    engine = serve(str(_write_project(tmp_path / "engine", "class Predictor: pass\n", config)))
    assert engine.returncode == 1 and "no_such_option" in engine.stderr and "Traceback" not in engine.stderr


def test_serve_engine_flags_win_over_the_project_and_the_environment(
    tiny_model: Path, tmp_path: Path, serve_procs: list[Served]
) -> None:
    """--dtype/--kv-cache/--max-num-seqs reach the engine, over `cocina: engine:` and over COCINA_* variables."""
    root = tmp_path / "flags"
    root.mkdir()
    config = (
        'predict: "cocina.llm:LLMPredictor"\n'
        f"cocina:\n  model: {tiny_model}\n  engine:\n    kv_cache_bytes: 1048576\n    max_num_seqs: 2\n"
    )
    (root / "cocina.yaml").write_text(config)
    srv = Served(tmp_path, str(root), "--dtype", "float32", "--kv-cache", "4M", "--max-num-seqs", "3")
    serve_procs.append(srv)
    srv.wait_ready()
    # The tiny GPT-2: 2 layers x 4 KV heads x 16 dims, K and V, 16 tokens a block, 4 bytes: 16 KiB a block.
    assert "cocina engine: model on cpu (float32)" in srv.log
    assert "(256 blocks of 16 tokens)" in srv.log, srv.log[-2000:]
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert "vllm:num_requests_running" in metrics
    cog = httpx.post(f"{srv.url}/predictions", json={"input": {"prompt": "c", "max_new_tokens": 3}}, timeout=30)
    assert cog.json()["status"] == "succeeded"
    srv.sigterm()


def test_serve_rejects_a_bad_engine_flag_at_once(tiny_model: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cocina.cli", "serve", "--model", str(tiny_model), "--quantize", "int4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "cocina serve: --quantize must be one of none, int8, bnb8, bnb4; got 'int4'"


# ---- several models in one server ---------------------------------------------------------------------------


def test_serve_a_directory_of_projects_and_a_model(tiny_model: Path, tmp_path: Path, serve_procs: list[Served]) -> None:
    """Projects found in a directory and a language model, each in its own process, behind one server: the
    official clients list and run them all; Cog's root API serves the first."""
    import shutil

    zoo = tmp_path / "zoo"
    shutil.copytree(Path(__file__).parent / "fixtures" / "projects" / "echo", zoo / "echo")
    shutil.copytree(Path(__file__).parent / "fixtures" / "projects" / "echo_plain", zoo / "plain")
    (zoo / "notes").mkdir()  # not a project: ignored
    srv = Served(tmp_path, str(zoo), "--model", f"acme/tiny={tiny_model}", "--data-dir", str(tmp_path / "data"))
    serve_procs.append(srv)
    srv.wait_ready()
    rep = replicate.Client(api_token="x", base_url=srv.url)
    assert sorted(f"{m.owner}/{m.name}" for m in rep.models.list()) == ["acme/tiny", "local/echo", "local/plain"]
    assert rep.run("local/plain", input={"text": "p"}) == "p"
    assert list(rep.run("local/echo", input={"text": "e", "n": 2})) == ["e0", "e1"]
    assert isinstance("".join(rep.run("acme/tiny", input={"prompt": "a", "max_new_tokens": 2})), str)
    oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    assert next(m.id for m in oa.models.list()) == "acme/tiny"
    assert oa.completions.create(model="acme/tiny", prompt="a", max_tokens=2).usage is not None
    # Cog's root API is the first model's, as a Cog container would serve it.
    assert httpx.get(f"{srv.url}/openapi.json").json()["components"]["schemas"]["Input"]["required"] == ["text"]
    assert httpx.post(f"{srv.url}/predictions", json={"input": {"text": "c", "n": 1}}).json()["output"] == ["c0"]
    models = httpx.get(f"{srv.url}/health").json()["models"]
    assert models == {"local/echo": "ready", "local/plain": "ready", "acme/tiny": "ready"}
    srv.sigterm()


def test_serve_refuses_two_models_with_one_name(tmp_path: Path) -> None:
    echo = Path(__file__).parent / "fixtures" / "projects" / "echo"
    plain = Path(__file__).parent / "fixtures" / "projects" / "echo_plain"
    cmd = [sys.executable, "-m", "cocina.cli", "serve", f"acme/x={echo}", f"acme/x={plain}"]
    proc = subprocess.run([*cmd, "--port", str(_free_port())], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "two models are named 'acme/x'" in proc.stderr and str(echo) in proc.stderr and str(plain) in proc.stderr
    names = [sys.executable, "-m", "cocina.cli", "serve", "--model", "a", "--model", "b", "--served-model-name", "x"]
    proc = subprocess.run([*names, "--port", str(_free_port())], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "--served-model-name was given 1 times for 2 --model values" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "cocina.cli", "serve", str(echo), "--name", "no slash allowed here"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "invalid model name" in proc.stderr


def test_sigterm_while_a_model_loads_does_not_wait_for_it(
    tiny_model: Path, tmp_path: Path, serve_procs: list[Served]
) -> None:
    srv = Served(tmp_path, "--model", str(tiny_model), "--data-dir", str(tmp_path / "data"))
    serve_procs.append(srv)
    deadline = time.monotonic() + 60
    while "loading model" not in srv.log:
        assert time.monotonic() < deadline and srv.proc.poll() is None, srv.log[-2000:]
        time.sleep(0.05)
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(30) in (0, -signal.SIGTERM), srv.log[-3000:]
    assert time.monotonic() - t0 < 15 and "Traceback" not in srv.log


def test_one_server_a_predictor_and_two_language_models(
    tiny_model: Path, tmp_path: Path, serve_procs: list[Served]
) -> None:
    """The issue's bar: the real clients against one server holding a Cog predictor and two language models,
    each routed by name."""
    from cocina.models.tiny import make_tiny_model

    llama = make_tiny_model(tmp_path / "tiny-llama", arch="llama")
    echo = Path(__file__).parent / "fixtures" / "projects" / "echo"
    srv = Served(
        tmp_path,
        f"acme/echo={echo}",
        "--model",
        f"acme/gpt2={tiny_model}",
        "--model",
        f"acme/llama={llama}",
        "--warm",
        "all",
        "--data-dir",
        str(tmp_path / "data"),
    )
    serve_procs.append(srv)
    srv.wait_ready()
    oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
    ids = [m.id for m in oa.models.list()]
    assert ids[0] == "acme/gpt2" and "acme/llama" in ids and "acme/echo" not in ids
    for name in ("acme/gpt2", "acme/llama"):
        chat = oa.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "hola"}], max_tokens=4, extra_body={"ignore_eos": True}
        )
        assert chat.model == name and chat.usage is not None and chat.usage.completion_tokens == 4
    rep = replicate.Client(api_token="x", base_url=srv.url)
    assert sorted(f"{m.owner}/{m.name}" for m in rep.models.list()) == ["acme/echo", "acme/gpt2", "acme/llama"]
    assert list(rep.run("acme/echo", input={"text": "e", "n": 2})) == ["e0", "e1"]
    llama_version = rep.models.get("acme/llama").latest_version
    assert llama_version is not None
    out = rep.run(f"acme/llama:{llama_version.id}", input={"prompt": "hola", "max_new_tokens": 3, "seed": 1})
    assert isinstance("".join(out), str)
    # Each model's process is its own: three worker processes besides the server.
    health = httpx.get(f"{srv.url}/health").json()
    assert health == {"status": "ok", "models": {"acme/echo": "ready", "acme/gpt2": "ready", "acme/llama": "ready"}}
    srv.sigterm()
