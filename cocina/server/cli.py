"""`cocina serve`: Cog projects and language models, several at once, over the Cog, Replicate and OpenAI APIs.

Module-level imports are light (typer only) so that `cocina --help` stays instant; the server, the worker and
the engine are imported when the command runs.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cocina.engine_options import (
    DeviceOption,
    DtypeOption,
    KvCacheOption,
    MaxModelLenOption,
    MaxNumSeqsOption,
    QuantizeOption,
    engine_overrides,
    parse_bytes,
)

if TYPE_CHECKING:
    from cocina.rag import RagConfig
    from cocina.serving.spec import ModelSpec

_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?)=(?P<value>.+)$")


def _split_named(value: str) -> tuple[str | None, str]:
    """`NAME=VALUE` -> (NAME, VALUE); a plain VALUE -> (None, VALUE)."""
    m = _NAMED.match(value)
    return (m.group("name"), m.group("value")) if m else (None, value)


def build_specs(
    targets: list[str],
    models: list[str],
    *,
    name: str | None,
    served_model_names: list[str],
    engine_options: dict[str, object],
    environ: dict[str, str],
) -> list[ModelSpec]:
    """The models `cocina serve` was asked for, in order: project directories (or directories of projects,
    `NAME=DIR` to name one), then `--model` values (`NAME=ID_OR_PATH`, or named by `--served-model-name`)."""
    from cocina.serving.spec import SpecError, is_project, model_spec, project_spec, projects_in

    if served_model_names and len(served_model_names) != len(models):
        raise SpecError(
            f"--served-model-name was given {len(served_model_names)} times for {len(models)} --model values; "
            "give one name per --model, in the same order (or write --model NAME=PATH)"
        )
    if name is not None and len(targets) + len(models) != 1:
        raise SpecError("--name names a single model; with several, write NAME=PATH for each")
    specs: list[ModelSpec] = []
    for target in targets:
        given, path_text = _split_named(target)
        path = Path(path_text)
        if not path.is_dir():
            raise SpecError(f"{path_text}: no such directory (a Cog project, or a directory of projects)")
        if is_project(path) or given is not None:
            specs.append(project_spec(path, name=given or name, engine_options=engine_options, environ=environ))
            continue
        inside = projects_in(path)
        if not inside:
            raise SpecError(
                f"{path}: neither a project (no cocina.yaml or cog.yaml) nor a directory of projects; "
                "create one with `cocina init`"
            )
        specs += [project_spec(p, engine_options=engine_options, environ=environ) for p in inside]
    for i, value in enumerate(models):
        given, model = _split_named(value)
        chosen = given or (served_model_names[i] if served_model_names else None) or (name if not targets else None)
        specs.append(model_spec(model, name=chosen, engine_options=engine_options, environ=environ))
    return specs


def parse_rag_option(value: str) -> tuple[str | None, RagConfig]:
    """`--rag [MODEL=]INDEX[@VERSION][:key=value,...]` -> (model or None for all, options); raises `SpecError`."""
    from cocina.rag import RagConfig
    from cocina.serving.spec import SpecError

    target, spec = _split_named(value)
    try:
        return target, RagConfig.from_option(spec, "--rag")
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def apply_rag_options(specs: list[ModelSpec], values: list[str]) -> list[ModelSpec]:
    """Each spec with the RAG options `--rag` gives it (MODEL=INDEX for one, INDEX for every language model)."""
    from cocina.serving.spec import SpecError

    names = {s.name for s in specs}
    out = list(specs)
    for value in values:
        target, config = parse_rag_option(value)
        if target is not None and target not in names:
            raise SpecError(f"--rag {value}: {target} is not one of the models served ({', '.join(sorted(names))})")
        out = [s.replace(rag=config) if (s.name == target or (target is None and s.language_model)) else s for s in out]
    return out


def parse_embedding_models(values: list[str]) -> dict[str, str]:
    """`--embedding-model NAME=DIR` (or a built-in name) -> {name: reference}."""
    out: dict[str, str] = {}
    for value in values:
        name, ref = _split_named(value)
        out[name or ref] = ref
    return out


def serve_command(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="Project directories (cog.yaml or cocina.yaml), directories of projects, or NAME=DIR; "
            "default: the current directory, unless --model is given",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="A language model to serve (id or path, or NAME=ID_OR_PATH); repeatable"),
    ] = None,
    served_model_name: Annotated[
        list[str] | None,
        typer.Option("--served-model-name", help="The name of each --model, in order (as vLLM's option)"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="owner/name of the one model served")] = None,
    default: Annotated[
        str | None, typer.Option("--default", help="The model Cog's root API serves (default: the first)")
    ] = None,
    warm: Annotated[
        list[str] | None,
        typer.Option(help="Keep this model loaded (repeatable; `all` for every one); the default model always is"),
    ] = None,
    max_loaded: Annotated[
        int | None, typer.Option("--max-loaded", help="Models loaded at once; the least recently used idle one goes")
    ] = None,
    memory_budget: Annotated[
        str | None,
        typer.Option("--memory-budget", help="Resident memory for all models' processes, e.g. 8G"),
    ] = None,
    load_timeout: Annotated[
        float, typer.Option("--load-timeout", help="Seconds a request waits for its model to load")
    ] = 300.0,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 5000,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="The store, files and hub (default: $COCINA_HOME or ~/.cocina)"),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Predictions one model runs at once (default: what it supports)")
    ] = None,
    max_queue: Annotated[int, typer.Option(help="Predictions that may wait per model; beyond, 429")] = 64,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB; beyond, 413")] = 16.0,
    timeout: Annotated[float | None, typer.Option(help="Per-prediction deadline in seconds")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens one OpenAI request may ask for")] = 4096,
    drain_grace: Annotated[float, typer.Option(help="Seconds running predictions get to finish on shutdown")] = 30.0,
    retention: Annotated[
        float | None, typer.Option(help="Remove inputs/outputs of predictions older than this many seconds")
    ] = None,
    lease: Annotated[
        float, typer.Option(help="Seconds a server's claim on a prediction lasts unrenewed (then another takes it)")
    ] = 20.0,
    api_token_env: Annotated[
        str, typer.Option(help="Environment variable holding the bearer token every route requires (unset: none)")
    ] = "COCINA_API_TOKEN",
    find_links: Annotated[
        list[str] | None, typer.Option("--find-links", help="A local wheelhouse for pushed versions' environments")
    ] = None,
    no_index: Annotated[bool, typer.Option("--no-index", help="Build environments from --find-links only")] = False,
    public_metrics: Annotated[
        bool, typer.Option("--public-metrics", help="/metrics answers without the token")
    ] = False,
    upload_url: Annotated[
        str | None,
        typer.Option(
            "--upload-url",
            help="PUT file outputs under this URL (as `cog serve --upload-url`); the output is where they went",
        ),
    ] = None,
    rag: Annotated[
        list[str] | None,
        typer.Option(
            "--rag",
            help="Answer from an index: INDEX (every language model) or MODEL=INDEX, optionally "
            "INDEX:top_k=4,min_score=0.3,rewrite=true (docs/rag.md); repeatable",
        ),
    ] = None,
    embedding_model: Annotated[
        list[str] | None,
        typer.Option(
            "--embedding-model",
            help="An embedding model for /v1/embeddings: NAME=DIR (a sentence-transformers directory) or a built-in "
            "name; repeatable (multilingual-e5-small is always there)",
        ),
    ] = None,
    guard_file: Annotated[
        Path | None,
        typer.Option("--guard", help="The guard's file: scanners, privacy, disclosure, audit, URLs (docs/guard.md)"),
    ] = None,
    no_guard: Annotated[
        bool, typer.Option("--no-guard", help="No guard at all: no API keys, scanners, disclosure or audit log")
    ] = False,
    allow_private_urls: Annotated[
        bool,
        typer.Option("--allow-private-urls", help="Path inputs may be URLs of loopback and private addresses"),
    ] = False,
    dtype: DtypeOption = None,
    quantize: QuantizeOption = None,
    device: DeviceOption = None,
    kv_cache: KvCacheOption = None,
    max_num_seqs: MaxNumSeqsOption = None,
    max_model_len: MaxModelLenOption = None,
) -> None:
    """Serve Cog projects, language models and the hub's pushed models (each in its own process) over HTTP.

    With no target and no --model it serves the project in the current directory, if there is one, and the hub
    of the data directory (--data-dir, default $COCINA_HOME or ~/.cocina), to which `cocina push` adds versions.
    The engine options (--dtype, --quantize, --kv-cache, ...) apply to every language model; they win over
    `cocina: engine:` in cocina.yaml and over COCINA_* variables."""
    try:
        options = engine_overrides(
            dtype=dtype,
            quantize=quantize,
            device=device,
            kv_cache=kv_cache,
            max_num_seqs=max_num_seqs,
            max_model_len=max_model_len,
        )
        budget = parse_bytes(memory_budget) if memory_budget is not None else None
        if upload_url is not None:
            _check_upload_url(upload_url)
    except ValueError as exc:
        typer.echo(f"cocina serve: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from cocina.config import ConfigError, default_data_dir
    from cocina.guard import Guard, GuardConfig, GuardConfigError, load_guard_config
    from cocina.hub import Hub
    from cocina.hub.envs import EnvironmentBuilder, EnvironmentBuildError, environment_spec
    from cocina.server.config import ServerConfig
    from cocina.server.serve import build_server
    from cocina.serving import Serving, ServingConfig
    from cocina.serving.spec import SpecError, check_unique, is_project
    from cocina.store import SQLiteStore, StoreError

    target_list = list(targets or [])
    model_list = list(model or [])
    if not target_list and not model_list and is_project(Path(".")):
        target_list = ["."]
    data_dir = data_dir or default_data_dir()
    try:
        # What can be checked without the data directory first: a broken command touches nothing on disk.
        specs = build_specs(
            target_list,
            model_list,
            name=name,
            served_model_names=list(served_model_name or []),
            engine_options=options,
            environ=dict(os.environ),
        )
        check_unique(specs)
    except (ConfigError, SpecError) as exc:
        # A broken cocina.yaml, a bad engine option, a clash of names: the user's to fix, said without a traceback.
        # (A model that cannot be loaded is a failed setup instead: the server reports it on /health-check.)
        typer.echo(f"cocina serve: {exc}", err=True)
        raise typer.Exit(1) from None
    guard_config: GuardConfig | None = None
    if not no_guard:
        try:
            guard_config = load_guard_config(guard_file) if guard_file is not None else GuardConfig()
        except GuardConfigError as exc:
            typer.echo(f"cocina serve: {exc}", err=True)
            raise typer.Exit(1) from None
    try:
        store = SQLiteStore(data_dir / "predictions.db")
    except StoreError as exc:
        typer.echo(f"cocina serve: {exc}", err=True)
        raise typer.Exit(1) from None
    builder = EnvironmentBuilder(data_dir / "hub" / "envs", find_links=tuple(find_links or ()), no_index=no_index)
    try:
        # Each project's requirements, installed where the server lacks them (as `cocina predict` and a push do).
        for i, spec in enumerate(specs):
            environment = builder.ensure(environment_spec(spec.project), lambda line: typer.echo(line, err=True))
            if environment.path is not None:
                specs[i] = spec.replace(python=environment.python)
    except EnvironmentBuildError as exc:
        store.close()
        typer.echo(f"cocina serve: {exc}", err=True)
        raise typer.Exit(1) from None
    hub = Hub(store, data_dir / "hub", builder=builder, engine_options=options, environ=dict(os.environ))
    try:
        names = [s.name for s in specs]
        hub_names = [m.name for m in hub.list_models() if m.name not in names and hub.find(m.name, None)]
        every = names + hub_names
        if default is not None and default not in every:
            raise SpecError(f"--default {default}: not one of the models served ({', '.join(every)})")
        chosen_default = default or (every[0] if every else None)
        warm_names = set(warm or [])
        unknown = warm_names - {*every, "all"}
        if unknown:
            raise SpecError(f"--warm {sorted(unknown)[0]}: not one of the models served ({', '.join(every)})")
        # Hub models are served on demand; those asked to be warm (and Cog's default) are loaded at start.
        for hub_name in hub_names:
            if hub_name == chosen_default or hub_name in warm_names or "all" in warm_names:
                hub_spec = hub.find(hub_name, None)
                assert hub_spec is not None
                specs.append(hub_spec)
        specs = [s.replace(warm=s.name == chosen_default or s.name in warm_names or "all" in warm_names) for s in specs]
        specs = apply_rag_options(specs, rag or [])
        embedding_models = parse_embedding_models(embedding_model or [])
    except (ConfigError, SpecError) as exc:
        store.close()
        typer.echo(f"cocina serve: {exc}", err=True)
        raise typer.Exit(1) from None
    serving_config = ServingConfig(
        data_dir=data_dir,
        public_url=f"http://{host}:{port}",
        concurrency=concurrency,
        max_queue=max_queue,
        prediction_timeout_s=timeout,
        max_tokens_limit=max_tokens,
        drain_grace_s=drain_grace,
        retention_s=retention,
        lease_s=lease,
        load_timeout_s=load_timeout,
        max_loaded=max_loaded,
        memory_budget_bytes=budget,
        upload_url=upload_url,
        embedding_models=embedding_models,
        allow_private_urls=allow_private_urls or bool(guard_config and guard_config.allow_private_urls),
        url_allow_hosts=guard_config.url_allow_hosts if guard_config else (),
    )
    server_config = ServerConfig(
        host=host,
        port=port,
        max_body_bytes=int(max_body_mb * 2**20),
        api_token=os.environ.get(api_token_env) or None,
        public_metrics=public_metrics,
        drain_grace_s=drain_grace,
    )
    log = logging.getLogger("cocina.server")
    for spec in specs:
        kind = "language model" if spec.language_model else "predictor"
        extra = " (default; Cog's root API)" if spec.name == chosen_default else ""
        log.info("serving %s: %s from %s%s", spec.name, kind, spec.source, extra)
    if hub_names:
        log.info("the hub of %s: %s", data_dir, ", ".join(hub_names))
    if not specs and not hub_names:
        log.info("no model yet: push one with `cocina push http://%s:%d/owner/name`", host, port)
    guard = Guard(guard_config, data_dir) if guard_config is not None else None
    serving = Serving(serving_config, specs, store=store, default=chosen_default, gate=guard, catalog=hub)
    try:
        build_server(serving, server_config, hub).run()
    finally:
        store.close()


def _check_upload_url(url: str) -> None:
    """`--upload-url` must be an http(s) URL with a host (ValueError otherwise)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--upload-url {url}: not an http(s) URL (e.g. https://uploads.example.com/outputs/)")


def register(app: typer.Typer) -> None:
    """Add `serve` to the `cocina` command."""
    app.command("serve")(serve_command)
