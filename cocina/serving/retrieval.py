"""Retrieval for language models, as admission uses it: which index applies, the passages, and the one seam
every retrieved passage passes before it reaches a prompt.

The RAG options of a request (OpenAI's `rag` field) win over the model's (`--rag`, `ModelSpec.rag`). The
passages are found by `cocina.rag` (in a thread), then go through `screen_passages`: documents can carry
indirect prompt injections, so the guard's input scanners read every passage there (see its docstring). Errors of
`cocina.rag` become serving errors here (a missing index is `IndexNotFound`, a 404 in every API).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cocina.rag import EmbedderMismatch, EmbedderNotFound, IndexNotFound, Passage, RagConfig, RagError
from cocina.serving import errors

if TYPE_CHECKING:
    from cocina.rag.service import RagService

log = logging.getLogger("cocina.serving")


@dataclass(frozen=True)
class Retrieval:
    """One retrieval for a prediction: where and what was searched, and the passages kept (screened)."""

    config: RagConfig
    version: str  # the index version searched
    query: str  # the text embedded for the search: the question, or the model's rewriting of it
    rewritten: bool
    passages: list[Passage] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """`PredictionRecord.retrieval` (documented in docs/rag.md)."""
        return {
            "index": self.config.index,
            "version": self.version,
            "query": self.query,
            "rewritten": self.rewritten,
            "top_k": self.config.top_k,
            "min_score": self.config.min_score,
        }


def parse_rag(value: Any, param: str = "rag") -> RagConfig | None:
    """A request's `rag` options, or `InvalidRequest` naming the field."""
    try:
        return RagConfig.parse(value, param)
    except ValueError as exc:
        raise errors.InvalidRequest(str(exc), param=param) from None


def screen_passages(passages: Sequence[Passage], scan: Any = None) -> list[Passage]:
    """The seam between retrieval and the prompt: every retrieved passage passes here, and nowhere else.

    `scan(text) -> str | None` is the guard's input scanning of one passage (its redactions applied; None: the
    passage is blocked and left out of the prompt and the sources). Without a guard the passages pass as they
    are. Wiring the guard is one line where `scan` is built (`Serving.retrieve`): `gate.scan(ticket,
    {"passage": text}, model)` and a blocked ticket.
    """
    if scan is None:
        return list(passages)
    kept: list[Passage] = []
    for p in passages:
        text = scan(p.text)
        if text is None:
            log.warning("a passage of %s (%s #%d) was blocked by the guard", p.index, p.document, p.chunk)
            continue
        kept.append(
            p if text == p.text else Passage(p.index, p.version, p.document, p.chunk, p.score, text, p.section, p.page)
        )
    return kept


async def retrieve(
    rag: RagService, config: RagConfig, query: str, *, rewritten: bool = False, scan: Any = None
) -> Retrieval:
    """The screened passages of `config.index` for `query`; serving errors for what goes wrong."""
    try:
        version, found = await rag.retrieve(config, query)
    except IndexNotFound as exc:
        raise errors.IndexNotFound(exc.message, param="rag.index") from None
    except EmbedderMismatch as exc:
        raise errors.Conflict(exc.message, param="rag.index") from None
    except EmbedderNotFound as exc:
        raise errors.ModelUnavailable(exc.message) from None
    except RagError as exc:
        raise errors.ModelUnavailable(f"index {config.index!r} cannot be used: {exc.message}") from None
    return Retrieval(config, version, query, rewritten, screen_passages(found, scan))


def question_of(inputs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(field, text) of the question in a language model's Cog input (`prompt`, else `pregunta`)."""
    for key in ("prompt", "pregunta"):
        value = inputs.get(key)
        if isinstance(value, str) and value.strip():
            return key, value
    return None, None


def sources_of(passages: Sequence[Passage]) -> list[dict[str, Any]]:
    return [p.source() for p in passages]


__all__ = ["Retrieval", "parse_rag", "question_of", "retrieve", "screen_passages", "sources_of"]
