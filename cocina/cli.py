"""The `cocina` command line.

Each feature module owns its commands and adds them with a `register(app)` function, so this file stays a table of
contents. Heavy imports (torch, transformers, uvicorn) happen inside the commands, never at import time, so that
`cocina --help` is instant.
"""

from __future__ import annotations

import importlib

import typer

# Modules that provide a `register(app: typer.Typer) -> None` function.
_COMMAND_MODULES = (
    "cocina.commands",  # init, predict, train, schema
    "cocina.doctor",  # doctor
    "cocina.server.cli",  # serve
    "cocina.hubctl.cli",  # push, models, versions, deployments
    "cocina.bench.cli",  # bench
    "cocina.cost.cli",  # cost
    "cocina.guard.keys_cli",  # keys
    "cocina.guard.audit_cli",  # audit
    "cocina.engine.cli",  # kernels build, kernels info
    "cocina.rag.cli",  # index
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="cocina",
        help="A self-hosted Replicate: run Cog predictors and serve language models on your own machines.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A feature module that does not exist yet is skipped; a missing dependency inside one is a real error.
            if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
                continue
            raise
        module.register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
