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


def register(app: typer.Typer) -> None:
    """Add `build` to the `cocina` command."""
    app.command("build")(build_command)
