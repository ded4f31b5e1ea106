"""Prompt token ids from the tokenizer's chat template."""
from __future__ import annotations

from typing import Sequence, Union

Message = dict  # {"role": ..., "content": ...}
Conversation = Union[str, Sequence[Message]]


def chat_prompts(tokenizer, messages_or_texts: Sequence[Conversation], system: str | None = None,
                 add_generation_prompt: bool = True) -> list[list[int]]:
    """One token-id list per item: a plain string is one user turn; a list of messages is used as is.

    `system` is prepended as a system turn unless the conversation already starts with one.
    Falls back to the plain text (with a system line) when the tokenizer has no chat template.
    """
    out = []
    for item in messages_or_texts:
        msgs = [{"role": "user", "content": item}] if isinstance(item, str) else [dict(m) for m in item]
        if system is not None and (not msgs or msgs[0].get("role") != "system"):
            msgs = [{"role": "system", "content": system}] + msgs
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)
            ids = tokenizer.encode(text, add_special_tokens=False)
        else:
            text = "\n".join(m["content"] for m in msgs)
            ids = tokenizer.encode(text)
        out.append([int(t) for t in ids])
    return out
