"""The one prompt template of retrieval-augmented generation, and the options that turn it on.

Every API uses `augment_question`: the user's question is replaced by the numbered passages, an instruction to
answer from them and cite them by number, and the question. The passages go into the user's turn (not a system
message), so it reads the same under every chat template and on base models without one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cocina.rag.index import Passage, check_index_name

TEMPLATE = """Answer the question using only the sources below, and cite the sources you use by their number, \
like [1]. If the sources do not contain the answer, say that you do not know.

{passages}

Question: {question}"""

PASSAGE = "[{n}] ({document}{where}) {text}"

MAX_TOP_K = 20
_VERSION = re.compile(r"^[0-9a-f]{8,64}$")


def split_index_ref(ref: str) -> tuple[str, str | None]:
    """`NAME` or `NAME@VERSION` (a version id or a unique prefix of at least 8 hex digits) -> (name, version);
    ValueError naming what is wrong."""
    name, at, version = ref.partition("@")
    check_index_name(name)
    if at and not _VERSION.match(version):
        raise ValueError(f"{ref!r}: the version after '@' must be 8 to 64 lowercase hex digits")
    return name, version or None


@dataclass(frozen=True)
class RagConfig:
    """`rag: {index, top_k, min_score, rewrite}` of a model, a deployment or one request.

    `index` names an index of the server's data directory, `NAME` (its current version, which `cocina index
    update` moves) or `NAME@VERSION` (that version, pinned: what a pushed index is named by); `top_k` passages
    (1..20) whose cosine similarity is at least `min_score` (-1..1) go into the prompt; `rewrite` asks the model
    first to turn the question into a search query."""

    index: str
    top_k: int = 4
    min_score: float = 0.0
    rewrite: bool = False

    @classmethod
    def parse(cls, value: Any, where: str = "rag") -> RagConfig | None:
        """From JSON/YAML: a mapping, an index name, or None/False (off). Raises ValueError naming the field."""
        if value is None or value is False:
            return None
        if isinstance(value, str):
            value = {"index": value}
        if not isinstance(value, Mapping):
            raise ValueError(f'{where} must be an object like {{"index": "docs", "top_k": 4}}')
        unknown = set(value) - {"index", "top_k", "min_score", "rewrite"}
        if unknown:
            raise ValueError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
        index = value.get("index")
        if not isinstance(index, str) or not index:
            raise ValueError(f"{where}.index must name an index")
        try:
            split_index_ref(index)
        except ValueError as exc:
            raise ValueError(f"{where}.index: {exc}") from None
        top_k = value.get("top_k", 4)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"{where}.top_k must be an integer from 1 to {MAX_TOP_K}")
        min_score = value.get("min_score", 0.0)
        if isinstance(min_score, bool) or not isinstance(min_score, int | float) or not -1 <= min_score <= 1:
            raise ValueError(f"{where}.min_score must be a number from -1 to 1")
        rewrite = value.get("rewrite", False)
        if not isinstance(rewrite, bool):
            raise ValueError(f"{where}.rewrite must be true or false")
        return cls(index, top_k, float(min_score), rewrite)

    @classmethod
    def from_option(cls, text: str, where: str = "--rag") -> RagConfig:
        """The command line's `INDEX[@VERSION][:top_k=4,min_score=0.3,rewrite=true]`; ValueError naming `where`."""
        index, _, options = text.partition(":")
        raw: dict[str, Any] = {"index": index}
        for item in filter(None, (o.strip() for o in options.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"{where} {text}: options are key=value (top_k, min_score, rewrite)")
            parsed: Any = value
            if key == "top_k" and value.isdigit():
                parsed = int(value)
            elif key == "min_score":
                with contextlib.suppress(ValueError):
                    parsed = float(value)
            elif key == "rewrite":
                parsed = {"true": True, "false": False}.get(value.lower(), value)
            raw[key] = parsed
        config = cls.parse(raw, where)
        assert config is not None
        return config

    @property
    def name(self) -> str:
        """The index's name (without a pinned version)."""
        return self.index.partition("@")[0]

    @property
    def version(self) -> str | None:
        """The pinned version (or prefix), or None for the index's current version."""
        return self.index.partition("@")[2] or None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "top_k": self.top_k, "min_score": self.min_score, "rewrite": self.rewrite}


def format_passages(passages: Sequence[Passage]) -> str:
    lines = []
    for n, p in enumerate(passages, start=1):
        where = f", page {p.page}" if p.page is not None else ""
        if p.section:
            where += f", {' > '.join(p.section)}"
        lines.append(PASSAGE.format(n=n, document=p.document, where=where, text=p.text))
    return "\n\n".join(lines)


def augment_question(question: str, passages: Sequence[Passage]) -> str:
    """The user's turn with the passages: the template, or the question unchanged when nothing was found."""
    if not passages:
        return question
    return TEMPLATE.format(passages=format_passages(passages), question=question)


REWRITE_PROMPT = """Write a short search query that finds documents answering the question below. \
Answer with the query only.

Question: {question}
Query:"""


def first_line(text: str) -> str:
    """A model's rewritten query: its first line with words in it, without quotes around it."""
    for line in text.splitlines():
        line = line.strip().strip("\"'`").strip()
        if line:
            return line
    return ""


__all__ = [
    "MAX_TOP_K",
    "REWRITE_PROMPT",
    "TEMPLATE",
    "RagConfig",
    "augment_question",
    "first_line",
    "format_passages",
    "split_index_ref",
]
