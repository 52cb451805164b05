"""`cocina init` and `cocina predict`.

Only typer is imported at module level: the runner, rich and the SDK are imported inside the commands so that
`cocina --help` stays instant. Errors the user can fix end the command with one line on stderr and a non-zero
status (2 for bad input, 1 for a project, setup or predictor failure, 130 when canceled with Ctrl-C); the full
traceback and setup logs are shown with `--debug`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cocina.engine_options import (
    DeviceOption,
    DtypeOption,
    KvCacheOption,
    MaxModelLenOption,
    MaxNumSeqsOption,
    QuantizeOption,
    engine_env,
)

if TYPE_CHECKING:
    from rich.console import Console

    from cocina.worker.events import OutputKind
    from cocina.worker.runner import Runner

__all__ = ["init_project", "register"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELED = 130
DEFAULT_MODEL = "cocina/demo"
FILE_MARKER = "__cocina_file__"  # cocina.sdk.schema.FILE_MARKER; repeated here to keep this import light


def register(app: typer.Typer) -> None:
    """Add `init` and `predict` to the `cocina` command."""
    app.command("init")(init_command)
    app.command("predict")(predict_command)


# --- cocina init --------------------------------------------------------------------------------------------


def init_project(
    directory: Path, *, template: str = "llm", model: str | None = None, force: bool = False
) -> tuple[list[Path], list[Path]]:
    """Write the template's files into `directory`; returns (written, skipped because they exist)."""
    from cocina.templates import template_files

    model_value = model or DEFAULT_MODEL
    if model and Path(model).expanduser().exists():
        # A local directory is written as an absolute path so the project works from any working directory.
        model_value = str(Path(model).expanduser().resolve())
    files = template_files(template, {"model": model_value})
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    skipped: list[Path] = []
    for name, text in files.items():
        path = directory / name
        if path.exists() and not force:
            skipped.append(path)
            continue
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written, skipped


def init_command(
    directory: Annotated[Path, typer.Argument(help="Project folder (created if missing).")] = Path("."),
    template: Annotated[
        str, typer.Option("--template", "-t", help="llm (a language model) or blank.")
    ] = "llm",
    model: Annotated[
        str | None,
        typer.Option(
            help="For the llm template: a local model folder or a Hugging Face id (default: the demo)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")] = False,
) -> None:
    """Start a predictor project: cocina.yaml, predict.py, requirements.txt and .cocinaignore."""
    err = _console()
    if template not in ("llm", "blank"):
        err.print(f"[red]error:[/] unknown template {template!r}; choose llm or blank")
        raise typer.Exit(EXIT_BAD_INPUT)
    if model and template != "llm":
        err.print("[red]error:[/] --model only applies to the llm template")
        raise typer.Exit(EXIT_BAD_INPUT)
    written, skipped = init_project(directory, template=template, model=model, force=force)
    for path in written:
        err.print(f"wrote {path}")
    for path in skipped:
        err.print(f"[yellow]kept[/] {path} (it exists; --force overwrites it)")
    if written:
        where = "" if directory.resolve() == Path.cwd() else f" {directory}"
        example = (
            'pregunta="Dime un producto de limpieza que blanquee la ropa"'
            if template == "llm"
            else "text=hola"
        )
        err.print(f"Next: cocina predict{where} -i {example}")


# --- cocina predict -----------------------------------------------------------------------------------------


class _Stop(Exception):
    """Ends `cocina predict` with one line on stderr and an exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def predict_command(
    directory: Annotated[Path, typer.Argument(help="Project folder (cocina.yaml or cog.yaml).")] = Path("."),
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="An input as name=value; name=@path for a file. Repeatable."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the finished prediction as JSON (Cog's response).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show setup logs and full tracebacks.")] = False,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Where file outputs are written (default: .).")
    ] = None,
    dtype: DtypeOption = None,
    quantize: QuantizeOption = None,
    device: DeviceOption = None,
    kv_cache: KvCacheOption = None,
    max_num_seqs: MaxNumSeqsOption = None,
    max_model_len: MaxModelLenOption = None,
) -> None:
    """Run one prediction: start the predictor, stream its output to stdout, write file outputs to disk.

    The engine options (--dtype, --quantize, ...) reach the built-in LLM predictor (`cocina init --template llm`
    projects on `cocina.llm`) as COCINA_* variables; other predictors may read them or not."""
    out = output_dir or Path(".")
    try:
        env = engine_env(
            dtype=dtype,
            quantize=quantize,
            device=device,
            kv_cache=kv_cache,
            max_num_seqs=max_num_seqs,
            max_model_len=max_model_len,
        )
    except ValueError as exc:
        _console().print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        code = asyncio.run(
            _predict(directory, inputs or [], json_output=json_output, debug=debug, output_dir=out, env=env)
        )
    except KeyboardInterrupt:
        # Ctrl-C before the prediction started (during setup); the worker is gone with the event loop.
        _console().print("[yellow]canceled[/]")
        code = EXIT_CANCELED
    raise typer.Exit(code)


async def _predict(
    directory: Path,
    raw_inputs: list[str],
    *,
    json_output: bool,
    debug: bool,
    output_dir: Path,
    env: dict[str, str] | None = None,
) -> int:
    err = _console()
    runner: Runner | None = None
    try:
        project = _load_project(directory)
        pairs = _split_inputs(raw_inputs)
        from cocina.worker.runner import Runner

        runner = Runner(project, env_overrides=env)
        if debug:
            runner.log_listener = lambda log: err.out(log.data, end="", highlight=False)
        inputs = await _start(runner, pairs, err, debug=debug)
        return await _run(runner, inputs, err, json_output=json_output, debug=debug, output_dir=output_dir)
    except _Stop as stop:
        err.print(f"[red]error:[/] {stop}", highlight=False)
        return stop.code
    finally:
        if runner is not None:
            await runner.shutdown(grace_s=2.0)


def _load_project(directory: Path) -> Any:
    from cocina.config import ConfigError, load_project

    try:
        return load_project(directory)
    except ConfigError as exc:
        raise _Stop(str(exc), EXIT_FAILED) from exc
    except FileNotFoundError as exc:
        raise _Stop(str(exc), EXIT_FAILED) from exc


def _split_inputs(raw_inputs: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in raw_inputs:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _Stop(f"input {item!r} must look like name=value (or name=@file)", EXIT_BAD_INPUT)
        pairs.append((name.strip(), value))
    return pairs


async def _start(
    runner: Runner, pairs: list[tuple[str, str]], err: Console, *, debug: bool
) -> dict[str, Any]:
    """Start the runner under a spinner; inputs are checked as soon as the schema is known, before setup
    ends."""
    from cocina.sdk.schema import InputValidationError
    from cocina.worker.events import SetupStatus

    setup_task = asyncio.ensure_future(runner.start())
    status = err.status("Loading predict.py…", spinner="dots")
    if not debug:
        status.start()
    try:
        schema = await runner.wait_schema()
        inputs: dict[str, Any] = {}
        if schema is not None:
            try:
                raw = {name: runner.validator.parse_cli(name, text) for name, text in pairs}
                inputs = runner.validator.validate(raw)
            except InputValidationError as exc:
                setup_task.cancel()
                raise _Stop(_input_error(exc), EXIT_BAD_INPUT) from exc
            status.update("Running setup()…")
        setup = await setup_task
    finally:
        status.stop()
    if setup.status is not SetupStatus.SUCCEEDED:
        hint = "" if debug else " (run with --debug to see the setup logs)"
        if debug and setup.logs and runner.log_listener is None:
            err.out(setup.logs, end="", highlight=False)
        raise _Stop(f"setup failed: {setup.error}{hint}", EXIT_FAILED)
    return inputs


def _input_error(exc: Any) -> str:
    """One line naming the input and what is wrong with it."""
    first = exc.errors[0] if getattr(exc, "errors", None) else {"msg": str(exc), "loc": []}
    loc = [str(part) for part in first.get("loc", [])[2:]]
    message = str(first.get("msg", exc))
    if loc and not message.startswith(loc[0]):
        message = f"{loc[0]}: {message}"
    more = len(exc.errors) - 1 if getattr(exc, "errors", None) else 0
    return f"invalid input {message}" + (f" (and {more} more)" if more > 0 else "")


async def _run(
    runner: Runner, inputs: dict[str, Any], err: Console, *, json_output: bool, debug: bool, output_dir: Path
) -> int:
    from cocina.worker.events import Done, Log, Output, PredictionStatus
    from cocina.worker.runner import REDACTED, secret_values

    prediction_id = uuid.uuid4().hex
    loop = asyncio.get_running_loop()
    interrupts = 0
    tasks: set[asyncio.Task[Any]] = set()  # referenced until done, as asyncio requires

    def on_sigint() -> None:
        # First Ctrl-C: cancel the prediction and let it end cleanly. Second: stop the worker outright.
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            err.print("Canceling the prediction… (Ctrl-C again to stop at once)")
            task: asyncio.Task[Any] = loop.create_task(runner.cancel(prediction_id))
        else:
            task = loop.create_task(runner.shutdown(grace_s=0.0))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    kind = runner.output_kind
    writer = _OutputWriter(kind, output_dir, stream=not json_output)
    logs: list[str] = []
    created_at = started_at = datetime.now(UTC)
    done = Done(PredictionStatus.FAILED, "the prediction ended without a result")
    try:
        async for event in runner.predict(inputs, prediction_id=prediction_id):
            if isinstance(event, Log):
                logs.append(event.data)
                if debug or not event.traceback:
                    err.out(event.data, end="", highlight=False)
            elif isinstance(event, Output):
                writer.add(event.value)
            elif isinstance(event, Done):
                done = event
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    writer.finish()
    if json_output:
        secrets = set(secret_values(runner.openapi_schema, inputs))
        response = {
            "id": prediction_id,
            "input": {k: (REDACTED if isinstance(v, str) and v in secrets else v) for k, v in inputs.items()},
            "output": writer.result(),
            "logs": "".join(logs),
            "error": done.error,
            "status": done.status.value,
            "created_at": created_at.isoformat(),
            "started_at": started_at.isoformat(),
            "completed_at": datetime.now(UTC).isoformat(),
            "metrics": {**done.metrics, "predict_time": done.predict_time},
        }
        sys.stdout.write(json.dumps(response, indent=2) + "\n")
        sys.stdout.flush()
    if done.status is PredictionStatus.SUCCEEDED:
        return 0
    if done.status is PredictionStatus.CANCELED:
        err.print("[yellow]canceled[/]")
        return EXIT_CANCELED
    hint = "" if debug else " (run with --debug for the traceback)"
    err.print(f"[red]error:[/] prediction failed: {done.error}{hint}", highlight=False)
    return EXIT_FAILED


class _OutputWriter:
    """Writes outputs to stdout as they come and file outputs to the output folder."""

    def __init__(self, kind: OutputKind, output_dir: Path, *, stream: bool) -> None:
        self.kind = kind
        self.output_dir = output_dir
        self.stream = stream
        self.items: list[Any] = []
        self._ends_with_newline = True

    def add(self, value: Any) -> None:
        from cocina.worker.events import OutputKind

        index = len(self.items) if self.kind is not OutputKind.VALUE else None
        value = self._save_files(value, "output" if index is None else f"output.{index}")
        self.items.append(value)
        if not self.stream:
            return
        if self.kind is OutputKind.CONCATENATE:
            text = value if isinstance(value, str) else json.dumps(value)
            self._write(text)
        elif isinstance(value, str):
            self._write(value + "\n")
        else:
            self._write(json.dumps(value, indent=None if self.kind is OutputKind.ITERATOR else 2) + "\n")

    def _write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self._ends_with_newline = text.endswith("\n")

    def finish(self) -> None:
        """End a concatenated stream with a newline, so the shell prompt starts on its own line."""
        if self.stream and not self._ends_with_newline:
            self._write("\n")

    def result(self) -> Any:
        """The whole output, as in Cog's response: a list for iterators, the value otherwise."""
        from cocina.worker.events import OutputKind

        if self.kind is OutputKind.VALUE:
            return self.items[0] if self.items else None
        return self.items

    def _save_files(self, value: Any, stem: str) -> Any:
        """Copy files marked by the worker into the output folder; the marker becomes the written path."""
        if isinstance(value, dict):
            if set(value) == {FILE_MARKER}:
                source = Path(value[FILE_MARKER])
                self.output_dir.mkdir(parents=True, exist_ok=True)
                target = self.output_dir / f"{stem}{source.suffix}"
                shutil.copyfile(source, target)
                return str(target)
            return {k: self._save_files(v, f"{stem}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [self._save_files(v, f"{stem}.{i}") for i, v in enumerate(value)]
        return value


def _console() -> Console:
    from rich.console import Console

    # soft_wrap: an error stays one line even when stderr is not a terminal 80 columns wide.
    return Console(stderr=True, soft_wrap=True)
