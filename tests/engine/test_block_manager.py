"""BlockManager: allocation, prefix sharing by chained hashes, reference counts, revival, eviction."""

from __future__ import annotations

import pytest

from cocina.engine.block_manager import BlockManager, chain_hash
from cocina.engine.errors import EngineError
from cocina.engine.sequence import Sequence

BS = 4


def seq_of(tokens: list[int]) -> Sequence:
    return Sequence(tokens)


def compute_all(bm: BlockManager, seq: Sequence) -> None:
    """What a finished prefill does: every token's KV is computed, full blocks get registered."""
    first = seq.num_computed_tokens // bm.block_size
    seq.num_computed_tokens = seq.num_tokens
    bm.register_computed_blocks(seq, first)


def test_allocate_and_deallocate_without_sharing() -> None:
    bm = BlockManager(num_blocks=8, block_size=BS)
    seq = seq_of(list(range(10)))  # 3 blocks: 4 + 4 + 2
    assert bm.can_allocate(seq)
    bm.allocate(seq)
    assert len(seq.block_table) == 3
    assert seq.num_computed_tokens == 0
    assert (bm.num_used_blocks, bm.num_free_blocks, bm.usage) == (3, 5, 3 / 8)
    bm.check_invariants()
    bm.deallocate(seq)
    assert seq.block_table == [] and seq.num_computed_tokens == 0
    assert bm.num_free_blocks == 8
    bm.check_invariants()


def test_allocate_fails_cleanly_when_full() -> None:
    bm = BlockManager(num_blocks=2, block_size=BS)
    seq = seq_of(list(range(9)))  # 3 blocks
    assert not bm.can_allocate(seq)
    with pytest.raises(EngineError, match="not enough free KV blocks"):
        bm.allocate(seq)
    assert bm.num_free_blocks == 2


def test_two_prompts_sharing_two_blocks() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    prefix = list(range(100, 108))  # 2 full blocks
    a = seq_of([*prefix, 1, 2, 3])
    b = seq_of([*prefix, 7, 8])
    bm.allocate(a)
    compute_all(bm, a)
    bm.allocate(b)
    shared = a.block_table[:2]
    assert b.block_table[:2] == shared
    assert b.block_table[2] != a.block_table[2]
    assert [bm.blocks[i].ref_count for i in a.block_table[:2]] == [2, 2]
    assert b.num_computed_tokens == 8 and b.num_cached_tokens == 8
    assert (bm.prefix_query_tokens, bm.prefix_hit_tokens) == (11 + 10, 8)
    bm.check_invariants()

    # Freeing one keeps the shared blocks alive for the other.
    bm.deallocate(a)
    assert [bm.blocks[i].ref_count for i in b.block_table[:2]] == [1, 1]
    bm.deallocate(b)
    assert bm.num_free_blocks == 16
    bm.check_invariants()

    # Both finished: the cached blocks are free yet revivable by a third prompt with the same prefix.
    c = seq_of([*prefix, 9])
    assert bm.can_allocate(c)
    bm.allocate(c)
    assert c.num_computed_tokens == 8
    assert c.block_table[:2] == shared
    assert [bm.blocks[i].ref_count for i in shared] == [1, 1]
    assert bm.num_used_blocks == 3
    bm.check_invariants()


def test_blocks_are_shared_only_once_computed() -> None:
    """With chunked prefill a block is allocated before it is filled; nobody may hit it meanwhile."""
    bm = BlockManager(num_blocks=16, block_size=BS)
    a = seq_of(list(range(9)))
    b = seq_of(list(range(9)))
    bm.allocate(a)
    bm.allocate(b)
    assert b.num_computed_tokens == 0
    assert set(a.block_table).isdisjoint(b.block_table)
    a.num_computed_tokens = 4  # first chunk: one block computed
    bm.register_computed_blocks(a, 0)
    c = seq_of(list(range(9)))
    bm.allocate(c)
    assert c.num_computed_tokens == 4
    assert c.block_table[0] == a.block_table[0]
    bm.check_invariants()


def test_equal_prompts_prefilled_together_keep_private_copies() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    a, b = seq_of(list(range(9))), seq_of(list(range(9)))
    bm.allocate(a)
    bm.allocate(b)
    compute_all(bm, a)
    compute_all(bm, b)
    # One hash maps to one block; b's duplicates stay unregistered and plain-free afterwards.
    assert all(bm.blocks[i].block_hash is None for i in b.block_table)
    bm.check_invariants()
    for s in (a, b):
        bm.deallocate(s)
    assert bm.num_cached_blocks == 2
    bm.check_invariants()


def test_last_token_is_never_served_from_the_cache() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    a = seq_of(list(range(8)))  # exactly 2 full blocks
    bm.allocate(a)
    compute_all(bm, a)
    b = seq_of(list(range(8)))
    bm.allocate(b)
    # Only the first block may be served: the block with the last token is recomputed.
    assert b.num_computed_tokens == 4
    assert b.block_table[0] == a.block_table[0]
    assert b.block_table[1] != a.block_table[1]
    assert bm.prefix_hit_tokens == 4


def test_short_prompt_gets_no_hit() -> None:
    bm = BlockManager(num_blocks=4, block_size=BS)
    a = seq_of([1, 2, 3, 4])
    bm.allocate(a)
    compute_all(bm, a)
    b = seq_of([1, 2, 3, 4])
    bm.allocate(b)
    assert b.num_computed_tokens == 0


def test_chain_hash_depends_on_the_whole_prefix() -> None:
    bm = BlockManager(num_blocks=16, block_size=BS)
    a = seq_of([1, 1, 1, 1, 2, 2, 2, 2, 0])
    bm.allocate(a)
    compute_all(bm, a)
    # Same second block, different first block: no hit on either.
    b = seq_of([9, 9, 9, 9, 2, 2, 2, 2, 0])
    bm.allocate(b)
    assert b.num_computed_tokens == 0
    assert chain_hash(None, [2, 2, 2, 2]) != chain_hash(chain_hash(None, [1, 1, 1, 1]), [2, 2, 2, 2])


def test_can_allocate_counts_revived_blocks_as_taken_from_the_free_pool() -> None:
    bm = BlockManager(num_blocks=3, block_size=BS)
    a = seq_of(list(range(9)))  # 3 blocks
    bm.allocate(a)
    compute_all(bm, a)
    bm.deallocate(a)
    b = seq_of(list(range(9)))
    assert bm.can_allocate(b)
    bm.allocate(b)
    assert b.num_computed_tokens == 8
    assert bm.num_free_blocks == 0
    bm.check_invariants()


def test_plain_free_blocks_are_reused_before_cached_ones_then_least_recently_freed() -> None:
    bm = BlockManager(num_blocks=4, block_size=BS)
    a = seq_of([1, 1, 1, 1, 5])
    b = seq_of([2, 2, 2, 2, 5])
    for s in (a, b):
        bm.allocate(s)
        compute_all(bm, s)
    a_cached, b_cached = a.block_table[0], b.block_table[0]
    bm.deallocate(a)
    bm.deallocate(b)
    assert bm.num_cached_blocks == 2
    # Two plain free blocks exist (the partial tails); a 2-block prompt uses those, evicting nothing.
    c = seq_of([3, 3, 3, 3, 3])
    bm.allocate(c)
    assert a_cached not in c.block_table and b_cached not in c.block_table
    assert bm.num_cached_blocks == 2
    # The next block must come from the cache: a's block was freed first, so it goes first.
    d = seq_of([4])
    bm.allocate(d)
    assert d.block_table == [a_cached]
    assert bm.num_cached_blocks == 1
    e = seq_of([2, 2, 2, 2, 7])
    bm.deallocate(c)
    bm.allocate(e)
    assert e.block_table[0] == b_cached and e.num_computed_tokens == 4
    bm.check_invariants()


def test_may_append_allocates_at_block_boundaries_and_registers_full_blocks() -> None:
    bm = BlockManager(num_blocks=8, block_size=BS)
    seq = seq_of([1, 2, 3])
    bm.allocate(seq)
    compute_all(bm, seq)
    for token in (4, 5, 6):
        seq.append_token(token)  # sampled; its KV is computed by the next decode step
        assert bm.can_append(seq)
        bm.may_append(seq)
        seq.num_computed_tokens += 1
        bm.register_computed_blocks(seq, (seq.num_computed_tokens - 1) // BS)
    # Tokens 1..6: the second block was taken when token 5 arrived; the first is full and registered.
    assert len(seq.block_table) == 2
    assert bm.blocks[seq.block_table[0]].block_hash is not None
    other = seq_of([1, 2, 3, 4, 0])
    bm.allocate(other)
    assert other.num_computed_tokens == 4
    bm.check_invariants()


def test_can_append_false_when_no_block_is_free() -> None:
    bm = BlockManager(num_blocks=1, block_size=BS)
    seq = seq_of([1, 2, 3, 4])
    bm.allocate(seq)
    compute_all(bm, seq)
    seq.append_token(5)
    assert not bm.can_append(seq)
    with pytest.raises(EngineError):
        bm.may_append(seq)


def test_disabled_prefix_caching_shares_nothing_and_counts_nothing() -> None:
    bm = BlockManager(num_blocks=8, block_size=BS, enable_prefix_caching=False)
    a, b = seq_of(list(range(9))), seq_of(list(range(9)))
    bm.allocate(a)
    compute_all(bm, a)
    bm.allocate(b)
    assert b.num_computed_tokens == 0
    assert (bm.prefix_query_tokens, bm.prefix_hit_tokens, bm.num_cached_blocks) == (0, 0, 0)


def test_hash_collision_with_different_tokens_is_not_a_hit(monkeypatch: pytest.MonkeyPatch) -> None:
    bm = BlockManager(num_blocks=8, block_size=BS)
    monkeypatch.setattr("cocina.engine.block_manager.chain_hash", lambda parent, tokens: b"same")
    a = seq_of([1, 1, 1, 1, 0])
    bm.allocate(a)
    compute_all(bm, a)
    b = seq_of([2, 2, 2, 2, 0])
    bm.allocate(b)
    assert b.num_computed_tokens == 0


def test_num_cached_tokens_is_kept_from_the_first_admission() -> None:
    bm = BlockManager(num_blocks=8, block_size=BS)
    a = seq_of(list(range(9)))
    bm.allocate(a)
    compute_all(bm, a)
    b = seq_of(list(range(9)))
    bm.allocate(b)
    assert b.num_cached_tokens == 8
    bm.deallocate(b)
    bm.deallocate(a)
    b.num_preemptions = 1
    bm.allocate(b)
    assert b.num_cached_tokens == 8


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="num_blocks"):
        BlockManager(0, 4)
    with pytest.raises(ValueError, match="block_size"):
        BlockManager(4, 0)
