"""The KV cache's block allocator, with prefix sharing by chained block hashes (no torch).

The cache is ``num_blocks`` fixed-size blocks of ``block_size`` token slots; a sequence's ``block_table`` maps
its i-th ``block_size`` tokens to a physical block. The number of blocks comes from the configured memory
budget (``EngineConfig.kv_cache_bytes`` / ``num_kv_blocks``), never from the host's total memory.

Prefix sharing: a *full* block whose keys/values have been computed is registered under a hash of its tokens
chained with the hash of the block before it, so equal hashes mean equal whole prefixes. A later sequence
whose prompt starts with the same blocks points its block table at them and increments their reference
counts instead of computing them again. A registered block whose last user goes away keeps its content and
its hash entry, and can be revived by a later hit until the allocator needs it for something else; blocks
holding no cached content are handed out first, then cached ones least recently freed first.

Blocks are registered only once their KV is *computed* (not when they are allocated): with chunked prefill a
block can be allocated several steps before it is filled, and a sequence hitting it meanwhile would read
garbage.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict, deque
from collections.abc import Sequence as SequenceOf
from dataclasses import dataclass

from cocina.engine.errors import EngineError
from cocina.engine.sequence import Sequence

__all__ = ["Block", "BlockManager", "chain_hash"]


def chain_hash(parent: bytes | None, token_ids: SequenceOf[int]) -> bytes:
    """Hash of a full block: its tokens chained with the parent block's hash (``None`` for the first block).

    blake2b rather than Python's ``hash``: a client must not be able to craft a prompt whose blocks collide
    with another client's prefix (we also compare the tokens on a hit, but not the whole chain).
    """
    h = hashlib.blake2b(digest_size=16)
    if parent is not None:
        h.update(parent)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


@dataclass
class Block:
    """One physical KV block; ``block_hash`` and ``token_ids`` are set while it is in the prefix cache."""

    block_id: int
    ref_count: int = 0
    block_hash: bytes | None = None
    token_ids: tuple[int, ...] = ()


class BlockManager:
    """Hands out KV blocks to sequences, sharing computed full blocks between equal prefixes.

    Counters for metrics: ``prefix_query_tokens`` (tokens looked up in the prefix cache on every
    :meth:`allocate`, re-admissions after preemption included) and ``prefix_hit_tokens`` (of those, tokens
    served from it). Both stay 0 when prefix caching is off.
    """

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._hash_to_block: dict[bytes, int] = {}
        # Free blocks holding nothing worth keeping; handed out first.
        self._free_plain: deque[int] = deque(range(num_blocks))
        # Free blocks still registered in the prefix cache, least recently freed first (eviction order).
        self._free_cached: OrderedDict[int, None] = OrderedDict()
        self.prefix_query_tokens = 0
        self.prefix_hit_tokens = 0

    # -- sizes -------------------------------------------------------------------------------------------

    @property
    def num_free_blocks(self) -> int:
        """Blocks not referenced by any sequence (cached free blocks included: they can be reused)."""
        return len(self._free_plain) + len(self._free_cached)

    @property
    def num_used_blocks(self) -> int:
        """Blocks referenced by at least one sequence."""
        return self.num_blocks - self.num_free_blocks

    @property
    def usage(self) -> float:
        """Fraction of blocks in use, 0..1."""
        return self.num_used_blocks / self.num_blocks

    @property
    def num_cached_blocks(self) -> int:
        """Blocks registered in the prefix cache (in use or free)."""
        return len(self._hash_to_block)

    def num_blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold ``num_tokens`` tokens."""
        return -(-num_tokens // self.block_size)

    # -- allocation --------------------------------------------------------------------------------------

    def can_allocate(self, seq: Sequence) -> bool:
        """Whether :meth:`allocate` would succeed now for ``seq``'s current tokens."""
        hits = self._match_prefix(seq)
        # A hit on a block another sequence holds costs nothing; a hit on a free cached block still takes it
        # off the free list, so it counts like a new block.
        num_shared = sum(1 for b in hits if self.blocks[b].ref_count > 0)
        return self.num_blocks_for(seq.num_tokens) - num_shared <= self.num_free_blocks

    def allocate(self, seq: Sequence) -> None:
        """Give ``seq`` blocks for all its current tokens, sharing cached prefix blocks.

        Sets ``seq.num_computed_tokens`` to the tokens served by the cache (a whole number of blocks, always
        fewer than ``seq.num_tokens`` so the last token is computed and yields logits) and, on the first
        admission, ``seq.num_cached_tokens``. Raises ``EngineError`` if :meth:`can_allocate` is false.
        """
        if seq.block_table:
            raise EngineError(f"sequence {seq.seq_id} already has blocks")
        if not self.can_allocate(seq):
            raise EngineError(f"not enough free KV blocks for sequence {seq.seq_id}")
        hits = self._match_prefix(seq)
        # Revive/share every hit before taking fresh blocks, so a fresh block cannot evict a hit.
        for block_id in hits:
            self._take(block_id)
        table = list(hits)
        for _ in range(self.num_blocks_for(seq.num_tokens) - len(hits)):
            table.append(self._take_fresh())
        seq.block_table = table
        num_hit_tokens = len(hits) * self.block_size
        seq.num_computed_tokens = num_hit_tokens
        if seq.num_preemptions == 0:
            seq.num_cached_tokens = min(num_hit_tokens, seq.num_prompt_tokens)
        if self.enable_prefix_caching:
            self.prefix_query_tokens += seq.num_tokens
            self.prefix_hit_tokens += num_hit_tokens

    def can_append(self, seq: Sequence) -> bool:
        """Whether :meth:`may_append` would succeed now (at most one new block is needed per decode)."""
        missing = self.num_blocks_for(seq.num_tokens) - len(seq.block_table)
        return missing <= self.num_free_blocks

    def may_append(self, seq: Sequence) -> None:
        """Make room for ``seq``'s newest token (a new block when it starts one); share full blocks."""
        while len(seq.block_table) < self.num_blocks_for(seq.num_tokens):
            if not self.num_free_blocks:
                raise EngineError(f"no free KV block for sequence {seq.seq_id}")
            seq.block_table.append(self._take_fresh())
        # The block before the new token's block may have just become full (and computed): share it.
        self.register_computed_blocks(seq, max(0, seq.num_computed_tokens // self.block_size - 1))

    def deallocate(self, seq: Sequence) -> None:
        """Drop ``seq``'s references to its blocks and reset ``seq.num_computed_tokens`` to 0."""
        # Tail blocks first: they go to the end of the eviction order, so a sequence's deepest blocks (least
        # likely to be shared again) are evicted before its prefix.
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            if block.ref_count <= 0:
                raise EngineError(f"block {block_id} freed more often than taken")
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.block_hash is not None:
                    self._free_cached[block_id] = None
                else:
                    self._free_plain.append(block_id)
        seq.block_table = []
        seq.num_computed_tokens = 0

    def register_computed_blocks(self, seq: Sequence, first_block: int = 0) -> None:
        """Register ``seq``'s full blocks whose KV is computed (from index ``first_block``) for sharing.

        The scheduler calls this after each step with the index of the first block the step may have filled.
        When another live block already holds the same content (two equal prompts prefilled together), this
        one stays private: a hash maps to a single block.
        """
        if not self.enable_prefix_caching:
            return
        num_full = min(seq.num_computed_tokens // self.block_size, len(seq.block_table))
        if first_block >= num_full:
            return
        self._extend_hashes(seq, num_full)
        for i in range(first_block, num_full):
            block = self.blocks[seq.block_table[i]]
            if block.block_hash is not None:
                continue
            h = seq.block_hashes[i]
            existing = self._hash_to_block.get(h)
            if existing is not None:
                if self.blocks[existing].ref_count > 0:
                    continue
                # The old copy is free; the live one replaces it, so one hash maps to one block.
                self._forget(existing)
                del self._free_cached[existing]
                self._free_plain.append(existing)
            block.block_hash = h
            block.token_ids = tuple(self._block_tokens(seq, i))
            self._hash_to_block[h] = block.block_id

    # -- internals ---------------------------------------------------------------------------------------

    def _block_tokens(self, seq: Sequence, i: int) -> list[int]:
        return seq.token_ids[i * self.block_size : (i + 1) * self.block_size]

    def _extend_hashes(self, seq: Sequence, num_full: int) -> None:
        hashes = seq.block_hashes
        while len(hashes) < num_full:
            i = len(hashes)
            hashes.append(chain_hash(hashes[-1] if hashes else None, self._block_tokens(seq, i)))

    def _match_prefix(self, seq: Sequence) -> list[int]:
        """Block ids of the cached blocks that can serve ``seq``'s prefix, in order."""
        if not self.enable_prefix_caching:
            return []
        # Never serve the block holding the last token: at least one token must be computed so the model
        # produces logits to sample from. Capping at whole blocks keeps shared blocks read-only.
        max_blocks = (seq.num_tokens - 1) // self.block_size
        self._extend_hashes(seq, max_blocks)
        hits: list[int] = []
        for i in range(max_blocks):
            block_id = self._hash_to_block.get(seq.block_hashes[i])
            if block_id is None or self.blocks[block_id].token_ids != tuple(self._block_tokens(seq, i)):
                break
            hits.append(block_id)
        return hits

    def _take(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self._free_cached[block_id]
        block.ref_count += 1

    def _take_fresh(self) -> int:
        if self._free_plain:
            block_id = self._free_plain.popleft()
        else:
            block_id, _ = self._free_cached.popitem(last=False)
            self._forget(block_id)
        self.blocks[block_id].ref_count = 1
        return block_id

    def _forget(self, block_id: int) -> None:
        """Drop a block's prefix-cache registration (its content is about to be overwritten)."""
        block = self.blocks[block_id]
        if block.block_hash is not None and self._hash_to_block.get(block.block_hash) == block_id:
            del self._hash_to_block[block.block_hash]
        block.block_hash = None
        block.token_ids = ()

    def check_invariants(self) -> None:
        """Assert the allocator's internal consistency (for tests; O(num_blocks))."""
        free_plain = set(self._free_plain)
        free_cached = set(self._free_cached)
        assert len(free_plain) == len(self._free_plain), "duplicate block in the free list"
        assert not free_plain & free_cached, "block in both free lists"
        for block in self.blocks:
            is_free = block.block_id in free_plain or block.block_id in free_cached
            assert block.ref_count >= 0
            assert is_free == (block.ref_count == 0), f"block {block.block_id}: free list vs ref count"
            if block.block_id in free_cached:
                assert block.block_hash is not None
            if block.block_hash is not None:
                assert self._hash_to_block.get(block.block_hash) == block.block_id
                assert len(block.token_ids) == self.block_size
        for h, block_id in self._hash_to_block.items():
            assert self.blocks[block_id].block_hash == h
        assert self.num_free_blocks + self.num_used_blocks == self.num_blocks
