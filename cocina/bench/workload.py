"""The requests a benchmark sends: synthetic prompts of a given length, or a JSONL dataset.

Without a tokenizer the prompt length is approximate: prompts are made of common short English words, which
most BPE vocabularies encode as one token each (with their leading space). With `--tokenizer PATH` the prompt
is cut to the exact number of tokens of that tokenizer, and output lengths are counted with it when the server
gives no usage.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Short, frequent words: one token each in GPT-2/Llama-style vocabularies when preceded by a space.
_WORD_TEXT = (
    "the of and to in is was for on that with as by at from his an were are which this be has had not "
    "but one their its also after first two they new who her been more other she all when time there "
    "into year made can over only most some people would up out about world city school war used may "
    "many such then where while part work said three these later state known between him them each "
    "during under through what well both life de since name high being early same any found day "
    "because own great old film small house long way show home best water game end set line music art "
    "book team road"
)
_WORDS = tuple(_WORD_TEXT.split())


class WorkloadError(ValueError):
    """A dataset or length problem; the message is one line."""


@dataclass(frozen=True)
class BenchRequest:
    prompt: str
    prompt_len: int  # tokens: exact with a tokenizer, else the number of words (approximate)
    output_len: int


TokenCounter = Callable[[str], int]


def load_tokenizer(path: str) -> tuple[Callable[[str], list[int]], Callable[[list[int]], str]]:
    """(encode, decode) of a local Hugging Face tokenizer, without special tokens."""
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:  # transformers is a cocina dependency, but keep the message clear
        raise WorkloadError(f"--tokenizer needs transformers: {exc}") from exc
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # any loading failure is a user error about the path
        raise WorkloadError(f"cannot load tokenizer {path!r}: {str(exc).splitlines()[0]}") from exc

    def encode(text: str) -> list[int]:
        return list(tok.encode(text, add_special_tokens=False))

    def decode(ids: list[int]) -> str:
        return str(tok.decode(ids))

    return encode, decode


def synthetic_requests(
    n: int,
    input_len: int,
    output_len: int,
    *,
    seed: int = 0,
    tokenizer: tuple[Callable[[str], list[int]], Callable[[list[int]], str]] | None = None,
) -> list[BenchRequest]:
    """`n` distinct prompts of `input_len` tokens (exact with a tokenizer), each asking for `output_len`."""
    if n < 1:
        raise WorkloadError(f"--requests must be >= 1 (got {n})")
    if input_len < 1 or output_len < 1:
        raise WorkloadError(f"--input-len and --output-len must be >= 1 (got {input_len}, {output_len})")
    rng = random.Random(seed)
    out: list[BenchRequest] = []
    for i in range(n):
        # A distinct opening per request keeps servers with prefix caching from serving every prompt from
        # cache.
        words = [str(i)] + [rng.choice(_WORDS) for _ in range(input_len - 1)]
        text = " ".join(words)
        if tokenizer is None:
            out.append(BenchRequest(text, input_len, output_len))
            continue
        encode, decode = tokenizer
        ids = encode(text)
        while len(ids) < input_len:  # a tokenizer that merges words: pad with more
            text += " " + rng.choice(_WORDS)
            ids = encode(text)
        # Decode-then-encode may not round-trip at the cut; trim until the re-encoded length is exact or just
        # under.
        cut = input_len
        text = decode(ids[:cut])
        while len(encode(text)) > input_len and cut > 1:
            cut -= 1
            text = decode(ids[:cut])
        out.append(BenchRequest(text, len(encode(text)), output_len))
    return out


def dataset_requests(
    path: Path,
    n: int | None,
    *,
    default_output_len: int | None = None,
    count_tokens: TokenCounter | None = None,
) -> list[BenchRequest]:
    """Read `{"prompt": ..., "output_len": ...}` lines; cycle through them if `n` is larger than the file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise WorkloadError(f"cannot read dataset {path}: {exc.strerror or exc}") from exc
    items: list[BenchRequest] = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"{path}:{lineno}: not JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
            raise WorkloadError(f'{path}:{lineno}: expected {{"prompt": "...", "output_len": N}}')
        out_len = obj.get("output_len", default_output_len)
        if not isinstance(out_len, int) or isinstance(out_len, bool) or out_len < 1:
            raise WorkloadError(f"{path}:{lineno}: output_len must be an integer >= 1 (or give --output-len)")
        prompt = obj["prompt"]
        plen = count_tokens(prompt) if count_tokens else len(prompt.split())
        items.append(BenchRequest(prompt, plen, out_len))
    if not items:
        raise WorkloadError(f"{path}: no requests in the dataset")
    if n is None:
        return items
    if n < 1:
        raise WorkloadError(f"--requests must be >= 1 (got {n})")
    return [items[i % len(items)] for i in range(n)]
