"""`cocina index create|update|list|show|delete|query`: indexes of the data directory, from the terminal.

Long work (reading files, embedding chunks) draws progress bars on stderr; the results go to stdout (`--json` for
machines). Errors are one line naming what and how to fix it, with exit status 1; skipped files are listed by
name and reason, and never stop the index from being built.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Where indexes live (default: $COCINA_HOME or ~/.cocina)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]

index_app = typer.Typer(
    name="index",
    help="Indexes of your documents (text, Markdown, HTML, PDF) for retrieval-augmented generation.",
    no_args_is_help=True,
)


def _store(data_dir: Path | None) -> Any:
    from cocina.rag import index_store

    return index_store(data_dir)


def _fail(message: str) -> None:
    typer.echo(f"cocina index: {message}", err=True)
    raise typer.Exit(1)


def _progress() -> tuple[Any, Any]:
    """A rich progress display on stderr and the `Progress` callbacks that drive it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cocina.rag import Progress as Callbacks

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
        disable=not sys.stderr.isatty(),
    )
    tasks: dict[str, Any] = {}

    def step(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bars.add_task(what, total=total)
        bars.update(tasks[what], completed=done, total=total)

    return bars, Callbacks(
        on_read=lambda d, t: step("reading files ", d, t), on_embed=lambda d, t: step("embedding chunks", d, t)
    )


def _report(report: Any, as_json: bool) -> None:
    from dataclasses import asdict

    if as_json:
        typer.echo(json.dumps({**asdict(report), "unchanged": report.unchanged}, indent=1))
        return
    if report.unchanged:
        typer.echo(f"{report.name}: unchanged (version {report.version[:12]}, {report.chunks} chunks)")
    else:
        typer.echo(
            f"{report.name}: version {report.version[:12]}: {report.documents} documents, {report.chunks} chunks "
            f"({report.embedded} embedded) in {report.seconds:.1f} s"
        )
        for label, items in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
            if items and report.previous is not None:
                typer.echo(f"  {label}: {', '.join(items)}")
    for s in report.skipped:
        typer.echo(f"  skipped {s['path']}: {s['reason']}")


@index_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The index's name (letters, digits, '.', '_', '-')")],
    paths: Annotated[list[Path], typer.Argument(help="Files and directories to index")],
    embedder: Annotated[
        str | None,
        typer.Option(
            "--embedder",
            help="multilingual-e5-small (default), all-MiniLM-L6-v2, or a local sentence-transformers directory",
        ),
    ] = None,
    chunk_tokens: Annotated[int, typer.Option("--chunk-tokens", help="Tokens per chunk at most")] = 200,
    overlap_tokens: Annotated[int, typer.Option("--overlap-tokens", help="Tokens carried between chunks")] = 40,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Index the documents under PATHS as NAME."""
    from cocina.rag import ChunkingConfig, RagError, load_embedder

    try:
        chunking = ChunkingConfig(chunk_tokens, overlap_tokens)
        store = _store(data_dir)
        if store.exists(name):
            _fail(f"an index named {name!r} exists; change it with `cocina index update {name}`")
        model = load_embedder(embedder)
        bars, callbacks = _progress()
        with bars:
            report = store.create(name, paths, model, chunking, callbacks)
    except (RagError, ValueError) as exc:
        _fail(str(exc))
    _report(report, as_json)


@index_app.command("update")
def update(
    name: Annotated[str, typer.Argument(help="The index to update")],
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files and directories (default: those it was built from)")
    ] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """A new version of NAME: new and changed documents embedded, removed ones dropped, the rest reused."""
    from cocina.rag import RagError, load_embedder

    try:
        store = _store(data_dir)
        current = store.open(name)
        model = load_embedder(current.embedder["name"])
        bars, callbacks = _progress()
        with bars:
            report = store.update(name, paths or None, model, callbacks)
    except (RagError, ValueError) as exc:
        _fail(str(exc))
    _report(report, as_json)


@index_app.command("list")
def list_indexes(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """The indexes of the data directory."""
    from cocina.rag import RagError

    store = _store(data_dir)
    rows = []
    for name in store.names():
        try:
            info = store.open(name).info()
        except RagError as exc:
            rows.append({"name": name, "error": str(exc)})
            continue
        rows.append(
            {k: info[k] for k in ("name", "version", "num_documents", "num_chunks", "created_at")}
            | {"embedder": info["embedder"]["name"]}
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo("no indexes; create one with `cocina index create NAME PATH...`")
    for r in rows:
        if "error" in r:
            typer.echo(f"{r['name']}  ({r['error']})")
        else:
            typer.echo(
                f"{r['name']}  {r['version'][:12]}  {r['num_documents']} documents  {r['num_chunks']} chunks  "
                f"{r['embedder']}  {r['created_at']}"
            )


@index_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The index")],
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """An index's version, embedding model, documents, skipped files and earlier versions."""
    from cocina.rag import RagError

    try:
        store = _store(data_dir)
        info = store.open(name).info()
        info["versions"] = store.versions(name)
    except (RagError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    e = info["embedder"]
    typer.echo(f"{info['name']}  version {info['version']}  ({info['created_at']})")
    typer.echo(f"  embedding model: {e['name']} ({e['dim']} dimensions, fingerprint {e['fingerprint'][:12]})")
    typer.echo(f"  chunking: {info['chunking']}")
    typer.echo(f"  {info['num_documents']} documents, {info['num_chunks']} chunks, {info['bytes'] / 2**20:.1f} MiB")
    for d in info["documents"]:
        typer.echo(f"    {d['path']}  {d['format']}  {d['chunks']} chunks")
    for s in info["skipped"]:
        typer.echo(f"  skipped {s['path']}: {s['reason']}")
    typer.echo("  versions:")
    for v in info["versions"]:
        mark = ("  (current)" if v["current"] else "") + ("  (pushed: kept)" if v.get("pushed") else "")
        typer.echo(f"    {v['version'][:12]}  {v['created_at']}  {v['num_chunks']} chunks{mark}")


@index_app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="The index")],
    data_dir: DataDirOption = None,
) -> None:
    """Delete an index and all its versions."""
    from cocina.rag import RagError

    try:
        _store(data_dir).delete(name)
    except (RagError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"deleted {name}")


@index_app.command("query")
def query(
    name: Annotated[str, typer.Argument(help="The index")],
    text: Annotated[str, typer.Argument(help="What to search for")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100, help="Passages to show")] = 5,
    min_score: Annotated[float | None, typer.Option("--min-score", help="Leave out passages under this")] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """The passages of NAME closest to TEXT, best first, with their scores (cosine similarity)."""
    from cocina.rag import RagError, load_embedder

    try:
        index = _store(data_dir).open(name)
        passages = index.query(load_embedder(index.embedder["name"]), [text], top_k, min_score)[0]
    except (RagError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps([p.source() for p in passages], indent=1, ensure_ascii=False))
        return
    if not passages:
        typer.echo("no passage scored above --min-score")
    for n, p in enumerate(passages, start=1):
        where = p.document + (f" p.{p.page}" if p.page is not None else "") + f" #{p.chunk}"
        section = f" [{' > '.join(p.section)}]" if p.section else ""
        typer.echo(f"{n}. {p.score:.3f}  {where}{section}")
        typer.echo("   " + p.text.replace("\n", "\n   "))


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
