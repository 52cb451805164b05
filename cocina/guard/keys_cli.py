"""`cocina keys`: create, list, rotate, revoke API keys and show their usage (in the server's data directory).

The key is printed once, at creation or rotation; the store keeps only its keyed hash. Keys take effect on a
running server within a second (it re-reads the store); once one exists, every route needs a key.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cocina.guard.cli_options import DEFAULT_DIR, DataDir, StoreUrl, data_dir_of, open_server_store

if TYPE_CHECKING:
    from cocina.guard.keys import Keys

app = typer.Typer(help="API keys: create, list, rotate, revoke, usage.", no_args_is_help=True)


def _keys(given: Path | None, store_url: str | None = None) -> Keys:
    from cocina.guard.guard import GuardSecrets
    from cocina.guard.keys import KeyHasher, Keys

    data_dir = data_dir_of(given)
    return Keys(open_server_store(data_dir, store_url, "keys"), KeyHasher(GuardSecrets(data_dir).key_hashing))


def _when(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"cocina keys: {message}", err=True)
    return typer.Exit(1)


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name for the key (who or what uses it)")],
    models: Annotated[
        list[str] | None, typer.Option("--models", help="Models it may use, glob patterns (acme/*); repeatable")
    ] = None,
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated: predict,push,deploy,admin")] = "predict",
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h")] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests per minute")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", help="Tokens per minute (prompt + max_tokens, refunded)")] = None,
    monthly_tokens: Annotated[int | None, typer.Option("--monthly-tokens", help="Token budget per month")] = None,
    data_dir: DataDir = DEFAULT_DIR,
    store_url: StoreUrl = None,
) -> None:
    """Create a key and print it (once: it is not stored)."""
    from cocina.guard.keys import KeyError_, parse_duration

    patterns = [p for m in models or [] for p in m.split(",") if p]
    try:
        keys = _keys(data_dir, store_url)
        rec, text = keys.create(
            name,
            models=patterns,
            scopes=[s.strip() for s in scopes.split(",") if s.strip()],
            expires_in_s=parse_duration(expires) if expires else None,
            rpm=rpm,
            tpm=tpm,
            monthly_tokens=monthly_tokens,
        )
    except KeyError_ as exc:
        raise _fail(str(exc)) from None
    typer.echo(text)
    typer.echo(f"# id {rec.id}, name {rec.name!r}; shown once: store it now", err=True)


@app.command("list")
def list_keys(
    data_dir: DataDir = DEFAULT_DIR,
    store_url: StoreUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """Every key: id, name, prefix, models, scopes, limits, expiry, state."""
    from cocina.guard.keys import display

    now = time.time()
    for rec in _keys(data_dir, store_url).store.list_keys():
        state = (
            "revoked" if rec.revoked_at else "expired" if rec.expires_at and rec.expires_at <= now else "active"
        )
        row = {
            "id": rec.id,
            "name": rec.name,
            "key": display(rec.lookup),
            "models": rec.models or ["*"],
            "scopes": rec.scopes,
            "rpm": rec.rpm,
            "tpm": rec.tpm,
            "monthly_tokens": rec.monthly_tokens,
            "expires": _when(rec.expires_at),
            "last_used": _when(rec.last_used_at),
            "state": state,
        }
        if as_json:
            typer.echo(json.dumps(row))
        else:
            limits = ", ".join(f"{k}={row[k]}" for k in ("rpm", "tpm", "monthly_tokens") if row[k] is not None)
            typer.echo(
                f"{rec.id}  {row['key']:14s} {state:8s} {rec.name!r} models={','.join(rec.models or ['*'])} "
                f"scopes={','.join(rec.scopes)} {limits} expires={row['expires']} last_used={row['last_used']}"
            )


@app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...)")],
    grace: Annotated[str | None, typer.Option("--grace", help="How long the old key keeps working, e.g. 1h")] = None,
    data_dir: DataDir = DEFAULT_DIR,
    store_url: StoreUrl = None,
) -> None:
    """A new secret for the same key id (its usage and audit history stay); prints the new key once."""
    from cocina.guard.keys import KeyError_, parse_duration

    try:
        _, text = _keys(data_dir, store_url).rotate(key_id, grace_s=parse_duration(grace) if grace else 0.0)
    except KeyError_ as exc:
        raise _fail(str(exc)) from None
    typer.echo(text)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id")],
    data_dir: DataDir = DEFAULT_DIR,
    store_url: StoreUrl = None,
) -> None:
    """Revoke a key at once (a running server refuses it from its next request)."""
    from cocina.guard.keys import KeyError_

    try:
        rec = _keys(data_dir, store_url).revoke(key_id)
    except KeyError_ as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"revoked {rec.id} ({rec.name!r})")


@app.command("usage")
def usage(
    key_id: Annotated[str, typer.Argument(help="The key's id")],
    data_dir: DataDir = DEFAULT_DIR,
    store_url: StoreUrl = None,
) -> None:
    """Requests and tokens in the last minute and by month, against the key's limits."""
    from cocina.guard.keys import KeyError_
    from cocina.guard.limits import Limiter

    try:
        keys = _keys(data_dir, store_url)
        rec = keys.get(key_id)
    except KeyError_ as exc:
        raise _fail(str(exc)) from None
    report = Limiter(keys.store).usage(rec)
    report["limits"] = {"rpm": rec.rpm, "tpm": rec.tpm, "monthly_tokens": rec.monthly_tokens}
    typer.echo(json.dumps(report, indent=2))


def register(root: typer.Typer) -> None:
    """Add `keys` to the `cocina` command."""
    root.add_typer(app, name="keys")
