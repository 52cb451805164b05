"""Streaming text out of token ids: incremental detokenization and stop-string matching.

:class:`IncrementalDetokenizer` turns one sampled token at a time into newly completed text. Decoding the
whole sequence at every step costs O(length) per token, so it uses the two-offset window that vLLM and TGI
describe: ``prefix_offset`` marks a few tokens of already-emitted context and ``read_offset`` the end of the
emitted text. Each push decodes ``ids[prefix_offset:read_offset]`` and ``ids[prefix_offset:]`` and emits the
difference; the context tokens make tokenizers whose decoding depends on neighbours (SentencePiece's leading
space, byte-level merges) produce the same characters as a full decode would.

A byte-level BPE token can end in the middle of a multi-byte UTF-8 character (an emoji is often two or more
tokens); decoding such a window ends in U+FFFD. The text is then held back — the offsets do not move — until
a later token completes the character, so a client never sees a broken character. :meth:`flush` hands out
whatever is still held at the end (an unfinished character then really is U+FFFD, as in a full decode).

Decoding always uses ``clean_up_tokenization_spaces=False``: the clean-up rewrites (" ." → ".") depend on
the neighbouring text and would make streamed pieces disagree with the final text. The concatenation of
everything pushed and flushed equals ``tokenizer.decode(output_ids, skip_special_tokens=...,
clean_up_tokenization_spaces=False)`` for byte-level BPE tokenizers; for SentencePiece tokenizers it keeps
the leading space of the first output token that a decode of the output alone would strip (the prompt is
the context), which is what a continuation of the prompt needs.

:class:`StopStringMatcher` sits after the detokenizer: it finds stop strings even when they span token (and
push) boundaries by holding back any suffix that could still become the start of a stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["IncrementalDetokenizer", "StopStringMatcher"]

#: Tokens of prompt context decoded before the first output token (vLLM uses the same value).
_INITIAL_CONTEXT = 5
_REPLACEMENT = "\ufffd"


class IncrementalDetokenizer:
    """Decode output tokens one at a time into text pieces that never split a UTF-8 character.

    Args:
        tokenizer: a Hugging Face tokenizer (anything with ``decode(ids, skip_special_tokens=...,
            clean_up_tokenization_spaces=...)``).
        prompt_token_ids: the prompt; its last few tokens are decoding context only and are never emitted.
        skip_special_tokens: drop special tokens (EOS, chat markers) from the text, as ``decode`` does.
    """

    def __init__(
        self, tokenizer: Any, prompt_token_ids: Sequence[int], skip_special_tokens: bool = True
    ) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self._ids: list[int] = list(prompt_token_ids)
        self._num_prompt = len(self._ids)
        self._prefix_offset = max(self._num_prompt - _INITIAL_CONTEXT, 0)
        self._read_offset = self._num_prompt
        # Decoded text of ids[prefix_offset:read_offset], cached: it only changes when the offsets move.
        self._prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        if self._prefix_text.endswith(_REPLACEMENT):
            # The prompt ends inside a character (prompts given as ids can): output bytes would merge
            # with it and the text would belong to neither side. Decode the output without context.
            self._prefix_offset = self._read_offset
            self._prefix_text = ""
        self._pieces: list[str] = []

    @property
    def output_token_ids(self) -> list[int]:
        """The output tokens pushed so far."""
        return self._ids[self._num_prompt :]

    @property
    def text(self) -> str:
        """All text emitted so far (pushes and flushes)."""
        return "".join(self._pieces)

    def push(self, token_id: int) -> str:
        """Append one output token; return the text it completes ("" while a character is unfinished)."""
        self._ids.append(int(token_id))
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) <= len(self._prefix_text) or new_text.endswith(_REPLACEMENT):
            # Nothing new (a skipped special token) or a character split across tokens: hold it back.
            return ""
        return self._emit(new_text)

    def flush(self) -> str:
        """Return any held-back text (at the end of the sequence); incomplete bytes decode to U+FFFD."""
        if self._read_offset == len(self._ids):
            return ""
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) <= len(self._prefix_text):
            self._read_offset = len(self._ids)
            return ""
        return self._emit(new_text)

    def _emit(self, new_text: str) -> str:
        piece = new_text[len(self._prefix_text) :]
        # Slide the window: the emitted tokens become the next step's context.
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        self._prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        self._pieces.append(piece)
        return piece

    def _decode(self, ids: list[int]) -> str:
        if not ids:
            return ""
        text: str = self.tokenizer.decode(
            ids, skip_special_tokens=self.skip_special_tokens, clean_up_tokenization_spaces=False
        )
        return text


class StopStringMatcher:
    """Cut a text stream at the first occurrence of any stop string, across ``feed`` boundaries.

    ``feed`` returns the text that is safe to emit and whether a stop string was found. Text that ends
    with a possible start of a stop string (e.g. ``"\\n"`` when ``"\\n\\n"`` is a stop) is held back until
    the next feed settles it. The stop string itself and everything after it are never emitted; after a
    match every feed returns ``("", True)``. Call :meth:`flush` at the end of the stream for the held text.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops: tuple[str, ...] = tuple(s for s in stops if s)
        # Longest suffix worth holding: one character short of the longest stop string.
        self._max_hold = max((len(s) for s in self.stops), default=1) - 1
        self._held = ""
        self.matched = False
        self.matched_stop: str | None = None

    def feed(self, text: str) -> tuple[str, bool]:
        """Add ``text``; return ``(text_to_emit, matched)``."""
        if self.matched:
            return "", True
        if not self.stops:
            return text, False
        buf = self._held + text
        # Earliest match wins; only the new region plus held text can contain one (older text was
        # emitted only after being proven not to start a stop string).
        best = -1
        for stop in self.stops:
            idx = buf.find(stop)
            if idx != -1 and (best == -1 or idx < best):
                best, self.matched_stop = idx, stop
        if best != -1:
            self.matched = True
            self._held = ""
            return buf[:best], True
        hold = self._holdback(buf)
        self._held = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        """Return the held-back text at the end of the stream ("" after a match)."""
        held, self._held = self._held, ""
        return "" if self.matched else held

    def _holdback(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of some stop string."""
        for n in range(min(self._max_hold, len(buf)), 0, -1):
            tail = buf[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0
