"""Serving benchmark (issue #4): the seed's Cog server vs ``transformers serve`` vs ``cocina serve``, side by side.

One process, one run. The model directory is built once (GPT-2-small shape, random weights, a tokenizer trained
here whose 50257 ids all decode to text, with a ChatML chat template); each server is started as a subprocess on
127.0.0.1 with a free port, waited for, warmed up, loaded with cocina's own bench client (``cocina.bench``:
its request/stream code and its vLLM-style metrics), and stopped (its whole process group) before the next::

    .venv/bin/python benchmarks/serving.py                     # bf16, concurrency 1 8 32 64, docs/benchmarks.md
    .venv/bin/python benchmarks/serving.py --dtype float32     # fp32 (PyTorch's faster dtype without AVX512-BF16)
    .venv/bin/python benchmarks/serving.py --quick --no-docs   # tiny model and loads: the smoke test

Systems (same model, same dtype, same load: streaming chat completions, 32-token prompts, 64 output tokens,
EOS ignored, greedy):

- ``seed``: the seed's way, Cog's own HTTP server (``cog==0.16.12``, installed with pip into a throwaway
  ``--target`` folder under the work directory) running a ``predict.py`` that calls ``model.generate``, one
  prediction at a time. Cog answers a second concurrent prediction with 409, so the client queues requests
  (a perfect queue in front of Cog, as Replicate's platform provides): the times in that queue count in TTFT
  and E2E latency. Cog's HTTP server does not stream (the output arrives with the finished prediction), so its
  TTFT equals its E2E latency. ``--seed-server cocina`` (or a failed Cog install) serves the same predict.py
  with ``cocina serve DIR --concurrency 1`` instead, which streams.
- ``transformers``: ``transformers serve --continuous-batching`` with ``--cb-num-blocks`` set (64 blocks of
  its default 256-token pages: room for 64 requests; its KV cache is otherwise sized from host RAM). It refuses
  unknown body fields, so EOS is ignored through a ``generation_config`` field with
  ``min_new_tokens = max_new_tokens``.
- ``cocina``: ``cocina serve --model DIR`` (dtype through ``COCINA_DTYPE``).

Echo overhead: ``benchmarks/echo_predictor`` (predict returns its input). The p50 of ``Predictor().predict``
called in this process against the p50 of sequential Cog ``POST /predictions`` round trips to
``cocina serve benchmarks/echo_predictor`` (httpx keep-alive); the added latency is the difference.

Prints one JSON object (every figure, the targets of issue #4 and whether each is met) and, unless
``--no-docs``, writes the table into the ``## Serving (benchmarks/serving.py)`` section of docs/benchmarks.md
(the other sections of that file are left as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Serving (benchmarks/serving.py)"
ECHO_PROJECT = Path(__file__).resolve().parent / "echo_predictor"
COG_VERSION = "0.16.12"
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "cocina-serving-bench"

# Issue #4's targets, at concurrency 32.
TARGET_LEVEL = 32
TARGET_VS_SEED = 8.0
TARGET_VS_TRANSFORMERS = 1.2
TARGET_ECHO_MS = 3.0

SYSTEM_LABELS = {
    "seed": "(a) seed: Cog server, predict.py with model.generate, one at a time",
    "transformers": "(b) transformers serve --continuous-batching",
    "llama-server": "(d) llama.cpp llama-server -np 32",
    "cocina": "(c) cocina serve --model",
}
# Issue #14's targets: at c=1 cocina >= llama-server; at c=32 >= 1.5x llama-server and >= 2x transformers serve.
TARGET_VS_LLAMA_C1 = 1.0
TARGET_VS_LLAMA_C32 = 1.5
TARGET_VS_TRANSFORMERS_14 = 2.0
GGUF_TYPE = {"bfloat16": "BF16", "float32": "F32", "int8": "Q8_0", "int4": "Q4_0"}


def system_key(base: str, precision: str | None) -> str:
    """``cocina`` or ``cocina-int8``: one system per precision (transformers and the seed run the dtype only)."""
    return base if precision is None else f"{base}-{precision}"


def system_label(key: str) -> str:
    base, _, precision = key.partition("-int")
    if key.startswith("llama-server"):
        base, precision = "llama-server", key.removeprefix("llama-server").lstrip("-")
    label = SYSTEM_LABELS[base].split(":")[0]
    if key.startswith("llama-server"):
        return f"{label}, {GGUF_TYPE.get(precision, precision) if precision else 'dtype (BF16 or F32)'} GGUF"
    return f"{label}, int{precision}" if precision else label


# -- the model -----------------------------------------------------------------------------------------------
def full_vocab_corpus(n_words: int = 60000, seed: int = 0) -> list[str]:
    """Texts on which byte-level BPE learns a full GPT-2-sized vocabulary: distinct pseudo-words, twice each.

    A random-weight model samples ids across its whole vocabulary; with the small default tokenizer of
    cocina.models.tiny most ids would decode to no text and streams would carry no content. With every id a
    (pseudo-)word, each generated token is a visible chunk on every server.
    """
    import random

    from cocina.models.tiny import sample_corpus

    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    words: set[str] = set()
    while len(words) < n_words:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    ordered = sorted(words)
    lines = [" ".join(ordered[i : i + 1000]) for i in range(0, len(ordered), 1000)]
    return sample_corpus() + lines * 2


def build_model(workdir: Path, quick: bool) -> Path:
    """The benchmark model (weights in fp32; each server casts to --dtype), built once and reused."""
    import torch

    from cocina.models.tiny import gpt2_small_config, make_model_from_config, make_tiny_model, train_tokenizer

    out = workdir / ("tiny-gpt2" if quick else "gpt2-small-shape")
    if (out / "config.json").exists() and (out / "tokenizer_config.json").exists():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if quick:
        make_tiny_model(tmp, "gpt2", vocab_size=1024, hidden_size=64, num_layers=2, num_heads=4, seed=0)
    else:
        tok = train_tokenizer(full_vocab_corpus(), 50257, model_max_length=1024)
        make_model_from_config(gpt2_small_config(), tmp, seed=0, dtype=torch.float32, tokenizer=tok)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


# The seed's way: Cog's llm example shape, `model.generate` one prediction at a time. One output chunk per token
# (a streamer that hands over token ids) so every server's output is counted in the same tokens.
SEED_PREDICT = '''\
import os
import queue
import threading

from cog import BasePredictor, ConcatenateIterator, Input

MODEL = {model!r}


class _TokenQueue:
    """A generate() streamer: the first put() is the prompt, then one tensor of new ids per step."""

    def __init__(self):
        self.q = queue.Queue()
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for tid in value.reshape(-1).tolist():
            self.q.put(int(tid))

    def end(self):
        self.q.put(None)


class Predictor(BasePredictor):
    def setup(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = getattr(torch, os.environ.get("SEED_DTYPE", "bfloat16"))
        self.tokenizer = AutoTokenizer.from_pretrained(MODEL)
        self.model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=dtype)
        self.model.eval()

    def predict(
        self,
        pregunta: str = Input(description="The question"),
        max_new_tokens: int = Input(default=128, ge=1, le=1024),
    ) -> ConcatenateIterator[str]:
        import torch

        messages = [{{"role": "user", "content": pregunta}}]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        if not hasattr(ids, "shape"):
            ids = ids["input_ids"]
        streamer = _TokenQueue()
        failure = []

        def run():
            try:
                with torch.inference_mode():
                    self.model.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=max_new_tokens,
                        min_new_tokens=max_new_tokens,  # EOS ignored, as in every system of the benchmark
                        do_sample=False,
                        pad_token_id=self.tokenizer.pad_token_id,
                        streamer=streamer,
                    )
            except BaseException as exc:
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        while (tid := streamer.q.get()) is not None:
            yield self.tokenizer.decode([tid]) or "\\ufffd"
        thread.join()
        if failure:
            raise failure[0]
'''


def write_seed_project(workdir: Path, model_dir: Path) -> Path:
    proj = workdir / "seed_project"
    proj.mkdir(parents=True, exist_ok=True)
    (proj / "predict.py").write_text(SEED_PREDICT.format(model=str(model_dir)))
    (proj / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n')
    return proj


def install_cog(workdir: Path) -> Path:
    """Cog's Python package (its HTTP server) in a --target folder: PYTHONPATH puts it in front of the venv."""
    target = workdir / f"cog-{COG_VERSION}"
    if (target / "cog" / "server" / "http.py").exists():
        return target
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--target",
        str(tmp),
        f"cog=={COG_VERSION}",
    ]
    constraints = ROOT / "constraints.txt"
    if constraints.exists():
        cmd[4:4] = ["-c", str(constraints)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install cog=={COG_VERSION} failed: {proc.stderr.strip().splitlines()[-1:]}")
    tmp.rename(target)
    return target


# -- servers ---------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server subprocess in its own process group; stop() ends the group (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: Path,
        port: int,
        health: str,
    ) -> None:
        self.name, self.cmd, self.port, self.health, self.log = name, cmd, port, health, log
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            cmd,
            env=full_env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds until the health endpoint says ready; raises with the log's tail on exit or timeout."""
        import httpx

        t0 = time.perf_counter()
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            while time.perf_counter() - t0 < timeout_s:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
                try:
                    resp = client.get(self.url + self.health)
                    if resp.status_code == 200:
                        body = resp.json() if "json" in resp.headers.get("content-type", "") else {}
                        status = body.get("status") if isinstance(body, dict) else None
                        if status in (None, "READY", "ok", "healthy"):
                            return time.perf_counter() - t0
                        if status in ("SETUP_FAILED", "DEFUNCT"):
                            raise RuntimeError(f"{self.name} setup failed: {self.tail()}")
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s: {self.tail()}")

    def tail(self, n: int = 1500) -> str:
        self._log.flush()
        try:
            return self.log.read_text(errors="replace")[-n:].strip().replace("\n", " | ")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Children that outlived their parent (a worker process) are in the same group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


class RssSampler:
    """Peak resident memory of a process group (a server and its workers), sampled every 0.2 s in a thread."""

    def __init__(self, pgid: int) -> None:
        import threading

        self.pgid, self.peak = pgid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> int:
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.pgid:  # field 5 of stat: the process group
                    for line in (stat.parent / "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.sample())

    def __enter__(self) -> RssSampler:
        self.peak = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


@contextlib.contextmanager
def running(server: Server, timeout_s: float) -> Iterator[Server]:
    try:
        server.wait_ready(timeout_s)
        yield server
    finally:
        server.stop()


def _kernel_line(log: Path) -> str | None:
    """The engine's start-up line (memory, and the kernels each part of the model runs) from a cocina log."""
    with contextlib.suppress(OSError):
        for line in log.read_text(errors="replace").splitlines():
            if "cocina engine:" in line or "kernels:" in line:
                return line.split("cocina engine:", 1)[-1].strip()
    return None


def cocina_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("cocina")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cocina.cli"]


# -- load ---------------------------------------------------------------------------------------------------
async def run_level(cfg: Any, reqs: list[Any], concurrency: int, *, serialize: bool = False) -> tuple[list, float]:
    """cocina.bench's runner, closed loop: `concurrency` users, each sending its next request when answered.

    ``serialize``: the server takes one prediction at a time (Cog answers 409 otherwise), so requests wait in a
    client-side queue; the wait counts in TTFT and E2E latency as it would behind a real queue.
    """
    import httpx

    from cocina.bench.backends import send_request
    from cocina.bench.metrics import RequestResult

    sem = asyncio.Semaphore(concurrency)
    slot = asyncio.Lock()
    results = [RequestResult(i, r.prompt_len, r.output_len) for i, r in enumerate(reqs)]
    client = httpx.AsyncClient(
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 30.0)),
        trust_env=False,
    )

    async def one(i: int) -> None:
        async with sem:
            if not serialize:
                await send_request(client, cfg, reqs[i], results[i], t0)
                return
            arrived = time.perf_counter() - t0
            async with slot:
                await send_request(client, cfg, reqs[i], results[i], t0)
            r = results[i]
            waited = r.start - arrived
            r.start = arrived
            r.latency += waited
            if r.success:
                r.ttft += waited

    async with client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(reqs))))
        duration = time.perf_counter() - t0
    return results, duration


def summarize(m: dict[str, Any], results: list[Any], concurrency: int) -> dict[str, Any]:
    ok = [r for r in results if r.success]
    return {
        "concurrency": concurrency,
        "requests": m["total_requests"],
        "completed": m["completed"],
        "failed": m["failed"],
        "errors": m["errors_by_status"],
        "first_errors": m["first_errors"][:2],
        "duration_s": round(m["duration_s"], 3),
        "output_tok_s": round(m["output_token_throughput_tok_s"], 2),
        "request_s": round(m["request_throughput_req_s"], 3),
        "mean_output_tokens": round(statistics.fmean(r.output_tokens for r in ok), 2) if ok else 0.0,
        "mean_prompt_tokens": round(statistics.fmean(r.prompt_len for r in ok), 2) if ok else 0.0,
        "output_tokens_source": m["output_tokens_source"],
        "ttft_ms": {k: _r(m["ttft_ms"].get(k)) for k in ("mean", "p50", "p99")},
        "tpot_ms": {k: _r(m["tpot_ms"].get(k)) for k in ("mean", "p50", "p99")},
        "e2el_ms": {k: _r(m["e2el_ms"].get(k)) for k in ("mean", "p50", "p99")},
        "max_concurrent_requests": m["max_concurrent_requests"],
    }


def _r(x: Any, digits: int = 2) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else round(float(x), digits)


def bench_server(
    server: Server,
    api_cfg: dict[str, Any],
    levels: list[int],
    n_for: Any,
    args: argparse.Namespace,
    tokenizer: Any,
    *,
    serialize: bool = False,
    ready_timeout: float = 300.0,
) -> dict[str, Any]:
    """Start `server`, warm it up, run every level, stop it. Never raises: failures are recorded."""
    from cocina.bench.backends import BackendConfig
    from cocina.bench.metrics import compute_metrics
    from cocina.bench.runner import preflight
    from cocina.bench.workload import synthetic_requests

    # The machine may be shared: each system's figures come with the load they ran under.
    out: dict[str, Any] = {"status": "ok", "levels": {}, "uptime_before": _uptime()}
    t_start = time.perf_counter()
    try:
        with running(server, ready_timeout):
            out["ready_s"] = round(time.perf_counter() - t_start, 1)
            cfg = BackendConfig(base_url=server.url, timeout_s=args.request_timeout, **{"ignore_eos": True, **api_cfg})
            cfg = asyncio.run(preflight(cfg))  # the OpenAI model id from /v1/models when none is given
            warm = synthetic_requests(2, args.input_len, args.output_len, seed=10_000, tokenizer=tokenizer)
            results, _ = asyncio.run(run_level(cfg, warm, 2, serialize=serialize))
            bad = [r.error for r in results if not r.success]
            if bad:
                raise RuntimeError(f"warm-up failed: {bad[0]}")
            for c in levels:
                n = n_for(c)
                reqs = synthetic_requests(n, args.input_len, args.output_len, seed=c, tokenizer=tokenizer)
                _log(f"{server.name}: concurrency {c}, {n} requests")
                with RssSampler(server.proc.pid) as rss:
                    results, duration = asyncio.run(run_level(cfg, reqs, c, serialize=serialize))
                m = compute_metrics(results, duration)
                out["levels"][str(c)] = summarize(m, results, c)
                out["levels"][str(c)]["peak_rss_mb"] = round(rss.peak / 2**20, 1)
                _log(
                    f"  {out['levels'][str(c)]['output_tok_s']} tok/s, "
                    f"p99 TTFT {out['levels'][str(c)]['ttft_ms']['p99']} ms, failed {m['failed']}"
                )
    except Exception as exc:  # a baseline that cannot run is a recorded result, not a crash of the whole run
        out["status"] = f"failed: {type(exc).__name__}: {str(exc)[:600]}"
        _log(f"{server.name}: {out['status']}")
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    out["uptime_after"] = _uptime()
    return out


# -- echo overhead -----------------------------------------------------------------------------------------------
def load_echo_predictor() -> Any:
    import importlib.util

    from cocina.sdk.shim import install_cog_shim

    install_cog_shim()
    spec = importlib.util.spec_from_file_location("_echo_predict", ECHO_PROJECT / "predict.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    p = mod.Predictor()
    p.setup()
    return p


def p50_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000.0


def measure_echo(workdir: Path, n: int, ready_timeout: float) -> dict[str, Any]:
    import httpx

    text = "hola"
    predictor = load_echo_predictor()
    for _ in range(100):
        predictor.predict(text=text)
    direct = []
    for _ in range(max(n, 1000)):
        t = time.perf_counter()
        predictor.predict(text=text)
        direct.append(time.perf_counter() - t)

    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="echo-data-", dir=workdir))
    server = Server(
        "cocina-echo",
        [*cocina_cmd(), "serve", str(ECHO_PROJECT), "--port", str(port), "--data-dir", str(data)],
        log=workdir / "echo-server.log",
        port=port,
        health="/health-check",
    )
    http: list[float] = []
    with running(server, ready_timeout), httpx.Client(timeout=30.0, trust_env=False) as client:
        url = server.url + "/predictions"
        for i in range(n + 20):
            t = time.perf_counter()
            resp = client.post(url, json={"input": {"text": text}})
            dt_s = time.perf_counter() - t
            body = resp.json()
            if resp.status_code != 200 or body.get("output") != text:
                raise RuntimeError(f"echo prediction failed: HTTP {resp.status_code} {str(body)[:200]}")
            if i >= 20:  # warm-up: first connections, the worker's first predictions
                http.append(dt_s)
    shutil.rmtree(data, ignore_errors=True)
    d50, h50 = p50_ms(direct), p50_ms(http)
    added = h50 - d50
    return {
        "requests": n,
        "direct_predict_p50_ms": round(d50, 4),
        "http_p50_ms": round(h50, 3),
        "http_p90_ms": round(statistics.quantiles(http, n=10)[-1] * 1000, 3) if len(http) > 1 else None,
        "added_p50_ms": round(added, 3),
        "target_ms": TARGET_ECHO_MS,
        "pass": added <= TARGET_ECHO_MS,
    }


# -- report -----------------------------------------------------------------------------------------------------
def targets(systems: dict[str, Any], echo: dict[str, Any] | None) -> dict[str, Any]:
    def lvl(name: str) -> dict[str, Any] | None:
        s = systems.get(name) or {}
        level = (s.get("levels") or {}).get(str(TARGET_LEVEL))
        return level if level and level["completed"] else None

    c, a, b = lvl("cocina"), lvl("seed"), lvl("transformers")
    out: dict[str, Any] = {"level": TARGET_LEVEL}
    if c and a:
        ratio = c["output_tok_s"] / a["output_tok_s"]
        out["tok_s_vs_seed"] = {"ratio": round(ratio, 2), "target": TARGET_VS_SEED, "pass": ratio >= TARGET_VS_SEED}
    else:
        out["tok_s_vs_seed"] = {"ratio": None, "target": TARGET_VS_SEED, "pass": None}
    if c and b:
        ratio = c["output_tok_s"] / b["output_tok_s"]
        out["tok_s_vs_transformers"] = {
            "ratio": round(ratio, 2),
            "target": TARGET_VS_TRANSFORMERS,
            "pass": ratio >= TARGET_VS_TRANSFORMERS,
        }
        ct, bt = c["ttft_ms"]["p99"], b["ttft_ms"]["p99"]
        out["p99_ttft_vs_transformers"] = {"cocina_ms": ct, "transformers_ms": bt, "pass": ct <= bt}
    else:
        out["tok_s_vs_transformers"] = {"ratio": None, "target": TARGET_VS_TRANSFORMERS, "pass": None}
        out["p99_ttft_vs_transformers"] = {
            "cocina_ms": c["ttft_ms"]["p99"] if c else None,
            "transformers_ms": None,
            "pass": None,
        }
    # Issue #14: per precision, cocina against llama-server (c=1 and c=32) and transformers serve (c=32).
    out["issue14"] = []
    b32 = b
    for key, system in systems.items():
        if not key.startswith("cocina"):
            continue
        suffix = key.removeprefix("cocina")
        llama = systems.get("llama-server" + suffix) or {}
        for level, target, other, name in (
            (1, TARGET_VS_LLAMA_C1, llama, "llama-server"),
            (32, TARGET_VS_LLAMA_C32, llama, "llama-server"),
            (32, TARGET_VS_TRANSFORMERS_14, {"levels": {"32": b32}} if b32 else {}, "transformers serve"),
        ):
            versus = name + suffix.replace("-", " ") if name == "llama-server" else f"{name} (its dtype)"
            mine = (system.get("levels") or {}).get(str(level))
            theirs = (other.get("levels") or {}).get(str(level))
            ok = mine and theirs and mine["completed"] and theirs["completed"]
            ratio = mine["output_tok_s"] / theirs["output_tok_s"] if ok else None
            out["issue14"].append({
                "cocina": key, "versus": versus, "level": level, "target": target,
                "ratio": round(ratio, 2) if ratio is not None else None,
                "pass": None if ratio is None else ratio >= target,
            })
        for level in ("32",):
            mine = (system.get("levels") or {}).get(level)
            theirs = (llama.get("levels") or {}).get(level)
            if mine and theirs:
                out.setdefault("memory_c32_mb", []).append({
                    "cocina": key, "cocina_peak_rss_mb": mine.get("peak_rss_mb"),
                    "llama_server_peak_rss_mb": theirs.get("peak_rss_mb"),
                })
    out["echo_added_p50_ms"] = {
        "value": echo.get("added_p50_ms") if echo else None,
        "target": TARGET_ECHO_MS,
        "pass": echo.get("pass") if echo else None,
    }
    return out


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def _tpot(m: dict[str, Any]) -> str:
    # A server that does not stream delivers every token at once: TTFT = E2E and there is no time per token.
    if m["ttft_ms"]["p50"] is not None and m["ttft_ms"]["p50"] == m["e2el_ms"]["p50"]:
        return "— (not streamed)"
    return _fmt(m["tpot_ms"]["p50"])


def _mark(p: Any) -> str:
    return "n/a" if p is None else ("**yes**" if p else "**no**")


def render_section(report: dict[str, Any]) -> str:
    cfg, systems, t = report["config"], report["systems"], report["targets"]
    title = f"### {cfg['dtype']}" + (" (the issue's dtype)" if cfg["dtype"] == "bfloat16" else "")
    if cfg.get("quick"):
        title += " (--quick: tiny model)"
    lines = [
        f"<!-- serving-run:{cfg['dtype']} -->",
        title,
        "",
        "```console",
        f"$ {report['command']}",
        "```",
        "",
        f"- Date: {report['date']}; machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"AVX512-BF16: {'yes' if report['machine']['avx512_bf16'] else 'no'}; load before the run: "
        f"`{report['machine']['uptime_before']}`, after: `{report['machine']['uptime_after']}`"
        + (f"; code: `{report['code']}`." if report.get("code") else "."),
        f"- Model: {cfg['model']}, random weights, **{cfg['dtype']}** in every server (quantized rows: their "
        "weights quantized, Q8_0/Q4_0 GGUF for llama-server). Load: streaming chat "
        f"completions, {cfg['input_len']}-token prompts (+ the chat template's tokens), {cfg['output_len']} output "
        f"tokens with EOS ignored, greedy; closed loop at each concurrency; "
        f"requests per level: {cfg['requests_rule']}.",
    ]
    if not report["machine"]["avx512_bf16"]:
        lines.append(
            "- This CPU has no AVX512-BF16: PyTorch converts bf16 arithmetic in software, so for (a) and (b) bf16 "
            "is no faster than fp32 and batched bf16 much slower; (c) runs bf16 layers on cocina's own AVX-512 "
            "kernel (docs/engine.md, CPU kernels), where bf16 is faster than fp32."
        )
    lines += [
        "- (a) " + report["notes"]["seed"],
        "- (b) " + report["notes"]["transformers"],
        "- (c) " + report["notes"]["cocina"],
        *(f"- {system_label(k).split(' ', 1)[0]} {system_label(k).split(' ', 1)[1]}: {v}"
          for k, v in report["notes"].items() if k.startswith("llama-server")),
        *(f"- {s.get('label', k)} ran with: {s['kernels']}" for k, s in systems.items() if s.get("kernels")),
        "",
        "| system | concurrency | requests (failed) | output tok/s | TTFT p50 / p99 ms | TPOT p50 ms | "
        "E2E p50 / p99 ms | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in systems.items():
        label = system_label(name)
        if s["status"] != "ok" and not s.get("levels"):
            lines.append(f"| {label} | — | — | — | — | — | {s['status'][:160]} | — |")
            continue
        for c, m in s["levels"].items():
            lines.append(
                f"| {label} | {c} | {m['requests']} ({m['failed']}) | {_fmt(m['output_tok_s'])} | "
                f"{_fmt(m['ttft_ms']['p50'], 0)} / {_fmt(m['ttft_ms']['p99'], 0)} | {_tpot(m)} | "
                f"{_fmt(m['e2el_ms']['p50'], 0)} / {_fmt(m['e2el_ms']['p99'], 0)} | "
                f"{_fmt(m.get('peak_rss_mb'), 0)} |"
            )
        if s["status"] != "ok":
            lines.append(f"| {label} | — | — | — | — | — | {s['status'][:160]} | — |")
    loads = [f"{system_label(n)} `{_load_avg(s.get('uptime_before'))}`" for n, s in systems.items()]
    e = report.get("echo")
    lines += [
        "",
        "Load average (1, 5, 15 min) when each server started (it includes the previous server of this run; "
        "the machine is shared, and another process on one of its 2 cores slows every server several-fold): "
        + "; ".join(loads)
        + ".",
        "",
        f"Targets at concurrency {t['level']}:",
        "",
        "| target | measured | met |",
        "| --- | ---: | :---: |",
        f"| cocina output tok/s >= {TARGET_VS_SEED:g}x (a) | {_fmt(t['tok_s_vs_seed']['ratio'], 2)}x | "
        f"{_mark(t['tok_s_vs_seed']['pass'])} |",
        f"| cocina output tok/s >= {TARGET_VS_TRANSFORMERS:g}x (b) | {_fmt(t['tok_s_vs_transformers']['ratio'], 2)}x "
        f"| {_mark(t['tok_s_vs_transformers']['pass'])} |",
        f"| cocina p99 TTFT <= (b)'s | {_fmt(t['p99_ttft_vs_transformers']['cocina_ms'], 0)} ms vs "
        f"{_fmt(t['p99_ttft_vs_transformers']['transformers_ms'], 0)} ms | "
        f"{_mark(t['p99_ttft_vs_transformers']['pass'])} |",
        f"| echo predictor: added latency per prediction, p50 <= {TARGET_ECHO_MS:g} ms | "
        f"{_fmt(e.get('added_p50_ms') if e else None, 2)} ms | {_mark(t['echo_added_p50_ms']['pass'])} |",
        *(
            f"| issue #14: {row['cocina']} at c={row['level']} >= {row['target']:g}x {row['versus']} | "
            f"{_fmt(row['ratio'], 2)}x | {_mark(row['pass'])} |"
            for row in t.get("issue14", [])
        ),
        "",
        *(
            f"Resident memory at c=32 (peak, the server's whole process group): {m['cocina']} "
            f"{_fmt(m['cocina_peak_rss_mb'], 0)} MB, llama-server {_fmt(m['llama_server_peak_rss_mb'], 0)} MB."
            for m in t.get("memory_c32_mb", [])
        ),
        "",
    ]
    if e and "error" not in e:
        lines += [
            f"Echo overhead: `Predictor().predict` called directly, p50 {e['direct_predict_p50_ms']:.4f} ms; a Cog "
            f"`POST /predictions` round trip to `cocina serve benchmarks/echo_predictor` (httpx keep-alive, "
            f"{e['requests']} sequential requests after 20 of warm-up), p50 {e['http_p50_ms']:.2f} ms; added: "
            f"{e['added_p50_ms']:.2f} ms.",
            "",
        ]
    elif e:
        lines += [f"Echo overhead: not measured ({e['error']}).", ""]
    lines.append("The full figures (means, TPOT p99, errors, output token counts) are in the JSON the script prints.")
    lines.append(f"<!-- /serving-run:{cfg['dtype']} -->")
    return "\n".join(lines) + "\n"


SECTION_INTRO = (
    "Issues #4 and #14's serving comparison: one model, one load, several servers (the seed's Cog server, "
    "`transformers serve`, llama.cpp's `llama-server` and `cocina serve`, the last two also quantized), measured "
    "one after the other in one run of `benchmarks/serving.py` (each server a subprocess on 127.0.0.1, loaded with "
    "cocina's bench client). One subsection per dtype; each run replaces its own.\n"
)


def _run_blocks(section_text: str) -> dict[str, str]:
    """The per-dtype blocks of an existing section, by dtype."""
    blocks: dict[str, str] = {}
    pos = 0
    while (i := section_text.find("<!-- serving-run:", pos)) != -1:
        dtype = section_text[i + len("<!-- serving-run:") : section_text.index(" -->", i)]
        close = f"<!-- /serving-run:{dtype} -->"
        j = section_text.find(close, i)
        if j == -1:
            break
        blocks[dtype] = section_text[i : j + len(close)] + "\n"
        pos = j + len(close)
    return blocks


def _load_avg(uptime: str | None) -> str:
    return (uptime or "n/a").rpartition("load average:")[2].strip() or "n/a"


def write_docs(block: str, dtype: str, path: Path = DOCS) -> None:
    """Put this run's block into this script's section of docs/benchmarks.md (from its heading to the next
    `## `), keeping the other dtype's block; append the section when absent.

    The file is read right before writing so another benchmark's concurrent edits to other sections survive.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    end = len(lines)
    old_blocks: dict[str, str] = {}
    if start is not None:
        # The section ends at the next heading, or at another script's marker (the engine section's start
        # marker sits right above its heading and must not be swallowed).
        end = next(
            (
                j
                for j in range(start + 1, len(lines))
                if lines[j].startswith("## ") or (lines[j].startswith("<!--") and "serving-run:" not in lines[j])
            ),
            len(lines),
        )
        old_blocks = _run_blocks("".join(lines[start:end]))
    old_blocks[dtype] = block
    order = sorted(old_blocks, key=lambda d: (d != "bfloat16", d))
    section = SECTION + "\n\n" + SECTION_INTRO + "".join("\n" + old_blocks[d] for d in order)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.write_text(new, encoding="utf-8")


def _log(msg: str) -> None:
    print(f"[serving {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def _code_version() -> str | None:
    """The commit the servers ran, and whether cocina/ had uncommitted changes (others may be editing it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cocina"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + (" + uncommitted changes in cocina/" if dirty else "")) if head else None


def _machine() -> dict[str, Any]:
    cpu, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text()
        for ln in info.splitlines():
            if ln.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = ln.split(":", 1)[1].strip()
            if ln.startswith("flags"):
                flags = ln
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags.split(),
        "python": platform.python_version(),
    }


# -- main ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--levels", default="1,8,32,64", help="concurrency levels, comma-separated (default 1,8,32,64)")
    p.add_argument(
        "--requests-per-level",
        type=int,
        default=None,
        help="requests at each level (default: 2 x concurrency, at least 8)",
    )
    p.add_argument(
        "--seed-max-requests",
        type=int,
        default=8,
        help="most requests per level for (a), which serves one at a time (default 8; 4 at concurrency 1)",
    )
    p.add_argument("--skip-baselines", action="store_true", help="only cocina (and the echo overhead)")
    p.add_argument("--skip-seed", action="store_true", help="do not run (a), the seed's one-at-a-time Cog server")
    p.add_argument("--skip-llama-cpp", action="store_true", help="do not run (d), llama.cpp's llama-server")
    p.add_argument("--llama-parallel", type=int, default=32, help="llama-server's slots, -np (default 32)")
    p.add_argument("--quantize", default=None,
                   help="also serve cocina quantized (int8, int4 or both, comma-separated) next to llama-server "
                   "with the matching GGUF (Q8_0, Q4_0); (a) and (b) run the dtype only")
    p.add_argument("--baselines", action="store_true", help="run (a) and (b) even with --quick")
    p.add_argument("--skip-echo", action="store_true", help="do not measure the echo predictor's overhead")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"), help="all servers' dtype")
    p.add_argument(
        "--seed-server",
        default="cog",
        choices=("cog", "cocina"),
        help="serve (a) with Cog's own server (default) or with `cocina serve DIR --concurrency 1`",
    )
    p.add_argument("--input-len", type=int, default=32)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument(
        "--cb-num-blocks",
        type=int,
        default=64,
        help="transformers' KV blocks (its default page is 256 tokens: 64 requests of <= 256 tokens)",
    )
    p.add_argument("--echo-requests", type=int, default=500)
    p.add_argument("--request-timeout", type=float, default=600.0)
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="model, Cog install, logs (reused)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny model, levels 1,4, 4 requests, 8 output tokens, no baselines, no docs: the smoke test",
    )
    p.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    p.add_argument("--docs", type=Path, default=DOCS, help=argparse.SUPPRESS)
    p.add_argument("--render-from", type=Path, default=None, help="write the docs from a saved JSON report; no run")
    args = p.parse_args(argv)
    if args.quick:
        if "--levels" not in (argv if argv is not None else sys.argv):
            args.levels = "1,4"
        args.requests_per_level = args.requests_per_level or 4
        args.input_len, args.output_len = min(args.input_len, 8), min(args.output_len, 8)
        args.skip_baselines = args.skip_baselines or not args.baselines
        args.skip_llama_cpp = args.skip_llama_cpp or not args.baselines
        args.no_docs = True
        args.echo_requests = min(args.echo_requests, 100)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def _terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers

    signal.signal(signal.SIGTERM, _terminate)
    if args.render_from is not None:
        saved = json.loads(args.render_from.read_text())
        write_docs(render_section(saved), saved["config"]["dtype"], args.docs)
        _log(f"wrote {args.docs} from {args.render_from}")
        return 0
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    argv_shown = sys.argv[1:] if argv is None else argv
    command = " ".join([".venv/bin/python benchmarks/serving.py", *map(shlex.quote, argv_shown)]).strip()
    args.workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    uptime_before = _uptime()
    code_version = _code_version()
    _log(f"load: {uptime_before}; code: {code_version}")

    def n_for(c: int) -> int:
        return args.requests_per_level or max(8, 2 * c)

    def n_seed(c: int) -> int:
        # One prediction at a time: its throughput does not depend on the concurrency, so fewer requests do.
        return max(1, min(n_for(c), max(4, c), args.seed_max_requests))

    t_build = time.perf_counter()
    model_dir = build_model(args.workdir, args.quick)
    _log(f"model {model_dir} ({time.perf_counter() - t_build:.1f} s)")
    from cocina.bench.workload import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir))
    precisions = [args.dtype, *(q for q in (args.quantize or "").split(",") if q)]
    systems: dict[str, Any] = {}
    notes: dict[str, str] = {
        "seed": "not run (--skip-baselines).",
        "transformers": "not run (--skip-baselines).",
        "cocina": "`cocina serve --model DIR`, dtype from `COCINA_DTYPE` (and `COCINA_QUANTIZE` for the int8/int4 "
        "rows), default engine settings (KV cache 512 MiB, 64 sequences per step, prefix caching on); OpenAI chat "
        "API, `ignore_eos`, usage counts the tokens.",
    }

    if args.skip_seed and not args.skip_baselines:
        notes["seed"] = "not run (--skip-seed)."
    if not args.skip_baselines and not args.skip_seed:
        # (a) the seed's way
        proj = write_seed_project(run_dir, model_dir)
        seed_env = {"SEED_DTYPE": args.dtype, "COG_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"}
        seed_api = {"api": "cog", "prompt_field": "pregunta", "max_tokens_field": "max_new_tokens"}
        server = None
        if args.seed_server == "cog":
            try:
                target = install_cog(args.workdir)
                port = free_port()
                env = {
                    **seed_env,
                    "PORT": str(port),
                    "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
                }
                server = Server(
                    "seed-cog",
                    [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
                    env=env,
                    cwd=proj,
                    log=run_dir / "seed-cog.log",
                    port=port,
                    health="/health-check",
                )
                notes["seed"] = (
                    f"Cog's own HTTP server (`cog=={COG_VERSION}`, `python -m cog.server.http`) running a "
                    "predict.py that calls `model.generate` (greedy, `min_new_tokens = max_new_tokens`), one "
                    "prediction at a time. Cog answers a concurrent prediction with 409, so requests wait in a "
                    "client-side queue (a perfect queue in front of Cog) and that wait counts in TTFT/E2E. Cog's "
                    "server does not stream over HTTP: the output arrives with the finished prediction, so TTFT = "
                    f"E2E. Requests per level: min(the others', max(4, concurrency), {args.seed_max_requests}): "
                    "one at a time, its throughput does not depend on the concurrency; at concurrency above "
                    f"{args.seed_max_requests} its queue is therefore shorter and its latencies understated."
                )
            except Exception as exc:
                _log(f"real Cog unavailable ({exc}); falling back to cocina serve DIR --concurrency 1")
                notes["seed_fallback_reason"] = str(exc)[:300]
        if server is None:
            port = free_port()
            server = Server(
                "seed-cocina",
                [
                    *cocina_cmd(),
                    "serve",
                    str(proj),
                    "--port",
                    str(port),
                    "--concurrency",
                    "1",
                    "--data-dir",
                    str(run_dir / "seed-data"),
                ],
                env=seed_env,
                log=run_dir / "seed-cocina.log",
                port=port,
                health="/health-check",
            )
            notes["seed"] = (
                "Fallback (real Cog not used): `cocina serve DIR --concurrency 1` of a predict.py that calls "
                "`model.generate` (greedy, `min_new_tokens = max_new_tokens`), one prediction at a time; Cog API "
                f"with SSE streaming. At most {args.seed_max_requests} requests per level."
            )
        systems["seed"] = bench_server(server, seed_api, levels, n_seed, args, tokenizer, serialize=True)
        systems["seed"]["label"] = SYSTEM_LABELS["seed"]

    if not args.skip_baselines:
        # (b) transformers serve --continuous-batching
        port = free_port()
        exe = Path(sys.executable).with_name("transformers")
        cmd = [
            str(exe) if exe.exists() else "transformers",
            "serve",
            str(model_dir),
            "--continuous-batching",
            "--cb-num-blocks",
            str(args.cb_num_blocks),
            "--dtype",
            args.dtype,
            "--device",
            "cpu",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        gen_cfg = {"max_new_tokens": args.output_len, "min_new_tokens": args.output_len, "do_sample": False}
        # transformers refuses unknown body fields (ignore_eos, min_tokens) with 422: EOS is ignored through the
        # generation_config field it accepts instead.
        tf_api = {
            "api": "openai-chat",
            "model": str(model_dir),
            "ignore_eos": False,
            "extra": {"generation_config": json.dumps(gen_cfg)},
        }
        server = Server("transformers", cmd, log=run_dir / "transformers.log", port=port, health="/health")
        notes["transformers"] = (
            f"`transformers {' '.join(shlex.quote(x) for x in cmd[1:-4]).replace(str(model_dir), 'DIR')} "
            "--port PORT --log-level warning`"
            " (transformers " + _version("transformers") + "); OpenAI chat API; EOS ignored through a "
            "`generation_config` body field with `min_new_tokens = max_new_tokens`; usage counts the tokens."
        )
        systems["transformers"] = bench_server(server, tf_api, levels, n_for, args, tokenizer)
        systems["transformers"]["label"] = SYSTEM_LABELS["transformers"]

    for precision in precisions:
        quant = None if precision == args.dtype else precision
        # (d) llama.cpp's own server, on the same weights in GGUF, next to cocina at the same precision
        if not args.skip_llama_cpp:
            key = system_key("llama-server", quant)
            try:
                sys.path.insert(0, str(ROOT / "benchmarks"))
                import llama_cpp

                gguf = llama_cpp.convert(model_dir, GGUF_TYPE[precision])
                port = free_port()
                cmd = llama_cpp.server_command(gguf, port, os.cpu_count() or 2, args.llama_parallel)
                shown = " ".join(cmd[1:]).replace(str(gguf), gguf.name).replace(f"--port {port}", "--port PORT")
                notes[key] = (
                    f"llama.cpp's own `llama-server` (built from the llama-cpp-python {llama_cpp.SDIST_VERSION} "
                    f"sdist's vendor/llama.cpp), `{shown}` with "
                    "PORT for the port; the same weights converted to GGUF by its convert_hf_to_gguf.py"
                    + (" and `llama-quantize --pure`" if quant else "")
                    + "; OpenAI chat API (the GGUF carries the ChatML template), `ignore_eos`."
                )
                server = Server(key, cmd, log=run_dir / f"{key}.log", port=port, health="/health")
                systems[key] = bench_server(server, {"api": "openai-chat"}, levels, n_for, args, tokenizer)
            except Exception as exc:  # no build tools, a failed conversion: recorded, the run goes on
                systems[key] = {"status": f"failed: {type(exc).__name__}: {str(exc)[:600]}", "levels": {}}
                _log(f"{key}: {systems[key]['status']}")
            systems[key]["label"] = system_label(key)

        # (c) cocina serve --model
        key = system_key("cocina", quant)
        port = free_port()
        env = {"COCINA_DTYPE": args.dtype, "COCINA_DEVICE": "cpu"}
        if quant:
            env["COCINA_QUANTIZE"] = quant
        server = Server(
            key,
            [
                *cocina_cmd(),
                "serve",
                "--model",
                str(model_dir),
                "--port",
                str(port),
                "--data-dir",
                str(run_dir / f"{key}-data"),
            ],
            env=env,
            log=run_dir / f"{key}.log",
            port=port,
            health="/health-check",
        )
        systems[key] = bench_server(server, {"api": "openai-chat"}, levels, n_for, args, tokenizer)
        systems[key]["label"] = system_label(key)
        systems[key]["kernels"] = _kernel_line(run_dir / f"{key}.log")
        shutil.rmtree(run_dir / f"{key}-data", ignore_errors=True)

    echo: dict[str, Any] | None = None
    if not args.skip_echo:
        try:
            echo = measure_echo(run_dir, args.echo_requests, 120.0)
            _log(f"echo: added {echo['added_p50_ms']} ms at p50")
        except Exception as exc:
            echo = {"error": f"{type(exc).__name__}: {str(exc)[:400]}", "pass": None}
            _log(f"echo: {echo['error']}")

    report: dict[str, Any] = {
        "benchmark": "serving",
        "command": command,
        "code": code_version,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**_machine(), "uptime_before": uptime_before, "uptime_after": _uptime()},
        "config": {
            "model": "tiny GPT-2 (64 hidden, 2 layers)"
            if args.quick
            else "GPT-2-small shape (124M parameters, "
            "vocabulary 50257, a tokenizer trained here whose every id decodes to text)",
            "model_dir": str(model_dir),
            "dtype": args.dtype,
            "levels": levels,
            "input_len": args.input_len,
            "output_len": args.output_len,
            "requests_per_level": {str(c): n_for(c) for c in levels},
            "seed_requests_per_level": {str(c): n_seed(c) for c in levels},
            "requests_rule": (
                f"{args.requests_per_level}" if args.requests_per_level else "2 x concurrency, at least 8"
            )
            + f"; (a): min(that, max(4, concurrency), {args.seed_max_requests})",
            "quick": args.quick,
        },
        "notes": notes,
        "systems": systems,
        "echo": echo,
    }
    report["targets"] = targets(systems, echo)
    report["versions"] = {
        "transformers": _version("transformers"),
        "torch": _version("torch"),
        "cog": COG_VERSION if not args.skip_baselines and args.seed_server == "cog" else None,
    }
    print(json.dumps(report, indent=2))
    if not args.no_docs:
        write_docs(render_section(report), args.dtype, args.docs)
        _log(f"wrote {args.docs}")
    ok = systems["cocina"]["status"] == "ok" and all(
        m["completed"] == m["requests"] for m in systems["cocina"]["levels"].values()
    )
    return 0 if ok else 1


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
