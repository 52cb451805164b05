"""`cocina audit`: the audit log from the command line, offline, over the server's data directory.

- `cocina audit checkpoint` signs the log's current state (if it grew) and prints the signed note; save it to
  verify later that the log only grew (`verify --since FILE`).
- `cocina audit key` prints the verifier key (give it to whoever verifies).
- `cocina audit proof ID` prints a prediction's entry (or entry number ID) with its inclusion proof, verified.
- `cocina audit verify [--since FILE] [--key VKEY]` checks every entry, every checkpoint's signature and root, and
  that the log extends the saved checkpoint, naming what was changed if anything was. Exit status 1 if not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cocina.guard.cli_options import DEFAULT_DIR, DataDir, StoreUrl, data_dir_of, open_server_store

if TYPE_CHECKING:
    from cocina.guard.audit.log import AuditLog

app = typer.Typer(help="The audit log: checkpoints, proofs, verification.", no_args_is_help=True)


def _open(given: Path | None, origin: str, store_url: str | None = None) -> AuditLog:
    from cocina.guard.audit.log import AuditLog
    from cocina.guard.guard import GuardSecrets

    data_dir = data_dir_of(given)
    return AuditLog(open_server_store(data_dir, store_url, "audit"), GuardSecrets(data_dir).signer, origin)


Origin = Annotated[str, typer.Option("--origin", help="The log's origin line (as in the guard file)")]


@app.command("checkpoint")
def checkpoint(data_dir: DataDir = DEFAULT_DIR, store_url: StoreUrl = None, origin: Origin = "cocina/audit") -> None:
    """Print the latest signed checkpoint (signing a new one if the log grew)."""
    typer.echo(_open(data_dir, origin, store_url).checkpoint().note, nl=False)


@app.command("key")
def key(data_dir: DataDir = DEFAULT_DIR, store_url: StoreUrl = None, origin: Origin = "cocina/audit") -> None:
    """Print the verifier key of the log's checkpoints."""
    typer.echo(_open(data_dir, origin, store_url).verifier.encode())


@app.command("proof")
def proof(
    ident: Annotated[str, typer.Argument(help="A prediction id, or an entry's number")],
    data_dir: DataDir = DEFAULT_DIR,
    store_url: StoreUrl = None,
    origin: Origin = "cocina/audit",
) -> None:
    """Print an entry with its inclusion proof against the latest checkpoint, after verifying it."""
    from cocina.guard.audit.merkle import ProofError, leaf_hash, verify_inclusion
    from cocina.guard.audit.note import NoteError, open_checkpoint

    log = _open(data_dir, origin, store_url)
    entry = log.store.audit_entry_for(ident)
    idx = entry.idx if entry is not None else (int(ident) if ident.isdigit() else None)
    if idx is None:
        typer.echo(f"cocina audit: no audit entry for {ident}", err=True)
        raise typer.Exit(1)
    try:
        result = log.inclusion(idx)
        cp = open_checkpoint(result["checkpoint"], [log.verifier], origin)
        data = log.store.audit_entries(idx, idx + 1)[0].entry
        verify_inclusion(idx, cp.size, leaf_hash(data), [bytes.fromhex(p) for p in result["proof"]], cp.root)
    except (ProofError, NoteError) as exc:
        typer.echo(f"cocina audit: entry {ident}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2))
    typer.echo(f"# entry {idx} is included in the signed tree of {cp.size} entries", err=True)


@app.command("verify")
def verify(
    data_dir: DataDir = DEFAULT_DIR,
    store_url: StoreUrl = None,
    since: Annotated[Path | None, typer.Option("--since", help="A checkpoint saved earlier")] = None,
    verifier_key: Annotated[
        str | None, typer.Option("--key", help="The verifier key (default: the data directory's own)")
    ] = None,
    origin: Origin = "cocina/audit",
) -> None:
    """Verify the whole log; name every problem found."""
    from cocina.guard.audit.note import NoteError, Verifier
    from cocina.guard.audit.verify import verify_log

    log = _open(data_dir, origin, store_url)
    try:
        verifiers = [Verifier.parse(verifier_key)] if verifier_key else [log.verifier]
    except NoteError as exc:
        typer.echo(f"cocina audit: --key: {exc}", err=True)
        raise typer.Exit(2) from None
    report = verify_log(log.store, verifiers, origin, since.read_text() if since else None)
    for problem in report.problems:
        typer.echo(f"FAIL {problem}")
    if not report.ok:
        raise typer.Exit(1)
    latest = report.latest
    typer.echo("Verification Successful!")
    typer.echo(f"Tree Size: {report.size}")
    typer.echo(f"Checkpoints: {report.checkpoints}")
    if latest is not None:
        typer.echo(f"Root Hash (size {latest.size}): {latest.root.hex()}")


def register(root: typer.Typer) -> None:
    """Add `audit` to the `cocina` command."""
    root.add_typer(app, name="audit")
