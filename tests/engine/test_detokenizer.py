"""Incremental detokenizer (no broken UTF-8, concatenation == decode) and stop-string matching."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cocina.engine.detokenizer import IncrementalDetokenizer, StopStringMatcher

TEXTS = [
    "¿Cuánto cuesta el pingüino? Año, niño, corazón, acción. ¡Olé! 🍽 🥪 👨‍🍳 ",
    "Emoji seguidos: 🍕🍕🍣🎉👩🏽‍💻 y más: ñandú, güero, ÁÉÍÓÚ ü. Fin.",
    "日本語のテキスト と 中文 和 한국어. Größe, Übung, ação, coração.",
    "plain ascii text with numbers 12345 and symbols {}[]<>",
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from cocina.models.tiny import sample_corpus, train_tokenizer

    # A small vocabulary (few merges) so multi-byte characters are split across several tokens.
    return train_tokenizer([*sample_corpus(), *TEXTS], vocab_size=320)


def _stream(tok: Any, prompt: list[int], out: list[int], skip: bool = True) -> list[str]:
    detok = IncrementalDetokenizer(tok, prompt, skip_special_tokens=skip)
    pieces = [detok.push(t) for t in out]
    pieces.append(detok.flush())
    assert detok.text == "".join(pieces)
    assert detok.output_token_ids == out
    return pieces


def _decode(tok: Any, ids: list[int], skip: bool = True) -> str:
    text: str = tok.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False)
    return text


@pytest.mark.parametrize("text", TEXTS)
def test_multibyte_characters_split_across_tokens(tokenizer: Any, text: str) -> None:
    ids = tokenizer.encode(text)
    # The test is only meaningful if some token really ends inside a character.
    if not text.isascii():
        assert any(_decode(tokenizer, [t]).endswith("\ufffd") for t in ids)
    prompt = tokenizer.encode("Hola, ")
    pieces = _stream(tokenizer, prompt, ids)
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == _decode(tokenizer, ids) == text


@pytest.mark.parametrize("prompt_text", ["", "x", "Emoji 🍕", "una frase más larga como contexto 👩🏽‍💻"])
def test_any_prompt_context(tokenizer: Any, prompt_text: str) -> None:
    prompt = tokenizer.encode(prompt_text)
    ids = tokenizer.encode(TEXTS[1])
    assert "".join(_stream(tokenizer, prompt, ids)) == TEXTS[1]


def test_special_tokens_skipped_or_kept(tokenizer: Any) -> None:
    eos = tokenizer.eos_token_id
    ids = [*tokenizer.encode("año 🍕"), eos, *tokenizer.encode(" fin")]
    assert "".join(_stream(tokenizer, [], ids)) == _decode(tokenizer, ids) == "año 🍕 fin"
    kept = "".join(_stream(tokenizer, [], ids, skip=False))
    assert kept == _decode(tokenizer, ids, skip=False) == "año 🍕<|endoftext|> fin"


def test_random_token_streams_concatenate_to_decode(tokenizer: Any) -> None:
    # Random ids (as a random-weight model samples them) include broken byte sequences: the text then
    # legitimately contains U+FFFD, but the streamed pieces must still add up to the full decode.
    rng = random.Random(0)
    vocab = len(tokenizer)
    for _ in range(300):
        prompt = [rng.randrange(vocab) for _ in range(rng.randrange(0, 8))]
        out = [rng.randrange(vocab) for _ in range(rng.randrange(1, 40))]
        assert "".join(_stream(tokenizer, prompt, out)) == _decode(tokenizer, out)


def test_window_stays_small(tokenizer: Any) -> None:
    calls: list[int] = []

    class Spy:
        def decode(self, ids: list[int], **kw: Any) -> str:
            calls.append(len(ids))
            return _decode(tokenizer, ids, kw.get("skip_special_tokens", True))

    ids = tokenizer.encode(" ".join(TEXTS) * 4)
    detok = IncrementalDetokenizer(Spy(), tokenizer.encode("prompt " * 50))
    text = "".join(detok.push(t) for t in ids) + detok.flush()
    assert text == _decode(tokenizer, ids)
    assert len(ids) > 300 and max(calls) <= 12


def test_flush_emits_an_unfinished_character(tokenizer: Any) -> None:
    ids = tokenizer.encode("a🍕")
    detok = IncrementalDetokenizer(tokenizer, [])
    pieces = [detok.push(t) for t in ids[:-1]]
    tail = detok.flush()
    assert "".join(pieces) + tail == _decode(tokenizer, ids[:-1])
    assert tail.endswith("\ufffd")
    assert detok.flush() == ""


# ---------------------------------------------------------------- stop strings


def _feed_all(m: StopStringMatcher, chunks: list[str]) -> tuple[str, bool]:
    out = []
    matched = False
    for c in chunks:
        text, matched = m.feed(c)
        out.append(text)
        if matched:
            break
    if not matched:
        out.append(m.flush())
    return "".join(out), matched


def test_stop_string_inside_one_chunk() -> None:
    assert _feed_all(StopStringMatcher(["END"]), ["hola END adiós"]) == ("hola ", True)


def test_stop_string_across_chunks() -> None:
    m = StopStringMatcher(["\n\n", "###"])
    assert m.feed("uno\n") == ("uno", False)  # "\n" might start "\n\n": held back
    assert m.feed("dos") == ("\ndos", False)
    assert m.feed("#") == ("", False)
    assert m.feed("#") == ("", False)
    assert m.feed("# tres") == ("", True)
    assert m.matched_stop == "###"
    assert m.feed("más") == ("", True)
    assert m.flush() == ""


def test_hold_back_then_flush_without_match() -> None:
    m = StopStringMatcher(["STOP"])
    assert m.feed("casi ST") == ("casi ", False)
    assert m.feed("O") == ("", False)
    assert m.flush() == "STO"


def test_earliest_stop_wins_and_overlapping_prefixes() -> None:
    assert _feed_all(StopStringMatcher(["bc", "abcd"]), ["xa", "b", "cd"]) == ("x", True)
    assert _feed_all(StopStringMatcher(["abcd", "bc"]), ["xa", "b", "ce"]) == ("xa", True)
    assert _feed_all(StopStringMatcher(["aab"]), ["a", "a", "a", "b"]) == ("a", True)


def test_no_stops_passes_through() -> None:
    m = StopStringMatcher([])
    assert m.feed("anything") == ("anything", False)
    assert m.flush() == ""


def test_stop_strings_across_token_boundaries_with_detokenizer(tokenizer: Any) -> None:
    text = "Respuesta: ¡pingüino! 🍕 FIN y después nada más"
    ids = tokenizer.encode(text)
    for stop, expected in [("🍕 FIN", "Respuesta: ¡pingüino! "), ("güi", "Respuesta: ¡pin"), ("nada", None)]:
        detok = IncrementalDetokenizer(tokenizer, [])
        m = StopStringMatcher([stop])
        emitted, matched = "", False
        for t in ids:
            piece, matched = m.feed(detok.push(t))
            emitted += piece
            if matched:
                break
        assert matched
        assert emitted == (expected if expected is not None else text[: text.index(stop)])


@pytest.mark.parametrize("seed", range(20))
def test_matcher_equals_reference_on_random_splits(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab\nñ🍕"
    text = "".join(rng.choice(alphabet) for _ in range(60))
    stops = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 4))) for _ in range(2)]
    cuts = sorted(rng.sample(range(1, len(text)), 10))
    chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    found = [text.find(s) for s in stops if s in text]
    expected = (text[: min(found)], True) if found else (text, False)
    assert _feed_all(StopStringMatcher(stops), chunks) == expected
