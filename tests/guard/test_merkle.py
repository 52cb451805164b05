"""RFC 6962/9162 hashing and proofs against the Certificate Transparency test vectors, and every way a proof
can be wrong."""

from __future__ import annotations

import itertools

import pytest

from cocina.guard.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ProofError,
    TreeReader,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# The CT test vectors (RFC 6962 data; recomputed in reference/guard.md §5).
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                      "606162636465666768696a6b6c6d6e6f")]
ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
PROOF_0_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def _reader(hashes: list[bytes]) -> TreeReader:
    """A reader over an in-memory log built the way the audit log builds it (a compact range's nodes)."""
    nodes: dict[tuple[int, int], bytes] = {}
    cr = CompactRange()
    for i, h in enumerate(hashes):
        nodes[(0, i)] = h
        for level, idx, node in cr.append(h):
            nodes[(level, idx)] = node
    return TreeReader(lambda keys: {k: nodes[k] for k in keys if k in nodes})


def test_roots_match_the_vectors() -> None:
    hashes = [leaf_hash(x) for x in LEAVES]
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_of([]) == EMPTY_ROOT == bytes.fromhex(empty)
    cr = CompactRange()
    reader = _reader(hashes)
    for n in range(1, 9):
        assert root_of(hashes[:n]).hex() == ROOTS[n]
        cr.append(hashes[n - 1])
        assert cr.root().hex() == ROOTS[n]
        assert reader.root(n).hex() == ROOTS[n]


def test_inclusion_proof_vector() -> None:
    hashes = [leaf_hash(x) for x in LEAVES]
    proof = _reader(hashes).inclusion_proof(0, 8)
    assert [p.hex() for p in proof] == PROOF_0_8
    verify_inclusion(0, 8, hashes[0], proof, bytes.fromhex(ROOTS[8]))


def test_every_proof_of_small_trees_verifies_and_every_corruption_fails() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(37)]
    reader = _reader(hashes)
    for size in range(1, 38):
        root = root_of(hashes[:size])
        for index in range(size):
            proof = reader.inclusion_proof(index, size)
            verify_inclusion(index, size, hashes[index], proof, root)
            with pytest.raises(ProofError):
                verify_inclusion(index, size, leaf_hash(b"other"), proof, root)  # wrong leaf
            with pytest.raises(ProofError):
                verify_inclusion(index, size, hashes[index], [*proof, b"\x00" * 32], root)  # trailing garbage
            if proof:
                with pytest.raises(ProofError):
                    verify_inclusion(index, size, hashes[index], proof[:-1], root)  # truncated
                bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                with pytest.raises(ProofError):
                    verify_inclusion(index, size, hashes[index], bad, root)  # a flipped bit
            if index + 1 < size:
                with pytest.raises(ProofError):
                    verify_inclusion(index + 1, size, hashes[index], proof, root)  # leaf index + 1
            with pytest.raises(ProofError):
                verify_inclusion(index, size * 2, hashes[index], proof, root)  # tree size doubled


def test_consistency_proofs_and_their_corruptions() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(33)]
    reader = _reader(hashes)
    for old, new in itertools.combinations_with_replacement(range(0, 34), 2):
        old_root, new_root = root_of(hashes[:old]), root_of(hashes[:new])
        proof = reader.consistency_proof(old, new)
        verify_consistency(old, new, old_root, new_root, proof)
        if 0 < old < new:
            with pytest.raises(ProofError):
                verify_consistency(old, new, old_root, new_root, [*proof, b"\x01" * 32])
            with pytest.raises(ProofError):
                verify_consistency(old, new, old_root, new_root, proof[:-1])
            with pytest.raises(ProofError):
                verify_consistency(old, new, leaf_hash(b"x"), new_root, proof)
            with pytest.raises(ProofError):
                verify_consistency(old, new, old_root, leaf_hash(b"x"), proof)
            # The known bug class: a verifier that does not check that the new size is used up accepts a
            # proof for a larger size (for a full tree, the same proof then claims twice the entries).
            if new & (new - 1) == 0:
                with pytest.raises(ProofError, match="shorter"):
                    verify_consistency(old, new * 2, old_root, new_root, proof)
    with pytest.raises(ProofError):
        verify_consistency(5, 4, root_of(hashes[:5]), root_of(hashes[:4]), [])
    with pytest.raises(ProofError):
        verify_consistency(4, 4, root_of(hashes[:4]), root_of(hashes[:5]), [])


def test_missing_nodes_are_an_error_not_a_wrong_answer() -> None:
    reader = TreeReader(lambda keys: {})
    with pytest.raises(ProofError, match="lacks"):
        reader.inclusion_proof(0, 4)
    with pytest.raises(ProofError):
        reader.inclusion_proof(4, 4)
