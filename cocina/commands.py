"""`cocina init`, `cocina predict`, `cocina train` and `cocina schema`.

Only typer is imported at module level: the runner, rich and the SDK are imported inside the commands so that
`cocina --help` stays instant. Errors the user can fix end the command with one line on stderr and a non-zero
status (2 for bad input, 1 for a project, setup or predictor failure, 130 when canceled with Ctrl-C); the full
traceback and setup logs are shown with `--debug`. Input errors and file outputs are reported as Cog's CLI reports
them (`invalid input "count": ...`, `Written output to: output.png`), so scripts written for `cog predict` keep
working.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from cocina.engine_options import (
    DeviceOption,
    DtypeOption,
    KvCacheOption,
    MaxModelLenOption,
    MaxNumSeqsOption,
    QuantizeOption,
    engine_overrides,
)

if TYPE_CHECKING:
    from rich.console import Console

    from cocina.sdk.schema import InputValidationError, InputValidator
    from cocina.worker.events import OutputKind
    from cocina.worker.runner import Runner

__all__ = ["init_project", "register"]

Mode = Literal["predict", "train"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELED = 130
DEFAULT_MODEL = "cocina/demo"
FILE_MARKER = "__cocina_file__"  # cocina.sdk.schema.FILE_MARKER; repeated here to keep this import light


def register(app: typer.Typer) -> None:
    """Add `init`, `predict`, `train` and `schema` to the `cocina` command."""
    app.command("init")(init_command)
    app.command("predict")(predict_command)
    app.command("train")(train_command)
    app.command("schema")(schema_command)


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


# --- cocina predict / cocina train ------------------------------------------------------------------------


class _Stop(Exception):
    """Ends the command with one line on stderr and an exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


InputsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--input", "-i", help="An input as name=value; name=@path for a file. Repeat a name for a list. Repeatable."
    ),
]
InputJsonOption = Annotated[
    str | None,
    typer.Option(
        "--input-json",
        help="All inputs as one JSON object: the JSON itself, @file, or - (or @-) to read stdin (Cog's --json).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the finished prediction as JSON (Cog's response).")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show setup logs and full tracebacks.")]
OutputDirOption = Annotated[
    Path | None, typer.Option("--output-dir", help="Where file outputs are written (default: the current folder).")
]


def predict_command(
    directory: Annotated[Path, typer.Argument(help="Project folder (cocina.yaml or cog.yaml).")] = Path("."),
    inputs: InputsOption = None,
    input_json: InputJsonOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the output to this file (text as is, other values as JSON, a file output as that file; "
            "with --json, the whole response). An existing folder: file outputs go there.",
        ),
    ] = None,
    output_dir: OutputDirOption = None,
    dtype: DtypeOption = None,
    quantize: QuantizeOption = None,
    device: DeviceOption = None,
    kv_cache: KvCacheOption = None,
    max_num_seqs: MaxNumSeqsOption = None,
    max_model_len: MaxModelLenOption = None,
) -> None:
    """Run one prediction: start the predictor, stream its output to stdout, write file outputs to disk.

    The project's requirements (`build.python_requirements`, `python_packages`) are installed first when the
    server's environment lacks them, as `cocina serve` and `cocina push` do. The engine options (--dtype,
    --quantize, ...) reach a predictor on cocina's engine (`cocina.llm.LLMPredictor`) as a typed configuration,
    over `cocina: engine:` and COCINA_* variables."""
    options = _engine_options_or_exit(dtype, quantize, device, kv_cache, max_num_seqs, max_model_len)
    _run_command(
        "predict", directory, inputs or [], input_json, json_output, debug, output, output_dir, options
    )


def train_command(
    directory: Annotated[Path, typer.Argument(help="Project folder (cocina.yaml or cog.yaml).")] = Path("."),
    inputs: InputsOption = None,
    input_json: InputJsonOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where the training's result is written (as `cog train` does: text as is, other values as JSON, "
            "a file output as that file).",
        ),
    ] = Path("weights"),
    output_dir: OutputDirOption = None,
) -> None:
    """Run the project's training entry point (`train:` in cog.yaml) once, as `cog train` does: setup() if it is
    a class, then train(**inputs); its result is written to ./weights (or --output)."""
    _run_command("train", directory, inputs or [], input_json, json_output, debug, output, output_dir, {})


def _engine_options_or_exit(*values: Any) -> dict[str, Any]:
    dtype, quantize, device, kv_cache, max_num_seqs, max_model_len = values
    try:
        return engine_overrides(
            dtype=dtype,
            quantize=quantize,
            device=device,
            kv_cache=kv_cache,
            max_num_seqs=max_num_seqs,
            max_model_len=max_model_len,
        )
    except ValueError as exc:
        _error_line(_console(), str(exc))
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _run_command(
    mode: Mode,
    directory: Path,
    inputs: list[str],
    input_json: str | None,
    json_output: bool,
    debug: bool,
    output: Path | None,
    output_dir: Path | None,
    engine_options: dict[str, Any],
) -> None:
    request = _Request(mode, inputs, input_json, json_output, debug, output, output_dir)
    try:
        code = asyncio.run(_predict(directory, request, engine_options=engine_options))
    except KeyboardInterrupt:
        # Ctrl-C before the prediction started (during setup); the worker is gone with the event loop.
        _console().print("[yellow]canceled[/]")
        code = EXIT_CANCELED
    raise typer.Exit(code)


class _Request:
    """What one `cocina predict` / `cocina train` was asked for."""

    def __init__(
        self,
        mode: Mode,
        inputs: list[str],
        input_json: str | None,
        json_output: bool,
        debug: bool,
        output: Path | None,
        output_dir: Path | None,
    ) -> None:
        self.mode = mode
        self.inputs = inputs
        self.input_json = input_json
        self.json_output = json_output
        self.debug = debug
        self.output = output
        self.output_dir = output_dir


def _environment_for(project: Any, engine_options: dict[str, Any], err: Any) -> tuple[str, dict[str, Any]]:
    """The interpreter the project runs on (its requirements installed when the server lacks them, in the
    environments `cocina serve` and `cocina push` share) and its typed engine configuration."""
    import os

    from cocina.config import ConfigError, default_data_dir
    from cocina.hub.envs import EnvironmentBuilder, EnvironmentBuildError, environment_spec
    from cocina.serving.spec import SpecError, project_spec

    try:
        environment = EnvironmentBuilder(default_data_dir() / "hub" / "envs").ensure(
            environment_spec(project), lambda line: err.print(f"[dim]{line}[/]", highlight=False)
        )
        spec = project_spec(project.root, engine_options=engine_options, environ=dict(os.environ), version="0" * 64)
    except (EnvironmentBuildError, ConfigError, SpecError) as exc:
        raise _Stop(str(exc), 1) from None
    assert spec.engine is not None
    return environment.python, spec.engine.to_child()


async def _predict(directory: Path, request: _Request, *, engine_options: dict[str, Any] | None = None) -> int:
    err = _console()
    runner: Runner | None = None
    try:
        project = _load_project(directory, err)
        if request.mode == "train" and not project.train:
            raise _Stop(f"{project.config_file} has no `train:` entry point (e.g. train: \"train.py:train\")", 1)
        if request.inputs and request.input_json is not None:
            raise _Stop("give the inputs either with -i or with --input-json, not both", EXIT_BAD_INPUT)
        pairs = _split_inputs(request.inputs)
        json_inputs = _read_json_inputs(request.input_json) if request.input_json is not None else None
        from cocina.worker.runner import Runner

        python, engine = _environment_for(project, engine_options or {}, err)
        runner = Runner(project, python=python, engine=engine, mode=request.mode)
        debug = request.debug

        def show_setup_log(log: Any) -> None:
            # What setup() prints is shown as it happens, as `cog predict` shows it; a traceback only with --debug.
            if debug or not log.traceback:
                err.out(log.data, end="", highlight=False)

        runner.log_listener = show_setup_log
        inputs = await _start(runner, pairs, json_inputs, err, debug=request.debug)
        return await _run(runner, inputs, err, request)
    except _Stop as stop:
        _error_line(err, str(stop))
        return stop.code
    finally:
        if runner is not None:
            await runner.shutdown(grace_s=2.0)


def _load_project(directory: Path, err: Console | None = None) -> Any:
    from cocina.config import ConfigError, load_project

    try:
        project = load_project(directory)
    except ConfigError as exc:
        raise _Stop(str(exc), EXIT_FAILED) from exc
    except FileNotFoundError as exc:
        raise _Stop(str(exc), EXIT_FAILED) from exc
    if err is not None:
        from rich.markup import escape

        for warning in project.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return project


def _split_inputs(raw_inputs: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in raw_inputs:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise _Stop(f"input {item!r} must look like name=value (or name=@file)", EXIT_BAD_INPUT)
        pairs.append((name.strip(), value))
    return pairs


def _read_json_inputs(source: str) -> dict[str, Any]:
    """`--input-json`: the JSON object itself, `@file`, or `-` / `@-` for stdin (Cog's `--json`)."""
    if source in ("-", "@-"):
        text = sys.stdin.read()
    elif source.startswith("@"):
        try:
            text = Path(source[1:]).read_text()
        except OSError as exc:
            raise _Stop(f"--input-json: cannot read {source[1:]!r}: {exc.strerror or exc}", EXIT_BAD_INPUT) from None
    else:
        text = source
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _Stop(f"--input-json: not valid JSON: {exc}", EXIT_BAD_INPUT) from None
    if not isinstance(value, dict):
        raise _Stop(f"--input-json: must be a JSON object of inputs, got {type(value).__name__}", EXIT_BAD_INPUT)
    return value


def _raw_inputs(
    validator: InputValidator, pairs: list[tuple[str, str]], json_inputs: dict[str, Any] | None
) -> dict[str, Any]:
    """The inputs as JSON values before validation, from `-i` pairs (parsed by the schema; a name given again adds
    to a list input) or from `--input-json` (where "@path" names a file for a file input)."""
    from cocina.sdk.schema import InputValidationError

    given = list(json_inputs) if json_inputs is not None else [name for name, _ in pairs]
    unknown = sorted({name for name in given if name not in validator.names})
    if unknown:
        valid = ", ".join(sorted(validator.names))
        suffix = f"valid inputs are: {valid}" if valid else "model does not accept inputs"
        listed = ", ".join(f'"{name}"' for name in unknown)
        noun = "input" if len(unknown) == 1 else "inputs"
        raise _Stop(f"unknown {noun} {listed}; {suffix}", EXIT_BAD_INPUT)
    if json_inputs is not None:
        return {name: _json_file_value(validator, name, value) for name, value in json_inputs.items()}
    raw: dict[str, Any] = {}
    for name, text in pairs:
        value = validator.parse_cli(name, text)
        if name not in raw:
            raw[name] = value
        elif isinstance(raw[name], list) and validator.property_schema(name).get("type") == "array":
            raw[name] = [*raw[name], *value]
        else:
            raise InputValidationError(
                [{"loc": ["body", "input", name], "msg": f"{name}: given more than once", "type": "repeated"}]
            )
    return raw


def _json_file_value(validator: InputValidator, name: str, value: Any) -> Any:
    """In `--input-json`, a file input's "@path" is a local file (as with -i name=@path)."""
    schema = validator.property_schema(name)
    is_file = schema.get("format") == "uri" or schema.get("items", {}).get("format") == "uri"
    if is_file and isinstance(value, str) and value.startswith("@"):
        return validator.parse_cli(name, value) if schema.get("type") != "array" else value
    if is_file and isinstance(value, list):
        return [validator.parse_cli(name, v)[0] if isinstance(v, str) and v.startswith("@") else v for v in value]
    return value


async def _start(
    runner: Runner,
    pairs: list[tuple[str, str]],
    json_inputs: dict[str, Any] | None,
    err: Console,
    *,
    debug: bool,
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
            raw: dict[str, Any] = {}
            try:
                raw = _raw_inputs(runner.validator, pairs, json_inputs)
                inputs = runner.validator.validate(raw)
            except (InputValidationError, _Stop) as exc:
                setup_task.cancel()
                if isinstance(exc, _Stop):
                    raise
                raw_texts = {name: text for name, text in pairs}
                raise _Stop(_input_error(exc, {**raw_texts, **raw}), EXIT_BAD_INPUT) from exc
            status.update("Running setup()…")
        setup = await setup_task
    finally:
        status.stop()
    if setup.status is not SetupStatus.SUCCEEDED:
        hint = "" if debug else " (run with --debug for the traceback)"
        raise _Stop(f"setup failed: {setup.error}{hint}", EXIT_FAILED)
    return inputs


_EXPECTED = {
    "int_type": "integer",
    "int_parsing": "integer",
    "float_type": "number",
    "float_parsing": "number",
    "bool_parsing": "boolean",
    "string_type": "string",
    "list_type": "array",
    "dict_type": "object",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _input_error(exc: InputValidationError, raw: dict[str, Any]) -> str:
    """The first input error in Cog's CLI words (`invalid input "count": expected integer, got string`)."""
    errors = exc.errors or [{"msg": str(exc), "loc": [], "type": ""}]
    first = errors[0]
    loc = [str(part) for part in first.get("loc", [])[2:]]
    name = ".".join(loc)
    kind = first.get("type", "")
    message = str(first.get("msg", exc))
    if loc and message.startswith(loc[0]) and ": " in message:
        message = message.split(": ", 1)[1]  # the validator's messages start with the input's name
    if kind == "missing":
        text = f'missing required input "{name}"'
    elif kind in _EXPECTED:
        value: Any = raw.get(loc[0]) if loc else None
        if len(loc) > 1 and isinstance(value, list) and loc[1].isdigit() and int(loc[1]) < len(value):
            value = value[int(loc[1])]
        text = f'invalid input "{name}": expected {_EXPECTED[kind]}, got {_json_type(value)}'
    elif kind == "enum" and loc:
        text = f'invalid input "{name}": {message.split(", got ")[0].replace("must be one of ", "must be one of: ")}'
        text = text.replace("'", "")
    else:
        text = f'invalid input "{name}": {message}' if name else message
    more = len(errors) - 1
    return text + (f" (and {more} more)" if more > 0 else "")


async def _run(runner: Runner, inputs: dict[str, Any], err: Console, request: _Request) -> int:
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
    target = _OutputTarget.of(request)
    writer = _OutputWriter(runner.output_kind, target, err, stream=not request.json_output and target.file is None)
    logs: list[str] = []
    created_at = started_at = datetime.now(UTC)
    done = Done(PredictionStatus.FAILED, "the prediction ended without a result")
    try:
        async for event in runner.predict(inputs, prediction_id=prediction_id):
            if isinstance(event, Log):
                logs.append(event.data)
                if request.debug or not event.traceback:
                    err.out(event.data, end="", highlight=False)
            elif isinstance(event, Output):
                writer.add(event.value)
            elif isinstance(event, Done):
                done = event
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    writer.finish()
    if request.json_output:
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
        text = json.dumps(response, indent=2) + "\n"
        if target.file is not None:
            _write_file(target.file.with_suffix(target.file.suffix or ".json"), text.encode(), err)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    elif done.status is PredictionStatus.SUCCEEDED:
        writer.write_result()
    if done.status is PredictionStatus.SUCCEEDED:
        return 0
    if done.status is PredictionStatus.CANCELED:
        err.print("[yellow]canceled[/]")
        return EXIT_CANCELED
    hint = "" if request.debug else " (run with --debug for the traceback)"
    what = "training" if request.mode == "train" else "prediction"
    _error_line(err, f"{what} failed: {done.error}{hint}")
    return EXIT_FAILED


class _OutputTarget:
    """Where outputs go, as `cog predict -o` decides: file outputs are named `<name>[.N]<ext>` in `folder`; `file`
    is set when the whole output goes to one file (a path that is not an existing folder)."""

    def __init__(self, folder: Path, name: str, ext: str | None, file: Path | None) -> None:
        self.folder = folder
        self.name = name
        self.ext = ext  # the extension the user gave, kept for file outputs; None: the file's own
        self.file = file

    @classmethod
    def of(cls, request: _Request) -> _OutputTarget:
        output = request.output
        if output is None or output.is_dir():
            folder = output if output is not None else (request.output_dir or Path("."))
            return cls(folder, "output", None, None)
        ext = output.suffix if output.suffix and not output.suffix[1:].isdigit() else None
        stem = output.name[: -len(output.suffix)] if ext else output.name
        return cls(output.parent, stem, ext, output)

    def path_for(self, name: str, source: Path, *, keep_ext: bool) -> Path:
        ext = self.ext if keep_ext and self.ext else source.suffix
        return self.folder / f"{name}{ext}"


def _write_file(path: Path, data: bytes, err: Console) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    err.print(f"Written output to: {path}", highlight=False, markup=False)


class _OutputWriter:
    """Writes outputs to stdout as they come (or, with a target file, at the end) and file outputs to disk."""

    def __init__(self, kind: OutputKind, target: _OutputTarget, err: Console, *, stream: bool) -> None:
        self.kind = kind
        self.target = target
        self.err = err
        self.stream = stream
        self.items: list[Any] = []
        self._ends_with_newline = True

    def add(self, value: Any) -> None:
        from cocina.worker.events import OutputKind

        index = len(self.items) if self.kind is not OutputKind.VALUE else None
        name = self.target.name if index is None else f"{self.target.name}.{index}"
        value = self._save_files(value, name, keep_ext=True)
        self.items.append(value)
        if not self.stream:
            return
        if self.kind is OutputKind.CONCATENATE:
            # Tokens of a text: shown as they come, joined (cocina streams an LLM's answer to the terminal).
            text = value if isinstance(value, str) else json.dumps(value)
            self._write(text)
        elif self.kind is OutputKind.ITERATOR:
            # One item per line, as JSON: a string with a newline in it stays one item (and is quoted as Cog
            # quotes the items of an iterator output).
            self._write(json.dumps(value) + "\n")
        elif isinstance(value, str):
            self._write(value + "\n")
        elif value is not None:
            self._write(json.dumps(value, indent=2) + "\n")

    def _write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self._ends_with_newline = text.endswith("\n")

    def finish(self) -> None:
        """End a concatenated stream with a newline, so the shell prompt starts on its own line."""
        if self.stream and not self._ends_with_newline:
            self._write("\n")

    def write_result(self) -> None:
        """After a prediction succeeded: say when there was no output, or write it to the target file."""
        result = self.result()
        if result is None or result == []:
            self.err.print("No output generated", highlight=False)
            return
        target = self.target.file
        if target is None or _is_file_output(result):
            return
        data = result if isinstance(result, str) else json.dumps(result, indent=2)
        _write_file(target, data.encode(), self.err)

    def result(self) -> Any:
        """The whole output, as in Cog's response: a list for iterators, the value otherwise."""
        from cocina.worker.events import OutputKind

        if self.kind is OutputKind.VALUE:
            return self.items[0] if self.items else None
        return self.items

    def _save_files(self, value: Any, name: str, *, keep_ext: bool) -> Any:
        """Copy files marked by the worker to the output folder; the marker becomes the written path."""
        if isinstance(value, dict):
            if set(value) == {FILE_MARKER}:
                source = Path(value[FILE_MARKER])
                path = self.target.path_for(name, source, keep_ext=keep_ext)
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, path)
                self.err.print(f"Written output to: {path}", highlight=False, markup=False)
                return str(path)
            return {k: self._save_files(v, f"{name}.{k}", keep_ext=False) for k, v in value.items()}
        if isinstance(value, list):
            return [self._save_files(v, f"{name}.{i}", keep_ext=keep_ext) for i, v in enumerate(value)]
        return value


def _is_file_output(value: Any) -> bool:
    """Whether the output is files only (written already), as `cog predict` leaves those alone."""
    if isinstance(value, list):
        return bool(value) and all(_is_file_output(v) for v in value)
    return isinstance(value, str) and Path(value).is_file()


# --- cocina schema --------------------------------------------------------------------------------------------


def schema_command(
    directory: Annotated[Path, typer.Argument(help="Project folder (cocina.yaml or cog.yaml).")] = Path("."),
    train: Annotated[bool, typer.Option("--train", help="The schema of the `train:` entry point.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the schema to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the predictor's OpenAPI schema (the one `cocina serve` and `cog build` publish).

    Reads the config and imports predict.py in a separate process, without running setup(): what building a Cog
    image checks about a project."""
    err = _console()
    try:
        project = _load_project(directory, err)
        if train and not project.train:
            raise _Stop(f"{project.config_file} has no `train:` entry point", EXIT_FAILED)
    except _Stop as stop:
        _error_line(err, str(stop))
        raise typer.Exit(stop.code) from None
    ref = project.train if train else project.predict_ref
    env = {**os.environ, **project.environment}
    command = [sys.executable, "-m", "cocina.worker.child", "--schema", str(project.root), ref]
    command.append("train" if train else "predict")
    result = subprocess.run(command, cwd=project.root, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise typer.Exit(EXIT_FAILED)
    if output is not None:
        output.write_text(result.stdout)
    else:
        sys.stdout.write(result.stdout)


def _error_line(err: Console, message: str) -> None:
    from rich.markup import escape

    err.print(f"[red]error:[/] {escape(message)}", highlight=False)


def _console() -> Console:
    from rich.console import Console

    # soft_wrap: an error stays one line even when stderr is not a terminal 80 columns wide.
    return Console(stderr=True, soft_wrap=True)
