"""Chunking: within the token limit, never across sections or pages, overlapping within a section."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from cocina.rag.chunking import ChunkingConfig, chunk_blocks
from cocina.rag.documents import Block


def words(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def sentence(i: int, n: int = 5) -> str:
    return " ".join(f"w{i}x{j}" for j in range(n - 1)) + f" end{i}."


def test_chunks_stay_within_the_limit_and_overlap() -> None:
    block = Block(" ".join(sentence(i) for i in range(20)), ("S",))
    chunks = chunk_blocks([block], ChunkingConfig(chunk_tokens=20, overlap_tokens=5), words)
    assert len(chunks) > 3
    assert all(c.tokens <= 20 and len(c.text.split()) <= 20 for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert a.text.split()[-5:] == b.text.split()[:5]  # the last sentence is carried over
    text = " ".join(c.text for c in chunks)
    assert all(f"end{i}." in text for i in range(20))


def test_a_new_section_or_page_starts_a_new_chunk_without_overlap() -> None:
    blocks = [
        Block(sentence(1), ("A",)),
        Block(sentence(2), ("B",)),
        Block(sentence(3), (), 1),
        Block(sentence(4), (), 2),
    ]
    chunks = chunk_blocks(blocks, ChunkingConfig(chunk_tokens=100, overlap_tokens=10), words)
    assert [(c.section, c.page) for c in chunks] == [(("A",), None), (("B",), None), ((), 1), ((), 2)]
    assert [c.text for c in chunks] == [sentence(1), sentence(2), sentence(3), sentence(4)]


def test_paragraphs_of_one_section_share_a_chunk_when_they_fit() -> None:
    chunks = chunk_blocks(
        [Block(sentence(1)), Block(sentence(2))], ChunkingConfig(chunk_tokens=50, overlap_tokens=5), words
    )
    assert [c.text for c in chunks] == [sentence(1) + "\n\n" + sentence(2)]


def test_a_sentence_longer_than_a_chunk_is_cut_at_words() -> None:
    chunks = chunk_blocks([Block(sentence(0, 70))], ChunkingConfig(chunk_tokens=20, overlap_tokens=0), words)
    assert [len(c.text.split()) for c in chunks] == [20, 20, 20, 10]


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (100, 50), (100, -1)])
def test_bad_chunking_options_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        ChunkingConfig(size, overlap)
