"""`cocina keys` and `cocina audit` on a data directory, and `cocina serve --guard` refusing a bad file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from cocina.cli import build_app
from cocina.guard.audit.log import AuditLog
from cocina.guard.guard import GuardSecrets
from cocina.store import SQLiteStore

ECHO = Path(__file__).resolve().parents[1] / "server" / "fixtures" / "projects" / "echo"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.output


def test_keys_errors_are_named(tmp_path: Path) -> None:
    d = str(tmp_path)
    assert _run("keys", "revoke", "key_nope", "--data-dir", d) == (1, "cocina keys: no key with id key_nope\n")
    code, out = _run("keys", "create", "--name", "x", "--scopes", "predict,root", "--data-dir", d)
    assert code == 1 and "unknown scope 'root'" in out
    code, out = _run("keys", "create", "--name", "x", "--expires", "soon", "--data-dir", d)
    assert code == 1 and "not a duration" in out
    code, out = _run("keys", "create", "--name", "ok", "--models", "acme/*,beta/*", "--expires", "30d",
                     "--data-dir", d)
    assert code == 0
    (row,) = [json.loads(line) for line in _run("keys", "list", "--json", "--data-dir", d)[1].splitlines()]
    assert row["models"] == ["acme/*", "beta/*"] and row["state"] == "active" and row["expires"] != "-"


def test_keys_and_audit_default_to_the_servers_data_directory(tmp_path: Path) -> None:
    import os

    from cocina.config import default_data_dir

    home = default_data_dir()  # this test's COCINA_HOME, as `cocina serve` would use without --data-dir
    assert home == Path(os.environ["COCINA_HOME"])
    code, out = _run("keys", "create", "--name", "home")
    assert code == 0, out
    assert [k.name for k in SQLiteStore(home / "predictions.db").list_keys()] == ["home"]
    assert (home / "guard" / "secret").exists() and not Path(".cocina", "guard", "secret").exists()
    assert _run("audit", "key")[1] == _run("audit", "key", "--data-dir", str(home))[1]


def _log_with_entries(data_dir: Path, n: int) -> AuditLog:
    log = AuditLog(SQLiteStore(data_dir / "predictions.db"), GuardSecrets(data_dir).signer, "cocina/audit")
    for i in range(n):
        log.append(f"p{i}", {"status": "succeeded", "n": i})
    log.checkpoint()
    return log


def test_audit_commands(tmp_path: Path) -> None:
    d = str(tmp_path)
    _log_with_entries(tmp_path, 5)
    code, note = _run("audit", "checkpoint", "--data-dir", d)
    assert code == 0 and note.startswith("cocina/audit\n5\n")
    saved = tmp_path / "saved.note"
    saved.write_text(note)
    code, out = _run("audit", "proof", "p3", "--data-dir", d)
    assert code == 0 and json.loads(out.split("\n# ")[0])["index"] == 3 and "is included in the signed tree" in out
    assert _run("audit", "proof", "missing", "--data-dir", d)[0] == 1
    log = _log_with_entries(tmp_path, 3)  # the log grows
    code, out = _run("audit", "verify", "--since", str(saved), "--data-dir", d)
    assert code == 0 and "Verification Successful!" in out and "Tree Size: 8" in out, out
    # Someone edits an entry: verify fails and names it.
    con = sqlite3.connect(tmp_path / "predictions.db")
    con.execute("UPDATE audit_entries SET entry = replace(entry, 'succeeded', 'failed') WHERE idx = 2")
    con.commit()
    con.close()
    code, out = _run("audit", "verify", "--data-dir", d)
    assert code == 1 and "FAIL entry 2 does not match its leaf hash (its bytes were altered)" in out
    # A verifier key given by hand that is not the log's: nothing verifies.
    other = GuardSecrets(tmp_path / "elsewhere").signer.verifier().encode()
    code, out = _run("audit", "verify", "--key", other, "--data-dir", d)
    assert code == 1 and "no known key signed this note" in out
    log.store.close()


def test_serve_refuses_a_bad_guard_file(tmp_path: Path) -> None:
    bad = tmp_path / "guard.yaml"
    bad.write_text("scanners:\n  input:\n    - {type: antivirus}\n")
    code, out = _run("serve", str(ECHO), "--guard", str(bad), "--data-dir", str(tmp_path / "d"))
    assert code == 1 and "scanners.input[0].type: 'antivirus' is not one of" in out
    bad.write_text("scanners: [")
    code, out = _run("serve", str(ECHO), "--guard", str(bad), "--data-dir", str(tmp_path / "d"))
    assert code == 1 and "not valid YAML" in out


def test_keys_and_audit_of_a_server_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """`--store`: the keys and audit log of a server started with `--store postgresql://...` (its replicas share
    them), not the data directory's SQLite file."""
    from cocina.store import open_store

    d = str(tmp_path)
    code, out = _run("keys", "create", "--name", "shared", "--data-dir", d, "--store", postgres_url)
    assert code == 0, out
    listed = _run("keys", "list", "--json", "--data-dir", d, "--store", postgres_url)[1]
    (row,) = [json.loads(line) for line in listed.splitlines()]
    assert row["name"] == "shared" and row["state"] == "active"
    assert _run("keys", "list", "--json", "--data-dir", d)[1] == ""  # the SQLite file has none
    store = open_store(postgres_url)
    try:
        assert [k.name for k in store.list_keys()] == ["shared"]
        log = AuditLog(store, GuardSecrets(tmp_path).signer, "cocina/audit")
        for i in range(3):
            log.append(f"p{i}", {"status": "succeeded", "n": i})
    finally:
        store.close()
    code, note = _run("audit", "checkpoint", "--data-dir", d, "--store", postgres_url)
    assert code == 0 and note.startswith("cocina/audit\n3\n"), note
    code, out = _run("audit", "verify", "--data-dir", d, "--store", postgres_url)
    assert code == 0 and "Tree Size: 3" in out, out
    code, out = _run("keys", "list", "--data-dir", d, "--store", "mysql://x@127.0.0.1/db")
    assert code == 1 and "cocina keys: --store: mysql://" in out
