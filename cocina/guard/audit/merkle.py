"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, proofs and their verification.

Hashing (RFC 9162 §2.1.1): a leaf is SHA-256(0x00 ‖ data), an interior node SHA-256(0x01 ‖ left ‖ right) — the
prefixes keep a leaf from passing for a node (second-preimage attacks) — and the tree over n leaves splits at k,
the largest power of two strictly less than n. The empty tree's hash is SHA-256("").

Proofs are built from the roots of *perfect* subtrees (2^level leaves starting at a multiple of 2^level), which
the log stores as it grows (`node(level, idx)`), so a proof over a million entries needs about 40 look-ups, not
a walk of the tree. The verifiers follow RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by step,
including the checks that every proof element is consumed: a verifier that skips them accepts a wrong size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof does not verify (or the request for one makes no sense); the message says which check failed."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The tree hash of a list of leaf hashes, straight from the definition (for tests and small trees)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = split_point(n)
    return node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


NodeSource = Callable[[list[tuple[int, int]]], dict[tuple[int, int], bytes]]
"""Fetches perfect-subtree roots: (level, idx) -> hash, level 0 being the leaves."""


def _perfect_pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees that the range [start, end) of a tree decomposes into, as RFC 9162 splits it."""
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        level = size.bit_length() - 1
        return [(level, start >> level)]
    k = split_point(size)
    return _perfect_pieces(start, start + k) + _perfect_pieces(start + k, end)


class TreeReader:
    """Computes subtree hashes, roots and proofs of a log of `size` entries from stored perfect-subtree roots."""

    def __init__(self, fetch: NodeSource) -> None:
        self._fetch = fetch

    def _nodes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The hash of each range [start, end), fetching every perfect piece they need in one call."""
        pieces = [_perfect_pieces(s, e) for s, e in ranges]
        wanted = sorted({p for ps in pieces for p in ps})
        found = self._fetch(wanted)
        missing = [p for p in wanted if p not in found]
        if missing:
            raise ProofError(f"the log lacks the subtree hashes {missing[:3]} (it is shorter than asked, or damaged)")
        return [self._combine(s, e, found) for s, e in ranges]

    def _combine(self, start: int, end: int, found: dict[tuple[int, int], bytes]) -> bytes:
        size = end - start
        if size & (size - 1) == 0 and start % size == 0:
            level = size.bit_length() - 1
            return found[(level, start >> level)]
        k = split_point(size)
        return node_hash(self._combine(start, start + k, found), self._combine(start + k, end, found))

    def root(self, size: int) -> bytes:
        """MTH of the first `size` entries."""
        if size == 0:
            return EMPTY_ROOT
        return self._nodes([(0, size)])[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 PATH(index, D[0:size]): the audit path of entry `index` in the tree of `size` entries."""
        if not 0 <= index < size:
            raise ProofError(f"entry {index} is not in a tree of {size} entries")
        ranges: list[tuple[int, int]] = []
        start, end, m = 0, size, index
        # Walk down: at each split, the sibling subtree's hash is part of the path (collected leaf-side first).
        while end - start > 1:
            k = split_point(end - start)
            if m < k:
                ranges.append((start + k, end))
                end = start + k
            else:
                ranges.append((start, start + k))
                start, m = start + k, m - k
        return list(reversed(self._nodes(ranges)))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 PROOF(old_size, D[0:new_size]): proves the old tree is a prefix of the new one."""
        if not 0 <= old_size <= new_size:
            raise ProofError(f"no consistency proof from {old_size} to {new_size} entries")
        if old_size in (0, new_size):
            return []
        ranges: list[tuple[int, int]] = []

        def subproof(m: int, start: int, end: int, whole: bool) -> None:
            n = end - start
            if m == n:
                if not whole:
                    ranges.append((start, end))
                return
            k = split_point(n)
            if m <= k:
                subproof(m, start, start + k, whole)
                ranges.append((start + k, end))
            else:
                subproof(m - k, start + k, end, False)
                ranges.append((start, start + k))

        subproof(old_size, 0, new_size, True)
        return self._nodes(ranges)


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: that `leaf` is entry `index` of the tree of `size` entries with `root`; raises
    `ProofError` naming the failed check."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not less than the tree size {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree requires")
    if r != root:
        raise ProofError("the inclusion proof does not lead to the root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: that the tree of `old_size` entries with `old_root` is a prefix of the tree of
    `new_size` entries with `new_root`; raises `ProofError` naming the failed check."""
    if old_size > new_size:
        raise ProofError(f"the new tree ({new_size} entries) is smaller than the old one ({old_size})")
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("two trees of the same size have different roots")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the trees require")
    if fr != old_root:
        raise ProofError("the consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("the consistency proof does not lead to the new root")


class CompactRange:
    """The right edge of a growing tree: the roots of its perfect subtrees, largest first. Appending a leaf
    returns the perfect-subtree roots it completes (to store), and `root()` is the tree's hash, in O(log n)."""

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()) -> None:
        if len(edge) != bin(size).count("1"):
            raise ValueError(f"a tree of {size} entries has {bin(size).count('1')} edge roots, not {len(edge)}")
        self.size = size
        self.edge = list(edge)

    @staticmethod
    def edge_keys(size: int) -> list[tuple[int, int]]:
        """(level, idx) of the edge roots of a tree of `size` entries, largest first."""
        keys, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                keys.append((level, start >> level))
                start += 1 << level
        return keys

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; the (level, idx, hash) of every perfect subtree it completes (level >= 1)."""
        made: list[tuple[int, int, bytes]] = []
        h, level, idx = leaf, 0, self.size
        while idx & 1:
            h = node_hash(self.edge.pop(), h)
            level += 1
            idx >>= 1
            made.append((level, idx, h))
        self.edge.append(h)
        self.size += 1
        return made

    def root(self) -> bytes:
        if not self.edge:
            return EMPTY_ROOT
        r = self.edge[-1]
        for h in reversed(self.edge[:-1]):
            r = node_hash(h, r)
        return r
