"""`cocina serve`: a predictor project (or a language model) over the Cog, Replicate and OpenAI APIs.

Module-level imports are light (typer only) so that `cocina --help` stays instant; the server, the worker and
the engine are imported when the command runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cocina.engine_options import (
    ENV_TO_ENGINE_KEY,
    DeviceOption,
    DtypeOption,
    KvCacheOption,
    MaxModelLenOption,
    MaxNumSeqsOption,
    QuantizeOption,
    engine_env,
)

if TYPE_CHECKING:
    from cocina.server.adapters import EngineHandle, EngineLoader

_SKIP_DIRS = {".git", ".cocina", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".ruff_cache"}


def project_version_id(root: Path) -> str:
    """The model version id: a SHA-256 over the project's files (relative paths and contents), so editing
    predict.py or cog.yaml gives a new version and an unchanged project keeps its id across restarts."""
    h = hashlib.sha256()
    if root.is_file():
        h.update(root.read_bytes())
        return h.hexdigest()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix in (".pyc",) or path.stat().st_size > 64 * 2**20:
                # Large files (weights) are hashed by name and size: reading gigabytes at start is too slow.
                h.update(f"{path.relative_to(root)}:{path.stat().st_size}\n".encode())
                continue
            h.update(f"{path.relative_to(root)}\n".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def serve_command(
    directory: Annotated[Path, typer.Argument(help="The project directory (cog.yaml or cocina.yaml)")] = Path(
        "."
    ),
    model: Annotated[
        str | None,
        typer.Option("--model", help="Serve this language model (id or path) instead of a project"),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 5000,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where the prediction store and files live")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The model's owner/name in the Replicate API")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Predictions run at once (default: what the predictor supports)")
    ] = None,
    max_queue: Annotated[int, typer.Option(help="Predictions that may wait; beyond, 429")] = 64,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB; beyond, 413")] = 16.0,
    timeout: Annotated[float | None, typer.Option(help="Per-prediction deadline in seconds")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens one OpenAI request may ask for")] = 4096,
    drain_grace: Annotated[
        float, typer.Option(help="Seconds running predictions get to finish on shutdown")
    ] = 30.0,
    retention: Annotated[
        float | None, typer.Option(help="Remove inputs/outputs of predictions older than this many seconds")
    ] = None,
    api_token_env: Annotated[
        str,
        typer.Option(help="Environment variable holding the bearer token required on /v1 (unset: no auth)"),
    ] = "COCINA_API_TOKEN",
    dtype: DtypeOption = None,
    quantize: QuantizeOption = None,
    device: DeviceOption = None,
    kv_cache: KvCacheOption = None,
    max_num_seqs: MaxNumSeqsOption = None,
    max_model_len: MaxModelLenOption = None,
) -> None:
    """Serve a Cog predictor project, or a language model with --model, over HTTP.

    The engine options (--dtype, --quantize, --kv-cache, ...) apply to --model and to projects on the built-in LLM
    predictor; they win over `cocina: engine:` in cocina.yaml and over COCINA_* variables."""
    try:
        flags_env = engine_env(
            dtype=dtype,
            quantize=quantize,
            device=device,
            kv_cache=kv_cache,
            max_num_seqs=max_num_seqs,
            max_model_len=max_model_len,
        )
    except ValueError as exc:
        typer.echo(f"cocina serve: {exc}", err=True)
        raise typer.Exit(2) from None
    from cocina.server.backend import PredictorBackend
    from cocina.server.serve import build_server
    from cocina.server.settings import ServerSettings

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from cocina.config import ConfigError

    generator = None
    backend: PredictorBackend
    try:
        if model is not None:
            # The engine loads in the background once the server listens (see `_engine_backends`).
            model_name = name or (f"local/{Path(model).name}" if Path(model).exists() else model)
            generator, backend = engine_backends(model, model_name, {**os.environ, **flags_env}, {}, concurrency)
            source = Path(model) if Path(model).exists() else None
            version_id = project_version_id(source) if source else hashlib.sha256(model.encode()).hexdigest()
            root = Path(".")
        else:
            from cocina.config import load_project

            root = directory.resolve()
            project = load_project(root)
            model_name = name or f"local/{root.name}"
            version_id = project_version_id(root)
            generator, backend = _project_backends(project, model_name, concurrency, flags_env)
    except (ConfigError, FileNotFoundError) as exc:
        # A broken cocina.yaml or a bad engine option is the user's to fix: say what, without a traceback.
        # (A model that cannot be loaded is a failed setup instead: the server reports it on /health-check.)
        typer.echo(f"cocina serve: {exc}", err=True)
        raise typer.Exit(1) from None
    owner, _, short = model_name.rpartition("/") if "/" in model_name else ("local", "", model_name)
    settings = ServerSettings(
        host=host,
        port=port,
        data_dir=data_dir or (root / ".cocina"),
        model_owner=owner or "local",
        model_name=short,
        version_id=version_id,
        concurrency=concurrency,
        max_queue=max_queue,
        max_body_bytes=int(max_body_mb * 2**20),
        prediction_timeout_s=timeout,
        max_tokens_limit=max_tokens,
        drain_grace_s=drain_grace,
        retention_s=retention,
        api_token=os.environ.get(api_token_env) or None,
    )
    build_server(settings, backend, generator).run()


def _project_backends(
    project: Any, model_name: str, concurrency: int | None, flags_env: dict[str, str]
) -> tuple[Any, Any]:
    """(generator, backend) for a project directory: the built-in LLM predictor in-process on one engine
    (OpenAI surface included), or the worker child for user predictors (see `cocina.server.project`)."""
    from cocina.config import ConfigError
    from cocina.server.project import builtin_llm, resolve_project_model

    llm = builtin_llm(project)
    if llm is None:
        from cocina.server.adapters import RunnerBackend
        from cocina.worker.runner import Runner

        return None, RunnerBackend(Runner(project, max_concurrency=concurrency, env_overrides=flags_env))
    # LLMPredictor.model, read without importing cocina.llm (which imports torch: seconds before listening).
    model = resolve_project_model(project, llm, _LLM_DEFAULT_MODEL)
    logging.getLogger("cocina.server").info(
        "serving %s in-process on cocina's engine (%s): model %s", project.predict_ref, llm.reason, model
    )
    # COCINA_* engine options as the worker child would see them: the project's `environment:` over ours, and the
    # command line's flags over both and over the `cocina: engine:` keys they stand for.
    env = {**os.environ, **project.environment, **flags_env}
    options = {k: v for k, v in project.engine.items() if k not in {ENV_TO_ENGINE_KEY[e] for e in flags_env}}
    try:
        return engine_backends(model, model_name, env, options, concurrency)
    except ConfigError as exc:
        raise ConfigError(f"invalid `cocina: engine:` option in {project.config_file}: {exc.message}") from None


_LLM_DEFAULT_MODEL = "cocina/demo"  # `cocina.llm.LLMPredictor.model`; tests/server checks they agree


def engine_backends(
    model: str,
    model_name: str,
    env: dict[str, str],
    options: dict[str, Any],
    concurrency: int | None,
) -> tuple[Any, Any]:
    """(generator, backend) on one engine that loads in the background once the server listens.

    `options` (`cocina: engine:`) are checked here against `EngineConfig` (torch-free), so a typo stops the
    command at once with `ConfigError`; everything that needs the model — finding it, torch, the weights —
    happens in the backend's setup, where a failure is SETUP_FAILED with its message on `/health-check`.
    """
    from cocina.server.adapters import EngineGenerator, EngineHandle, InProcessLLMBackend

    handle = EngineHandle(loader=engine_loader(model, env, options))
    return EngineGenerator(handle, model_name), InProcessLLMBackend(handle, concurrency=concurrency)


def engine_loader(model: str, env: dict[str, str], options: dict[str, Any]) -> EngineLoader:
    """The blocking load of `model` for an `EngineHandle` (run in its thread), printing progress: the model's
    path, dtype and device, then the engine's memory report (printed by `load_engine`), then the time taken.
    Raises `ConfigError` at once for engine options `EngineConfig` refuses."""
    import dataclasses

    from cocina.config import ConfigError
    from cocina.engine.config import EngineConfig

    try:
        dataclasses.replace(EngineConfig(), **options)
    except (TypeError, ValueError) as exc:  # an option EngineConfig does not have, or a bad value
        raise ConfigError(str(exc)) from None

    def load(handle: EngineHandle) -> Any:
        from cocina.models.resolve import resolve_model

        path = resolve_model(model)  # a missing model fails here, before torch is imported
        from cocina.llm import engine_config_from_env, load_engine  # imports torch: seconds

        config = dataclasses.replace(engine_config_from_env(env), **options)
        quantize = f", quantize {config.quantize}" if config.quantize else ""
        handle.progress(f"loading model {path} (dtype {config.dtype}, device {config.device}{quantize})")
        started = time.monotonic()
        aengine = load_engine(path, config=config)  # prints "cocina engine: <memory report>" itself
        handle.note(f"cocina engine: {aengine.engine.memory_report().describe()}")
        handle.progress(f"model loaded in {time.monotonic() - started:.1f} s")
        return aengine

    return load


def register(app: typer.Typer) -> None:
    """Add `serve` to the `cocina` command."""
    app.command("serve")(serve_command)
