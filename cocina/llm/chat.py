"""The one place a conversation becomes a prompt: the same messages give the same token ids through every API.

`cocina.llm.LLMPredictor` (Cog and Replicate inputs `prompt` + `system_prompt`) and the OpenAI chat API both call
`chat_prompt_ids`. With a chat template in the tokenizer it is applied with the assistant's turn opened. Without
one (a base model), a lone user message (after an optional system message) is sent as plain text, the system
message before it and a blank line between, which is what a base model continues best; a longer conversation is
written as `role: content` lines ending with `assistant:`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["chat_prompt_ids", "messages_for"]


def messages_for(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The chat messages of one prompt and an optional system prompt."""
    messages = [{"role": "user", "content": prompt}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def chat_prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, Any]]) -> list[int]:
    """Token ids of `messages` (dicts with `role` and text `content`), ready for the assistant to answer."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([dict(m) for m in messages], add_generation_prompt=True, tokenize=True)
        if isinstance(ids, Mapping) or hasattr(ids, "input_ids"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return [int(t) for t in ids]
    roles = [m["role"] for m in messages]
    if roles in (["user"], ["system", "user"]):
        text = "\n\n".join(str(m["content"]) for m in messages if m["content"])
    else:
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
    return [int(t) for t in tokenizer.encode(text)]
