"""`cocina build --target edge|onprem|cloud`: deployable artifacts for a project.

Module-level imports are light (typer only): `cocina --help` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def build_command(
    project: Annotated[
        Path, typer.Argument(help="The project directory (cog.yaml or cocina.yaml)", show_default=False)
    ] = Path("."),
    target: Annotated[str, typer.Option("--target", "-t", help="edge, onprem or cloud")] = "cloud",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (must not exist or be empty); default: build/TARGET"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="owner/name of the model (default: local/<directory>)")] = None,
    image: Annotated[str, typer.Option(help="cloud: the image the Deployment runs")] = (
        "registry.example.com/cocina/model:latest"
    ),
    replicas_min: Annotated[int, typer.Option("--min-replicas", help="cloud: autoscaling floor")] = 4,
    replicas_max: Annotated[int, typer.Option("--max-replicas", help="cloud: autoscaling ceiling")] = 16,
    prometheus_url: Annotated[
        str, typer.Option("--prometheus-url", help="cloud: the Prometheus KEDA asks for the queue depth")
    ] = "http://prometheus-operated.monitoring.svc:9090",
    namespace: Annotated[str | None, typer.Option(help="cloud: the Kubernetes namespace")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads per replica (OMP_NUM_THREADS)")] = 2,
    prefix: Annotated[str, typer.Option(help="onprem: where install.sh installs")] = "/opt/cocina",
    gguf: Annotated[
        str | None, typer.Option(help="edge: also export the language model as GGUF: q8_0, f16 or q8_0,f16")
    ] = None,
) -> None:
    """Build deployable artifacts for a project: an offline bundle (edge), a systemd unit and a compose stack
    with PostgreSQL, Prometheus and Grafana (onprem), or images and Kubernetes manifests (cloud)."""
    from cocina.deploy.build import Target, build
    from cocina.deploy.cloud import CloudOptions
    from cocina.deploy.edge import EdgeOptions
    from cocina.deploy.onprem import OnpremOptions
    from cocina.deploy.source import BuildError, project_source

    try:
        chosen = Target(target)
    except ValueError:
        typer.echo(f"cocina build: --target {target}: choose edge, onprem or cloud", err=True)
        raise typer.Exit(2) from None
    try:
        cloud = CloudOptions(
            image=image,
            replicas_min=replicas_min,
            replicas_max=replicas_max,
            prometheus_url=prometheus_url,
            namespace=namespace,
            threads=threads,
        )
        quants = tuple(q.strip().lower() for q in gguf.split(",") if q.strip()) if gguf else ()
        unknown = [q for q in quants if q not in ("q8_0", "f16")]
        if unknown:
            raise ValueError(f"--gguf {unknown[0]}: choose q8_0 or f16")
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
    except ValueError as exc:
        typer.echo(f"cocina build: {exc}", err=True)
        raise typer.Exit(2) from None
    destination = out if out is not None else project / "build" / chosen.value
    try:
        source = project_source(project, name=name)
        result = build(
            chosen,
            source,
            destination,
            cloud=cloud,
            onprem=OnpremOptions(prefix=prefix, threads=threads),
            edge=EdgeOptions(gguf=quants),
        )
    except BuildError as exc:
        typer.echo(f"cocina build: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{chosen.value}: {result.out} ({result.files} files, {result.size_bytes / 2**20:.1f} MiB) "
        f"for {source.name} version {source.version[:12]}"
    )


def ray_command(
    targets: Annotated[
        list[str] | None, typer.Argument(help="Project directories (or NAME=DIR), as for `cocina serve`")
    ] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="A language model to serve; repeatable")] = None,
    name: Annotated[str | None, typer.Option(help="owner/name of the one model served")] = None,
    store: Annotated[str, typer.Option(help="postgresql://... shared by every replica")] = "",
    replicas: Annotated[int | None, typer.Option(help="A fixed number of replicas")] = None,
    min_replicas: Annotated[int, typer.Option("--min-replicas", help="Autoscaling floor")] = 1,
    max_replicas: Annotated[int, typer.Option("--max-replicas", help="Autoscaling ceiling")] = 1,
    target: Annotated[
        int | None,
        typer.Option(
            help="Predictions (queued + running) per replica before another is added; default: the "
            "engine's batch capacity, or the predictor's concurrency"
        ),
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads per replica (OMP_NUM_THREADS)")] = 1,
    num_cpus: Annotated[float, typer.Option("--num-cpus", help="Ray CPUs each replica takes")] = 1.0,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Shared directory for files (a network mount)")] = Path(
        ".cocina"
    ),
    host: Annotated[str, typer.Option(help="Ray's HTTP proxy address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Ray's HTTP proxy port")] = 8000,
    address: Annotated[str | None, typer.Option(help="Join this Ray cluster (`auto`) instead of starting one")] = None,
    lease: Annotated[float, typer.Option(help="Seconds a replica's claim on a prediction lasts unrenewed")] = 20.0,
    max_queue: Annotated[int, typer.Option(help="Predictions that may wait per model in a replica; beyond, 429")] = 64,
    api_token_env: Annotated[str, typer.Option(help="Environment variable with the bearer token")] = "COCINA_API_TOKEN",
) -> None:
    """Serve models as N cocina replicas on Ray Serve, sharing a PostgreSQL store (autoscaled on queue depth)."""
    import os

    from cocina.deploy.source import BuildError

    try:
        from cocina.deploy.ray_serve import ReplicaSettings, ScaleSettings, run
    except ImportError:
        typer.echo("cocina deploy ray: Ray Serve is not installed: pip install 'cocina[ray]'", err=True)
        raise typer.Exit(1) from None
    from cocina.server.cli import build_specs
    from cocina.serving.spec import SpecError

    target_list, model_list = list(targets or []), list(model or [])
    if not target_list and not model_list:
        target_list = ["."]
    try:
        specs = build_specs(target_list, model_list, name=name, served_model_names=[], engine_options={}, environ={})
    except SpecError as exc:
        typer.echo(f"cocina deploy ray: {exc}", err=True)
        raise typer.Exit(1) from None
    if target is None:
        first = specs[0]
        capacity = int((first.engine.config.get("max_num_seqs") if first.engine else 0) or 0)
        target = capacity if first.language_model and capacity else max(1, first.project.concurrency_max)
    low, high = (replicas, replicas) if replicas is not None else (min_replicas, max_replicas)
    settings = ReplicaSettings(
        targets=tuple(target_list),
        models=tuple(model_list),
        name=name,
        store=store,
        data_dir=str(data_dir.resolve()),
        public_url=f"http://{host}:{port}",
        lease_s=lease,
        max_queue=max_queue,
        threads=threads,
        api_token=os.environ.get(api_token_env) or None,
    )
    try:
        run(settings, ScaleSettings(low, high, target, num_cpus), host=host, port=port, address=address)
    except BuildError as exc:
        typer.echo(f"cocina deploy ray: {exc}", err=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    """Add `build` and `deploy ray` to the `cocina` command."""
    app.command("build")(build_command)
    deploy = typer.Typer(help="Run cocina on a distributed engine.", no_args_is_help=True)
    deploy.command("ray")(ray_command)
    app.add_typer(deploy, name="deploy")
