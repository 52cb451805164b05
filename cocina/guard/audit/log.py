"""The audit log: every prediction appends an entry to an append-only RFC 9162 Merkle tree in the store, and
signed checkpoints (C2SP) state its size and root.

An entry is canonical JSON (sorted keys, no spaces) that holds its own position (`i`), the time, the key id, the
model and version, keyed hashes (HMAC-SHA256) of the input and output — never the text — and the scanners'
verdicts. Holding its position lets the verifier name a reordered, inserted or deleted entry, not only notice
that the root changed. Appending stores the entry, its leaf hash and the perfect-subtree roots it completes in one
transaction; several servers sharing a store serialise on the entry's position (a lost race reloads the log's
edge and tries again). Proofs read O(log n) stored nodes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from cocina.guard.audit.merkle import CompactRange, ProofError, TreeReader, leaf_hash
from cocina.guard.audit.note import Checkpoint, Signer, Verifier, sign_checkpoint
from cocina.store import AuditEntry, CheckpointRecord, Store

log = logging.getLogger("cocina.guard.audit")


def canonical(obj: Any) -> bytes:
    """The bytes an entry is hashed as: JSON with sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class AuditLog:
    """Append entries, sign checkpoints, and prove inclusion and consistency over a `Store`."""

    def __init__(self, store: Store, signer: Signer, origin: str) -> None:
        self.store = store
        self.signer = signer
        self.origin = origin
        self.reader = TreeReader(store.audit_nodes)
        self._range = CompactRange()
        self._task: asyncio.Task[None] | None = None
        self.reload()

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier()

    @property
    def size(self) -> int:
        return self._range.size

    def reload(self) -> None:
        """Read the log's size and right edge from the store (after another writer appended)."""
        size = self.store.audit_size()
        keys = CompactRange.edge_keys(size)
        nodes = self.store.audit_nodes(keys)
        missing = [k for k in keys if k not in nodes]
        if missing:
            raise ProofError(f"the audit log of {size} entries lacks its subtree hashes {missing[:3]}")
        self._range = CompactRange(size, [nodes[k] for k in keys])

    def append(self, prediction_id: str | None, fields: dict[str, Any]) -> int:
        """Append an entry; returns its position."""
        for _ in range(16):
            idx = self._range.size
            data = canonical({**fields, "i": idx})
            leaf = leaf_hash(data)
            trial = CompactRange(self._range.size, self._range.edge)
            nodes = trial.append(leaf)
            if self.store.audit_append(AuditEntry(idx, prediction_id, data, leaf), nodes):
                self._range = trial
                return idx
            self.reload()  # another writer took this position
        raise RuntimeError("could not append to the audit log: too much contention")

    def checkpoint(self) -> CheckpointRecord:
        """Sign the log's current state (once per size) and keep it; returns the latest checkpoint."""
        size = self._range.size
        latest = self.store.audit_checkpoint()
        if latest is not None and latest.size >= size:
            return latest
        root = self._range.root()
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
        record = CheckpointRecord(size, root, note, time.time())
        self.store.audit_put_checkpoint(record)
        return record

    def inclusion(self, idx: int, size: int | None = None) -> dict[str, Any]:
        """Entry `idx`, its leaf hash and its inclusion proof against a checkpoint (the latest, or the one for
        `size`), as JSON-able data."""
        cp = self.store.audit_checkpoint(size) if size is not None else self.checkpoint()
        if cp is None:
            raise ProofError(f"no checkpoint for size {size}")
        if idx >= cp.size:
            cp = self.checkpoint()
        entries = self.store.audit_entries(idx, idx + 1)
        if not entries:
            raise ProofError(f"no audit entry {idx}")
        entry = entries[0]
        proof = self.reader.inclusion_proof(idx, cp.size)
        return {
            "index": idx,
            "prediction_id": entry.prediction_id,
            "entry": json.loads(entry.entry),
            "leaf_hash": entry.leaf_hash.hex(),
            "tree_size": cp.size,
            "root_hash": cp.root.hex(),
            "proof": [p.hex() for p in proof],
            "checkpoint": cp.note,
        }

    def consistency(self, old_size: int, new_size: int | None = None) -> dict[str, Any]:
        cp = self.store.audit_checkpoint(new_size) if new_size is not None else self.checkpoint()
        if cp is None:
            raise ProofError(f"no checkpoint for size {new_size}")
        if old_size > cp.size:
            raise ProofError(f"the log has {cp.size} entries, fewer than {old_size}")
        proof = self.reader.consistency_proof(old_size, cp.size)
        return {
            "old_size": old_size,
            "new_size": cp.size,
            "old_root": self.reader.root(old_size).hex(),
            "new_root": cp.root.hex(),
            "proof": [p.hex() for p in proof],
            "checkpoint": cp.note,
        }

    def start(self, interval_s: float) -> None:
        """Sign a checkpoint every `interval_s` while the log grows."""
        self._task = asyncio.get_running_loop().create_task(self._loop(interval_s))

    async def _loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.checkpoint()
            except Exception:
                log.exception("could not sign an audit checkpoint")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            self.checkpoint()  # the last entries get a signed checkpoint before the server stops
        except Exception:
            log.exception("could not sign the final audit checkpoint")
