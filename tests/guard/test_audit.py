"""The audit log: signed checkpoints in the C2SP format, proofs that verify, and every kind of tampering —
a flipped byte, a deleted, reordered or inserted entry, a truncated log, a forged checkpoint — detected and
named by the verifier (`verify_log`, what `cocina audit verify` runs)."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from cocina.guard.audit.log import AuditLog
from cocina.guard.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from cocina.guard.audit.note import (
    Checkpoint,
    NoteError,
    Signer,
    Verifier,
    key_id,
    open_checkpoint,
    open_note,
)
from cocina.guard.audit.verify import verify_log
from cocina.store import SQLiteStore

ORIGIN = "example.com/cocina"


def test_signed_notes_follow_c2sp() -> None:
    signer = Signer.generate("cocina")
    v = signer.verifier()
    assert Verifier.parse(v.encode()) == v and Signer.parse(signer.encode()).verifier() == v
    pub = base64.b64decode(v.encode().split("+", 2)[2])[1:]
    assert v.id == key_id("cocina", pub) and len(v.id) == 4
    cp = Checkpoint(ORIGIN, 5, b"\x01" * 32)
    note = signer.sign(cp.text())
    text, lines = note.split("\n\n")[0], note.split("\n\n")[1]
    root_b64 = base64.b64encode(b"\x01" * 32).decode()
    assert text == f"{ORIGIN}\n5\n{root_b64}"
    assert lines.startswith("\u2014 cocina ")
    assert open_checkpoint(note, [v], ORIGIN) == cp
    # An unknown co-signer's line is ignored; a note no known key signed is refused.
    other = Signer.generate("witness")
    cosigned = note + other.sign(cp.text()).split("\n\n")[1]
    assert open_note(cosigned, [v])[1] == ["cocina"]
    with pytest.raises(NoteError, match="no known key"):
        open_note(other.sign(cp.text()), [v])
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note.replace("\n5\n", "\n6\n"), [v])
    with pytest.raises(NoteError, match=r"not .*example\.org"):
        open_checkpoint(note, [v], "example.org/log")


def _log(tmp_path: Path, n: int, *, checkpoint_every: int = 4) -> tuple[Path, AuditLog]:
    db = tmp_path / "predictions.db"
    store = SQLiteStore(db)
    log = AuditLog(store, Signer.generate("cocina"), ORIGIN)
    for i in range(n):
        log.append(f"p{i}", {"model": "acme/echo", "status": "succeeded", "input_hmac": f"{i:064x}"})
        if (i + 1) % checkpoint_every == 0:
            log.checkpoint()
    log.checkpoint()
    return db, log


def _problems(log: AuditLog) -> list[str]:
    return verify_log(log.store, [log.verifier], ORIGIN).problems


def test_an_untouched_log_verifies_and_its_proofs_check(tmp_path: Path) -> None:
    _, log = _log(tmp_path, 23)
    assert _problems(log) == []
    cp = open_checkpoint(log.checkpoint().note, [log.verifier], ORIGIN)
    assert cp.size == 23
    for idx in (0, 7, 22):
        p = log.inclusion(idx)
        entry = log.store.audit_entries(idx, idx + 1)[0]
        verify_inclusion(idx, cp.size, leaf_hash(entry.entry), [bytes.fromhex(h) for h in p["proof"]], cp.root)
    c = log.consistency(8)
    verify_consistency(8, 23, bytes.fromhex(c["old_root"]), cp.root, [bytes.fromhex(h) for h in c["proof"]])
    # A second writer (another replica on the same file) appends after this one: positions never collide.
    other = AuditLog(SQLiteStore(tmp_path / "predictions.db"), log.signer, ORIGIN)
    assert other.append("q", {"x": 1}) == 23 and log.append("r", {"x": 2}) == 24
    log.checkpoint()
    assert _problems(log) == []


def _edit(db: Path, sql: str, *args: object) -> None:
    con = sqlite3.connect(db)
    con.execute(sql, args)
    con.commit()
    con.close()


def test_a_flipped_byte_is_named(tmp_path: Path) -> None:
    db, log = _log(tmp_path, 12)
    data = bytearray(log.store.audit_entries(5, 6)[0].entry)
    data[data.index(b"succeeded")] ^= 0x01
    _edit(db, "UPDATE audit_entries SET entry = ? WHERE idx = 5", bytes(data))
    problems = _problems(log)
    assert "entry 5 does not match its leaf hash (its bytes were altered)" in problems
    # Even with its leaf hash recomputed to match, the signed root gives it away (and bounds where).
    _edit(db, "UPDATE audit_entries SET leaf_hash = ? WHERE idx = 5", leaf_hash(bytes(data)))
    problems = _problems(log)
    assert any("not the one checkpoint 8 signed" in p for p in problems)
    assert "the entries between 4 and 8 differ from what the checkpoints signed" in problems


def test_a_deleted_entry_is_named(tmp_path: Path) -> None:
    db, log = _log(tmp_path, 12)
    _edit(db, "DELETE FROM audit_entries WHERE idx = 6")
    assert "entry 6 is missing (deleted)" in _problems(log)


def test_a_deleted_and_renumbered_entry_is_named(tmp_path: Path) -> None:
    db, log = _log(tmp_path, 12)
    _edit(db, "DELETE FROM audit_entries WHERE idx = 6")
    for i in range(7, 12):
        _edit(db, "UPDATE audit_entries SET idx = ? WHERE idx = ?", i - 1, i)
    problems = _problems(log)
    assert "entry at position 6 says it is entry 7: reordered, or an entry before it was deleted" in problems
    assert "the log has 11 entries but a checkpoint signed 12: it was truncated" in problems


def test_reordered_entries_are_named(tmp_path: Path) -> None:
    db, log = _log(tmp_path, 12)
    a, b = log.store.audit_entries(3, 5)
    _edit(db, "UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE idx = 3", b.entry, b.leaf_hash)
    _edit(db, "UPDATE audit_entries SET entry = ?, leaf_hash = ? WHERE idx = 4", a.entry, a.leaf_hash)
    problems = _problems(log)
    assert "entry at position 3 says it is entry 4: reordered, or an entry before it was deleted" in problems
    assert "entry at position 4 says it is entry 3: reordered, or an entry was inserted before it" in problems


def test_an_inserted_entry_is_named(tmp_path: Path) -> None:
    db, log = _log(tmp_path, 12)
    for i in range(11, 4, -1):
        _edit(db, "UPDATE audit_entries SET idx = ? WHERE idx = ?", i + 1, i)
    forged = b'{"i":5,"model":"acme/echo","status":"succeeded"}'
    _edit(db, "INSERT INTO audit_entries (idx, prediction_id, entry, leaf_hash) VALUES (5, 'x', ?, ?)",
          forged, leaf_hash(forged))
    problems = _problems(log)
    assert "entry at position 6 says it is entry 5: reordered, or an entry was inserted before it" in problems
    assert any("not the one checkpoint 8 signed" in p for p in problems)


def test_a_truncated_log_is_named(tmp_path: Path) -> None:
    db, log = _log(tmp_path, 12)
    _edit(db, "DELETE FROM audit_entries WHERE idx >= 9")
    assert "the log has 9 entries but a checkpoint signed 12: it was truncated" in _problems(log)


def test_a_forged_checkpoint_is_named(tmp_path: Path) -> None:
    db, log = _log(tmp_path, 12)
    forger = Signer.generate("cocina")  # same name, another key
    fake = forger.sign(Checkpoint(ORIGIN, 12, b"\x00" * 32).text())
    _edit(db, "UPDATE audit_checkpoints SET note = ?, root = ? WHERE size = 12", fake, b"\x00" * 32)
    assert "checkpoint at size 12: no known key signed this note (a forged checkpoint, or the wrong verifier key)" \
        in _problems(log)
    # A checkpoint whose text was edited after signing.
    good = log.store.audit_checkpoint(8)
    assert good is not None
    _edit(db, "UPDATE audit_checkpoints SET note = ? WHERE size = 8", good.note.replace("\n8\n", "\n9\n"))
    assert any(p.startswith("checkpoint at size 8: the signature of cocina does not verify") for p in _problems(log))


def test_since_a_saved_checkpoint(tmp_path: Path) -> None:
    db, log = _log(tmp_path, 8)
    saved = log.checkpoint().note
    for i in range(8, 15):
        log.append(f"p{i}", {"n": i})
    log.checkpoint()
    assert verify_log(log.store, [log.verifier], ORIGIN, since=saved).problems == []
    # A log rewritten from the start (all new checkpoints re-signed) is not consistent with the saved one.
    _edit(db, "DELETE FROM audit_entries")
    _edit(db, "DELETE FROM audit_nodes")
    _edit(db, "DELETE FROM audit_checkpoints")
    log.reload()
    for i in range(15):
        log.append(f"other{i}", {"n": -i})
    log.checkpoint()
    problems = verify_log(log.store, [log.verifier], ORIGIN, since=saved).problems
    assert any(p.startswith("the log is not consistent with the saved checkpoint of size 8") for p in problems)
