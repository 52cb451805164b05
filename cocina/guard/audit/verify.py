"""Verifying an audit log offline, as `rekor-cli loginfo` and `verify` do, and naming what was tampered with.

`verify_log(store, verifier, since=...)` re-reads every entry and checks, in order:

1. each checkpoint's signature (a forged or altered checkpoint is named);
2. entries are numbered 0..n-1 with no gap, and each holds its own position (`i`): a deleted, inserted or
   reordered entry is named by position;
3. each entry's bytes hash to its stored leaf hash (a flipped byte is named);
4. the root recomputed from the entries equals every signed checkpoint's root; the first checkpoint that does not
   match bounds where the change is (between it and the last one that matched);
5. the log is not shorter than any checkpoint (truncation);
6. with `since` (a checkpoint saved earlier), that the log still extends it: same root at that size and a
   consistency proof from it to the newest checkpoint that verifies (RFC 9162 §2.1.4.2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cocina.guard.audit.merkle import CompactRange, ProofError, TreeReader, leaf_hash, verify_consistency
from cocina.guard.audit.note import Checkpoint, NoteError, Verifier, open_checkpoint
from cocina.store import Store

_CHUNK = 4096


@dataclass
class Report:
    """The outcome: `problems` (empty when the log verified) and what was checked."""

    size: int = 0
    checkpoints: int = 0
    latest: Checkpoint | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(store: Store, verifiers: list[Verifier], origin: str | None = None, since: str | None = None) -> Report:
    report = Report()
    checkpoints: list[Checkpoint] = []
    for rec in store.audit_checkpoints():
        try:
            cp = open_checkpoint(rec.note, verifiers, origin)
        except NoteError as exc:
            report.problems.append(f"checkpoint at size {rec.size}: {exc}")
            continue
        if cp.size != rec.size or cp.root != rec.root:
            report.problems.append(f"checkpoint at size {rec.size}: its row does not match its signed note")
        checkpoints.append(cp)
    report.checkpoints = len(checkpoints)
    by_size = {cp.size: cp for cp in checkpoints}
    size = store.audit_size()
    report.size = size
    cr = CompactRange()
    matched_upto = 0
    first_bad: int | None = None
    pos = 0
    while pos < size:
        for entry in store.audit_entries(pos, min(size, pos + _CHUNK)):
            while pos < entry.idx:
                report.problems.append(f"entry {pos} is missing (deleted)")
                cr.append(b"\0" * 32)
                pos += 1
                _check_size(pos, by_size, cr, report)
            claimed = _claimed_index(entry.entry)
            if claimed is None:
                report.problems.append(f"entry {pos} is not a valid audit entry (its bytes were altered)")
            elif claimed != pos:
                what = "an entry was inserted before it" if claimed < pos else "an entry before it was deleted"
                report.problems.append(f"entry at position {pos} says it is entry {claimed}: reordered, or {what}")
            if leaf_hash(entry.entry) != entry.leaf_hash:
                report.problems.append(f"entry {pos} does not match its leaf hash (its bytes were altered)")
            cr.append(leaf_hash(entry.entry))
            pos += 1
            ok = _check_size(pos, by_size, cr, report)
            if ok is True:
                matched_upto = pos
            elif ok is False and first_bad is None:
                first_bad = pos
        if pos < size and not store.audit_entries(pos, min(size, pos + _CHUNK)):
            report.problems.append(f"entries {pos}..{size - 1} are missing")
            break
    if first_bad is not None:
        report.problems.append(
            f"the entries between {matched_upto} and {first_bad} differ from what the checkpoints signed"
        )
    longest = max(by_size, default=0)
    if longest > size:
        report.problems.append(
            f"the log has {size} entries but a checkpoint signed {longest}: it was truncated"
        )
    report.latest = by_size.get(longest)
    if since is not None:
        _check_since(store, verifiers, origin, since, report)
    return report


def _claimed_index(data: bytes) -> int | None:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    i = obj.get("i") if isinstance(obj, dict) else None
    return i if isinstance(i, int) else None


def _check_size(size: int, by_size: dict[int, Checkpoint], cr: CompactRange, report: Report) -> bool | None:
    cp = by_size.get(size)
    if cp is None:
        return None
    if cr.root() != cp.root:
        report.problems.append(f"the root of the first {size} entries is not the one checkpoint {size} signed")
        return False
    return True


def _check_since(store: Store, verifiers: list[Verifier], origin: str | None, since: str, report: Report) -> None:
    try:
        old = open_checkpoint(since, verifiers, origin)
    except NoteError as exc:
        report.problems.append(f"the saved checkpoint: {exc}")
        return
    new = report.latest
    if new is None:
        report.problems.append("the log has no valid checkpoint to compare the saved one with")
        return
    if new.size < old.size:
        report.problems.append(
            f"current size of tree {new.size} is less than previously persisted state {old.size}: the log shrank"
        )
        return
    try:
        proof = TreeReader(store.audit_nodes).consistency_proof(old.size, new.size)
        verify_consistency(old.size, new.size, old.root, new.root, proof)
    except ProofError as exc:
        report.problems.append(f"the log is not consistent with the saved checkpoint of size {old.size}: {exc}")
