"""Reading documents into blocks that keep their structure: text, Markdown, HTML and PDF.

A `Block` is a paragraph-sized piece of a document with the headings it sits under (`section`) and, for a PDF,
its page. Markdown headings and HTML `<h1>`..`<h6>` open sections; fenced code stays one block; PDF text comes
page by page (pypdf). A file that cannot be read raises `UnreadableFile` with the reason; the indexer skips it and
names it in its report.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

SUFFIXES = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
MAX_FILE_BYTES = 64 * 2**20


class UnreadableFile(Exception):
    """A file that is not a document cocina can read (corrupt, not UTF-8, empty, too large)."""


@dataclass(frozen=True)
class Block:
    text: str
    section: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True)
class Document:
    """A read document: its path as the index names it, its format, content hash and blocks."""

    path: str
    format: str
    sha256: str
    size: int
    blocks: tuple[Block, ...]


def document_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The files to index under `paths` (files as given; directories walked, hidden entries skipped), sorted."""
    for root in paths:
        if root.is_file():
            yield root
            continue
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if path.is_file() and path.suffix.lower() in SUFFIXES:
                yield path


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _decode(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path.name} is not UTF-8 text") from None


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^(```|~~~)")


def markdown_blocks(text: str) -> list[Block]:
    """Paragraphs under their headings; a fenced code block is one block; front matter is dropped."""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            text = text[end + 4 :]
    blocks: list[Block] = []
    section: list[str] = []
    levels: list[int] = []
    buf: list[str] = []
    fence: str | None = None

    def flush() -> None:
        body = "\n".join(buf).strip()
        buf.clear()
        for para in _paragraphs(body) if not body.startswith(("```", "~~~")) else [body]:
            blocks.append(Block(para, tuple(section)))

    for line in text.splitlines():
        if fence is not None:
            buf.append(line)
            if line.strip().startswith(fence):
                fence = None
                flush()
            continue
        m = _FENCE.match(line.strip())
        if m:
            flush()
            fence = m.group(1)
            buf.append(line)
            continue
        h = _HEADING.match(line)
        if h:
            flush()
            level = len(h.group(1))
            while levels and levels[-1] >= level:
                levels.pop()
                section.pop()
            levels.append(level)
            section.append(h.group(2).strip())
            continue
        buf.append(line)
    flush()
    return blocks


class _HTMLBlocks(HTMLParser):
    """Text of block elements, with `<h1>`..`<h6>` as sections; script, style and the like are skipped."""

    _BLOCK: ClassVar[set[str]] = {
        "p",
        "div",
        "li",
        "pre",
        "blockquote",
        "td",
        "th",
        "tr",
        "section",
        "article",
        "br",
        "dd",
        "dt",
        "table",
        "ul",
        "ol",
        "main",
        "header",
        "footer",
        "figcaption",
        "title",
    }
    _SKIP: ClassVar[set[str]] = {"script", "style", "noscript", "template", "svg", "nav", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.section: list[tuple[int, str]] = []
        self.buf: list[str] = []
        self.heading: int | None = None
        self.skip = 0

    def _flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.buf)).strip()
        self.buf.clear()
        if not text:
            return
        if self.heading is not None:
            while self.section and self.section[-1][0] >= self.heading:
                self.section.pop()
            self.section.append((self.heading, text))
        else:
            self.blocks.append(Block(text, tuple(t for _, t in self.section)))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self.skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = int(tag[1])
        elif tag in self._BLOCK:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = None
        elif tag in self._BLOCK:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.buf.append(data)


def html_blocks(text: str) -> list[Block]:
    parser = _HTMLBlocks()
    parser.feed(text)
    parser.close()
    parser._flush()
    return parser.blocks


def pdf_blocks(path: Path) -> list[Block]:
    """Page by page with pypdf; a page's paragraphs (blank lines, else lines ending a sentence) are blocks."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about odd PDFs are not the user's business
    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            raise UnreadableFile(f"{path.name} is an encrypted PDF")
        blocks: list[Block] = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            for para in _paragraphs(text.replace("\r", "")):
                blocks.append(Block(re.sub(r"[ \t]*\n[ \t]*", " ", para), (), number))
        return blocks
    except UnreadableFile:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError) as exc:
        raise UnreadableFile(f"{path.name} is not a readable PDF ({type(exc).__name__})") from None


def read_document(path: Path, name: str) -> Document:
    """Read `path` (named `name` in the index) into blocks; raises `UnreadableFile`."""
    fmt = SUFFIXES.get(path.suffix.lower(), "text")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UnreadableFile(f"{path.name} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(f"{path.name} cannot be read ({exc.strerror or type(exc).__name__})") from None
    digest = hashlib.sha256(data).hexdigest()
    if fmt == "pdf":
        if not data.startswith(b"%PDF"):
            raise UnreadableFile(f"{path.name} is not a PDF (no %PDF header)")
        blocks = pdf_blocks(path)
    else:
        text = _decode(data, path)
        if "\x00" in text:
            raise UnreadableFile(f"{path.name} holds binary data, not text")
        if fmt == "markdown":
            blocks = markdown_blocks(text)
        elif fmt == "html":
            blocks = html_blocks(text)
        else:
            blocks = [Block(p) for p in _paragraphs(text)]
    if not blocks:
        raise UnreadableFile(f"{path.name} has no text")
    return Document(name, fmt, digest, size, tuple(blocks))


__all__ = ["SUFFIXES", "Block", "Document", "UnreadableFile", "document_files", "read_document"]
