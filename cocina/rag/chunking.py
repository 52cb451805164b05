"""Chunks that respect token counts and document structure, with overlap.

Blocks (paragraphs, code, PDF page paragraphs) are packed in order into chunks of at most `chunk_tokens` tokens
of the embedding model's own tokenizer. A chunk never spans two sections (a new heading starts a new chunk) nor
two PDF pages; a block too long for one chunk is split at sentence ends, and a sentence still too long at token
windows. A chunk that continues a section starts with the last sentences of the previous one, up to
`overlap_tokens`, so a fact cut at a boundary is whole in one of the two.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cocina.rag.documents import Block

TokenCounter = Callable[[Sequence[str]], list[int]]

_SENTENCE_END = re.compile(r"(?<=[.!?…;:])\s+|\n+")


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_tokens: int = 200
    overlap_tokens: int = 40

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.overlap_tokens < self.chunk_tokens // 2:
            raise ValueError(
                f"overlap_tokens must be between 0 and half of chunk_tokens ({self.chunk_tokens // 2}), "
                f"got {self.overlap_tokens}"
            )


@dataclass(frozen=True)
class Chunk:
    text: str
    section: tuple[str, ...]
    page: int | None
    tokens: int


def _sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def _split_long(sentence: str, limit: int, count: TokenCounter) -> list[str]:
    """A sentence longer than `limit` tokens cut at word boundaries into pieces of at most `limit`."""
    words = sentence.split()
    pieces: list[str] = []
    current: list[str] = []
    for word in words:
        trial = " ".join([*current, word])
        if current and count([trial])[0] > limit:
            pieces.append(" ".join(current))
            current = [word]
        else:
            current.append(word)
    if current:
        pieces.append(" ".join(current))
    return pieces


def chunk_blocks(blocks: Sequence[Block], config: ChunkingConfig, count: TokenCounter) -> list[Chunk]:
    """The chunks of one document's blocks (see the module's docstring)."""
    limit = config.chunk_tokens
    # Units: sentences (or token windows of an overlong sentence) with their section, page and token count.
    units: list[tuple[str, tuple[str, ...], int | None, bool]] = []  # (text, section, page, starts a block)
    for block in blocks:
        pieces = _sentences(block.text)
        n = count(pieces)
        first = True
        for piece, piece_tokens in zip(pieces, n, strict=True):
            parts = [piece] if piece_tokens <= limit else _split_long(piece, limit, count)
            for part in parts:
                units.append((part, block.section, block.page, first))
                first = False
    if not units:
        return []
    tokens = count([u[0] for u in units])
    chunks: list[Chunk] = []
    current: list[int] = []  # indices of units in the chunk being built
    size = 0

    def emit() -> None:
        parts: list[str] = []
        for i in current:
            text, _, _, starts = units[i]
            parts.append(("\n\n" if starts and parts else " " if parts else "") + text)
        _, section, page, _ = units[current[0]]
        chunks.append(Chunk("".join(parts), section, page, size))

    for i, (_, section, page, _) in enumerate(units):
        t = tokens[i]
        if current:
            head = units[current[0]]
            same_place = head[1] == section and head[2] == page
            if same_place and size + t <= limit:
                current.append(i)
                size += t
                continue
            emit()
            # Carry the tail of the chunk just emitted into the next, when it continues the same section.
            carried: list[int] = []
            carried_size = 0
            if same_place and config.overlap_tokens:
                for j in reversed(current):
                    if carried_size + tokens[j] > config.overlap_tokens or carried_size + tokens[j] + t > limit:
                        break
                    carried.insert(0, j)
                    carried_size += tokens[j]
            current, size = carried, carried_size
        current.append(i)
        size += t
    if current:
        emit()
    return chunks


__all__ = ["Chunk", "ChunkingConfig", "chunk_blocks"]
