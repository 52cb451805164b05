"""Reading documents: structure kept (sections, pages), scripts dropped, unreadable files refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocina.rag.documents import UnreadableFile, document_files, html_blocks, markdown_blocks, read_document
from tests.rag.conftest import HTML, MARKDOWN, make_pdf


def test_markdown_paragraphs_sit_under_their_headings() -> None:
    blocks = markdown_blocks(MARKDOWN)
    assert [b.section for b in blocks] == [
        ("Limpieza", "Blanquear la ropa"),
        ("Limpieza", "Quitar manchas de vino"),
    ]
    assert blocks[0].text.startswith("La lejía blanquea")


def test_markdown_code_fence_is_one_block_and_front_matter_is_dropped() -> None:
    text = "---\ntitle: x\n---\n# A\n\n```\nline one\n\nline two\n```\n\nAfter."
    blocks = markdown_blocks(text)
    assert blocks[0].text == "```\nline one\n\nline two\n```"
    assert blocks[1].text == "After."
    assert all(b.section == ("A",) for b in blocks)


def test_html_headings_become_sections_and_scripts_are_skipped() -> None:
    blocks = html_blocks(HTML)
    texts = [b.text for b in blocks]
    assert "Tomatoes need six hours of sun a day." in texts
    assert not any("injected" in t or "color" in t for t in texts)
    water = next(b for b in blocks if b.text.startswith("Water the roots"))
    assert water.section == ("Garden", "Water")


def test_pdf_text_keeps_its_page(tmp_path: Path) -> None:
    doc = read_document(make_pdf(tmp_path / "m.pdf", ["Boilers need one bar.", "Check it weekly."]), "m.pdf")
    assert doc.format == "pdf"
    assert all(b.page == 1 for b in doc.blocks)
    assert "Boilers need one bar." in " ".join(b.text for b in doc.blocks)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage", "not a readable PDF"),
        ("fake.pdf", b"hello", "not a PDF"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
        ("empty.md", b"   \n\n", "has no text"),
        ("binary.txt", b"abc\x00def", "binary"),
    ],
)
def test_unreadable_files_are_refused_with_a_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UnreadableFile, match=reason):
        read_document(path, name)


def test_document_files_walks_directories_and_skips_hidden_ones(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.md").write_text("hidden")
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "b.bin").write_bytes(b"\x00")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.html").write_text("<p>c</p>")
    assert [p.name for p in document_files([tmp_path])] == ["a.md", "c.html"]
