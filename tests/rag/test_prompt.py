"""The RAG options (`rag: {index, top_k, min_score, rewrite}` of a request, model, deployment or cocina.yaml, and
the command line's `INDEX[@VERSION][:k=v,...]`), index references, the one template, and reading a rewritten
query."""

from __future__ import annotations

import pytest

from cocina.rag import Passage, RagConfig, augment_question
from cocina.rag.prompt import first_line, split_index_ref


def test_parse_accepts_a_name_or_an_object_and_says_what_is_wrong() -> None:
    assert RagConfig.parse(None) is None and RagConfig.parse(False) is None
    assert RagConfig.parse("docs") == RagConfig("docs")
    full = RagConfig.parse({"index": "docs@0123abcd", "top_k": 2, "min_score": 0.5, "rewrite": True})
    assert full == RagConfig("docs@0123abcd", 2, 0.5, True)
    assert full.name == "docs" and full.version == "0123abcd" and RagConfig("docs").version is None
    for value, message in (
        ({"index": "docs", "top_k": 0}, "rag.top_k must be an integer from 1 to 20"),
        ({"index": "docs", "top_k": True}, "rag.top_k must be an integer"),
        ({"index": "docs", "min_score": "high"}, "rag.min_score must be a number from -1 to 1"),
        ({"index": "docs", "rewrite": "yes"}, "rag.rewrite must be true or false"),
        ({"top_k": 1}, "rag.index must name an index"),
        ({"index": "docs", "k": 1}, "unknown fields: k"),
        ({"index": "docs@XYZ"}, "8 to 64 lowercase hex digits"),
        ({"index": "a/b"}, "invalid index name"),
        (3, "rag must be an object"),
    ):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            RagConfig.parse(value)


def test_the_command_line_form() -> None:
    assert RagConfig.from_option("docs") == RagConfig("docs")
    parsed = RagConfig.from_option("docs@0123abcdef:top_k=3, min_score=0.25,rewrite=TRUE")
    assert parsed == RagConfig("docs@0123abcdef", 3, 0.25, True)
    with pytest.raises(ValueError, match="--rag docs:3: options are key=value"):
        RagConfig.from_option("docs:3")
    with pytest.raises(ValueError, match=r"--rag\.min_score must be a number"):
        RagConfig.from_option("docs:min_score=high")
    assert split_index_ref("docs") == ("docs", None)
    assert split_index_ref("docs@" + "a" * 64) == ("docs", "a" * 64)


def test_the_template_numbers_passages_and_leaves_a_question_without_them_alone() -> None:
    passages = [
        Passage("kb", "v", "docs/a.md", 0, 0.9, "La lejía blanquea.", ("Limpieza", "Blanquear")),
        Passage("kb", "v", "manual.pdf", 2, 0.5, "Two bar.", page=3),
    ]
    prompt = augment_question("¿Qué blanquea?", passages)
    assert "[1] (docs/a.md, Limpieza > Blanquear) La lejía blanquea." in prompt
    assert "[2] (manual.pdf, page 3) Two bar." in prompt and prompt.endswith("Question: ¿Qué blanquea?")
    assert augment_question("¿Qué blanquea?", []) == "¿Qué blanquea?"


def test_a_rewritten_query_is_the_first_line_with_words() -> None:
    assert first_line('\n\n  "tomato sun hours"\nmore') == "tomato sun hours"
    assert first_line("\n \n") == ""
