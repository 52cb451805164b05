"""`cocina push`, `cocina models`, `cocina versions`, `cocina deployments`: the hub from the command line.

Every command works on the hub of this machine's data directory (`--data-dir`, default `$COCINA_HOME` or
`~/.cocina`: what `cocina serve` serves by default) or, given `--url` (or a URL before the model's name in
`push`), on a cocina server over its HTTP API. `--json` prints the API's own objects.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from cocina.config import default_data_dir

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="The local hub's data directory (default: $COCINA_HOME or ~/.cocina)")
]
UrlOption = Annotated[
    str | None, typer.Option("--url", help="A cocina server (http://host:port) instead of the local hub")
]
TokenEnvOption = Annotated[str, typer.Option("--token-env", help="Environment variable with the server's API token")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"cocina: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _client(
    url: str | None, data_dir: Path | None, token_env: str, *, find_links: tuple[str, ...] = (), no_index: bool = False
) -> Iterator[Any]:
    from cocina.hubctl.client import LocalHub, RemoteHub

    client: Any
    if url:
        client = RemoteHub(
            url, os.environ.get(token_env) or None, cache=Path.home() / ".cache" / "cocina" / "push-hashes.json"
        )
    else:
        client = LocalHub(data_dir or default_data_dir(), find_links=find_links, no_index=no_index)
    try:
        yield client
    finally:
        client.close()


def _call(client: Any, method: str, path: str, body: Any = None) -> Any:
    from cocina.hubctl.client import HubClientError

    try:
        return client.request(method, path, body)
    except HubClientError as exc:
        raise _fail(exc.message) from None


def _print(obj: Any, as_json: bool, table: Any = None) -> None:
    if as_json or table is None:
        typer.echo(json.dumps(obj, indent=2))
        return
    from rich.console import Console

    Console().print(table)


def _split_target(target: str) -> tuple[str | None, str]:
    """`[URL/]owner/name` -> (URL or None, owner/name)."""
    m = re.match(r"^(?P<url>(?:https?://)?[^/]+)/(?P<owner>[^/]+)/(?P<name>[^/]+)$", target)
    if m and (target.startswith(("http://", "https://")) or ":" in m.group("url") or "." in m.group("url")):
        url = m.group("url")
        return (url if url.startswith("http") else f"http://{url}"), f"{m.group('owner')}/{m.group('name')}"
    return None, target


# ---- push ---------------------------------------------------------------------------------------------------


def push_command(
    target: Annotated[str, typer.Argument(help="[URL/]owner/name: a server's model, or the local hub's")],
    directory: Annotated[Path, typer.Option("--dir", help="The project directory")] = Path("."),
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    find_links: Annotated[
        list[str] | None, typer.Option("--find-links", help="A local wheelhouse for the environment (local hub)")
    ] = None,
    no_index: Annotated[bool, typer.Option("--no-index", help="Install only from --find-links (offline)")] = False,
    as_json: JsonOption = False,
) -> None:
    """Push a Cog project as a new version of a model (the same content is the same version, uploaded once)."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from cocina.config import ConfigError, load_project
    from cocina.hubctl.client import HubClientError, PushProgress

    url, name = _split_target(target)
    root = directory.resolve()
    try:
        load_project(root)  # a broken cog.yaml says so at once, before anything is hashed or sent
    except (ConfigError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    console = Console(stderr=True, soft_wrap=True)  # long ids and paths stay whole on one line
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    ) as bars:
        hashing = bars.add_task("hashing files", total=None)
        uploading: list[Any] = []

        def start_upload(files: int, size: int) -> None:
            bars.update(hashing, visible=False)
            uploading.append(bars.add_task(f"uploading {files} file(s)" if files else "nothing to upload", total=size))

        progress = PushProgress(
            hashing=lambda n: bars.advance(hashing, n),
            uploading=lambda n: bars.advance(uploading[0], n) if uploading else None,
            start_upload=start_upload,
            say=lambda line: console.print(f"  {line}", highlight=False),
        )
        try:
            with _client(url, data_dir, token_env, find_links=tuple(find_links or ()), no_index=no_index) as client:
                pushed = client.push(root, name, progress)
                where = client.where
        except HubClientError as exc:
            raise _fail(f"push to {url or 'the local hub'} failed: {exc.message}") from None
    if as_json:
        typer.echo(json.dumps({**pushed.version, "created": pushed.created, "uploaded_bytes": pushed.uploaded_bytes}))
        return
    version = pushed.version["id"]
    took = time.monotonic() - started
    what = "new version" if pushed.created else "unchanged: the same version as before"
    console.print(
        f"[bold]{name}:{version}[/bold] ({what}; {len(pushed.manifest.files)} files, "
        f"{pushed.manifest.size / 2**20:.1f} MiB, {pushed.uploaded_bytes / 2**20:.1f} MiB sent, {took:.1f} s)",
        highlight=False,
    )
    typer.echo(
        f"""
Run it:
  python -c 'import replicate; print(replicate.Client(base_url="{where}", api_token="$COCINA_API_TOKEN")\\
      .run("{name}:{version}", input={{...}}))'
  curl -s {where}/v1/predictions -H "Authorization: Bearer $COCINA_API_TOKEN" \\
      -H 'Content-Type: application/json' -H 'Prefer: wait' \\
      -d '{{"version": "{name}:{version}", "input": {{}}}}'
  web page: {where}/{name}"""
        + ("" if url else "\n  (the local hub: start it with `cocina serve`)")
    )


# ---- models and versions --------------------------------------------------------------------------------------

models_app = typer.Typer(help="Models of a hub.", no_args_is_help=True)
versions_app = typer.Typer(help="Versions of a model.", no_args_is_help=True)
deployments_app = typer.Typer(help="Deployments: weighted releases of a model's versions.", no_args_is_help=True)


@models_app.command("list")
def models_list(
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    """Every model, with its latest version and run count."""
    from rich.table import Table

    with _client(url, data_dir, token_env) as client:
        page = _call(client, "GET", "/v1/models")
    table = Table("model", "latest version", "runs", "description")
    for m in page["results"]:
        latest = (m.get("latest_version") or {}).get("id") or "—"
        table.add_row(f"{m['owner']}/{m['name']}", latest[:12], str(m.get("run_count", 0)), m.get("description") or "")
    _print(page["results"], as_json, table)


@models_app.command("get")
def models_get(
    name: str,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = True,
) -> None:
    with _client(url, data_dir, token_env) as client:
        _print(_call(client, "GET", f"/v1/models/{name}"), True)


@models_app.command("create")
def models_create(
    name: str,
    description: Annotated[str | None, typer.Option()] = None,
    visibility: Annotated[str, typer.Option()] = "private",
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
) -> None:
    owner, _, short = name.partition("/")
    with _client(url, data_dir, token_env) as client:
        body = {"owner": owner, "name": short, "visibility": visibility, "description": description}
        _print(_call(client, "POST", "/v1/models", body), True)


@models_app.command("delete")
def models_delete(
    name: str, url: UrlOption = None, data_dir: DataDirOption = None, token_env: TokenEnvOption = "COCINA_API_TOKEN"
) -> None:
    """Delete a model that has no versions."""
    with _client(url, data_dir, token_env) as client:
        _call(client, "DELETE", f"/v1/models/{name}")
    typer.echo(f"deleted {name}")


@versions_app.command("list")
def versions_list(
    model: str,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    """A model's versions, newest first."""
    from rich.table import Table

    with _client(url, data_dir, token_env) as client:
        page = _call(client, "GET", f"/v1/models/{model}/versions")
    table = Table("version", "created", "inputs")
    for v in page["results"]:
        inputs = (v.get("openapi_schema") or {}).get("components", {}).get("schemas", {}).get("Input", {})
        table.add_row(v["id"], v["created_at"][:19], ", ".join(inputs.get("properties", {})))
    _print(page["results"], as_json, table)


@versions_app.command("get")
def versions_get(
    model: str,
    version: str,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
) -> None:
    """A version, with its openapi_schema."""
    with _client(url, data_dir, token_env) as client:
        _print(_call(client, "GET", f"/v1/models/{model}/versions/{_full(client, model, version)}"), True)


@versions_app.command("delete")
def versions_delete(
    model: str,
    version: str,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
) -> None:
    """Delete a version (refused while a deployment routes to it or predictions of it run)."""
    with _client(url, data_dir, token_env) as client:
        full = _full(client, model, version)
        _call(client, "DELETE", f"/v1/models/{model}/versions/{full}")
    typer.echo(f"deleted {model}:{full}")


@versions_app.command("diff")
def versions_diff(
    model: str,
    a: Annotated[str, typer.Argument(help="The older version (a unique prefix is enough)")],
    b: Annotated[str, typer.Argument(help="The newer version")],
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    """What changed in the inputs and output between two versions; exits 1 when the change is breaking."""
    from cocina.hub.schema_diff import diff_schemas

    with _client(url, data_dir, token_env) as client:
        old = _call(client, "GET", f"/v1/models/{model}/versions/{_full(client, model, a)}")
        new = _call(client, "GET", f"/v1/models/{model}/versions/{_full(client, model, b)}")
    diff = diff_schemas(old["openapi_schema"], new["openapi_schema"])
    if as_json:
        typer.echo(json.dumps(diff.to_json(), indent=2))
    else:
        typer.echo(diff.describe())
    if diff.breaking:
        raise typer.Exit(1)


def _full(client: Any, model: str, prefix: str) -> str:
    """A version id from a unique prefix."""
    if len(prefix) == 64:
        return prefix
    ids = [
        v["id"] for v in _call(client, "GET", f"/v1/models/{model}/versions")["results"] if v["id"].startswith(prefix)
    ]
    if len(ids) != 1:
        raise _fail(f"{prefix!r} names {len(ids)} versions of {model}")
    return str(ids[0])


# ---- deployments ----------------------------------------------------------------------------------------------


def _splits(client: Any, model: str, text: str) -> list[dict[str, Any]]:
    from cocina.hub.deployments import parse_split
    from cocina.serving.errors import InvalidRequest

    try:
        return [{"version": _full(client, model, s.version), "weight": s.weight} for s in parse_split(text)]
    except InvalidRequest as exc:
        raise _fail(exc.message) from None


def _show_deployment(d: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    release = d.get("current_release") or {}
    config = release.get("configuration") or {}
    split = ", ".join(f"{v['version'][:12]}={v['weight']}%" for v in config.get("versions", []))
    typer.echo(
        f"{d['owner']}/{d['name']} -> {d['model']}  release {release.get('number')}: {split}  "
        f"(min {config.get('min_instances')}, max {config.get('max_instances')})"
    )


@deployments_app.command("create")
def deployments_create(
    name: Annotated[str, typer.Argument(help="owner/name of the deployment")],
    model: Annotated[str, typer.Option("--model", help="owner/name of the model")],
    split: Annotated[str, typer.Option("--versions", help="VERSION, or A=90,B=10 (weights sum to 100)")],
    min_instances: Annotated[int, typer.Option("--min-instances", help="Keep its versions loaded when > 0")] = 0,
    max_instances: Annotated[int, typer.Option("--max-instances", help="0 disables it")] = 1,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    with _client(url, data_dir, token_env) as client:
        body = {
            "name": name,
            "model": model,
            "versions": _splits(client, model, split),
            "min_instances": min_instances,
            "max_instances": max_instances,
        }
        _show_deployment(_call(client, "POST", "/v1/deployments", body), as_json)


@deployments_app.command("update")
def deployments_update(
    name: str,
    split: Annotated[str | None, typer.Option("--versions", help="VERSION, or A=90,B=10")] = None,
    min_instances: Annotated[int | None, typer.Option("--min-instances")] = None,
    max_instances: Annotated[int | None, typer.Option("--max-instances")] = None,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    """A new release of the deployment."""
    with _client(url, data_dir, token_env) as client:
        body: dict[str, Any] = {}
        if split is not None:
            model = _call(client, "GET", f"/v1/deployments/{name}")["model"]
            body["versions"] = _splits(client, model, split)
        if min_instances is not None:
            body["min_instances"] = min_instances
        if max_instances is not None:
            body["max_instances"] = max_instances
        _show_deployment(_call(client, "PATCH", f"/v1/deployments/{name}", body), as_json)


@deployments_app.command("rollback")
def deployments_rollback(
    name: str,
    to: Annotated[int | None, typer.Option("--to", help="The release to route as (default: the one before)")] = None,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    """A new release that routes as an earlier one did."""
    with _client(url, data_dir, token_env) as client:
        _show_deployment(_call(client, "POST", f"/v1/deployments/{name}/rollback", {"release": to}), as_json)


@deployments_app.command("list")
def deployments_list(
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    with _client(url, data_dir, token_env) as client:
        page = _call(client, "GET", "/v1/deployments")
    if as_json:
        typer.echo(json.dumps(page["results"], indent=2))
    for d in [] if as_json else page["results"]:
        _show_deployment(d, False)


@deployments_app.command("get")
def deployments_get(
    name: str,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    """The deployment and its release history."""
    with _client(url, data_dir, token_env) as client:
        d = _call(client, "GET", f"/v1/deployments/{name}")
        releases = _call(client, "GET", f"/v1/deployments/{name}/releases")["results"]
    if as_json:
        typer.echo(json.dumps({**d, "releases": releases}, indent=2))
        return
    _show_deployment(d, False)
    for r in releases:
        split = ", ".join(f"{v['version'][:12]}={v['weight']}%" for v in r["configuration"]["versions"])
        typer.echo(f"  release {r['number']}  {r['created_at'][:19]}  {split}")


@deployments_app.command("delete")
def deployments_delete(
    name: str, url: UrlOption = None, data_dir: DataDirOption = None, token_env: TokenEnvOption = "COCINA_API_TOKEN"
) -> None:
    with _client(url, data_dir, token_env) as client:
        _call(client, "DELETE", f"/v1/deployments/{name}")
    typer.echo(f"deleted {name}")


@deployments_app.command("stats")
def deployments_stats(
    name: str,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    """Each version's live traffic through the deployment: predictions, failures, latency, output tokens/s."""
    with _client(url, data_dir, token_env) as client:
        stats = _call(client, "GET", f"/v1/deployments/{name}/stats")
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{name} (release {stats['release']}, {stats['predictions']} predictions)")
    for column in ("version", "predictions", "failed", "canceled", "p50 ms", "p95 ms", "tokens/s", "releases"):
        table.add_column(column, justify="left" if column == "version" else "right")
    for version, v in stats["versions"].items():
        times = v["total_time_ms"]
        table.add_row(
            version[:12],
            str(v["predictions"]),
            str(v["failed"]),
            str(v["canceled"]),
            _num(times["p50"]),
            _num(times["p95"]),
            _num(v["output_tokens_per_s"]),
            ",".join(map(str, v["releases"])),
        )
    _print(stats, False, table)


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


@deployments_app.command("compare")
def deployments_compare(
    name: str,
    data: Annotated[
        Path,
        typer.Option("--data", help='JSON Lines: {"input": {...}, "reference": "..."} per line (reference optional)'),
    ],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds for each prediction")] = 300.0,
    perplexity: Annotated[
        bool, typer.Option("--perplexity/--no-perplexity", help="Score references by perplexity (language models)")
    ] = True,
    url: UrlOption = None,
    data_dir: DataDirOption = None,
    token_env: TokenEnvOption = "COCINA_API_TOKEN",
    as_json: JsonOption = False,
) -> None:
    """Run the same inputs through each version of the current release and compare them: latency, errors,
    output tokens/s, BLEU and chrF against the references (and their perplexity), with 95% intervals."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cocina.hub.compare import parse_examples
    from cocina.hubctl.client import HubClientError

    try:
        with data.open(encoding="utf-8") as f:
            examples = parse_examples(f, str(data))
    except OSError as exc:
        raise _fail(f"cannot read {data}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    body = {
        "examples": [{"input": ex.input, "reference": ex.reference} for ex in examples],
        "timeout": timeout,
        "perplexity": perplexity,
    }
    console = Console(stderr=True)
    report = None
    with (
        _client(url, data_dir, token_env) as client,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bars,
    ):
        task = bars.add_task("predictions", total=None)
        try:
            for item in client.stream(f"/v1/deployments/{name}/compare", body):
                if "done" in item:
                    bars.update(task, completed=item["done"], total=item["total"])
                elif "progress" in item:
                    bars.update(task, description=item["progress"])
                elif "report" in item:
                    report = item["report"]
        except HubClientError as exc:
            raise _fail(exc.message) from None
    if report is None:
        raise _fail("the server ended the comparison without a report")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _show_comparison(report)


def _show_comparison(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    count = next(iter(report["versions"].values()))["examples"]
    table = Table(title=f"{report['deployment']} release {report['release']}: {count} examples")
    columns = ("version", "weight", "errors", "p50 ms", "p95 ms", "tokens/s", "BLEU", "chrF", "perplexity")
    for column in columns:
        table.add_column(column, justify="left" if column == "version" else "right")
    for version, v in report["versions"].items():
        table.add_row(
            version[:12],
            f"{v['weight']}%",
            f"{v['errors']}/{v['examples']}",
            _num(v["latency_ms"]["p50"]),
            _num(v["latency_ms"]["p95"]),
            _num(v["output_tokens_per_s"]),
            _num(v["bleu"]),
            _num(v["chrf"]),
            _num(v["perplexity"]),
        )
    console.print(table)
    for d in report["differences"]:
        parts = []
        for metric in ("bleu", "chrf"):
            if metric in d:
                lo, hi = d[metric]["ci95"]
                parts.append(
                    f"{metric.upper() if metric == 'bleu' else 'chrF'} {d[metric]['diff']:+g} [{lo:+g}, {hi:+g}]"
                )
        if "latency_p50_ms" in d:
            parts.append(f"p50 latency {d['latency_p50_ms']['diff']:+g} ms")
        console.print(f"{d['b'][:12]} vs {d['a'][:12]}: " + ("; ".join(parts) or "no measure in common"))
    for version, v in report["versions"].items():
        for line in v.get("first_errors", []):
            console.print(f"[red]{version[:12]}[/red] {line}", markup=True)


def register(app: typer.Typer) -> None:
    app.command("push")(push_command)
    app.add_typer(models_app, name="models")
    app.add_typer(versions_app, name="versions")
    app.add_typer(deployments_app, name="deployments")
