"""Tokenizers: `transformers` tokenizers from a checkpoint folder or the embedded model."""
from __future__ import annotations

import os

from zeroplay.models.embedded import EMBEDDED_NAME, embedded_dir


def load_tokenizer(name_or_path: str):
    """A `transformers` tokenizer (with its chat template where the checkpoint has one)."""
    from transformers import AutoTokenizer

    from zeroplay.models.hf import ModelLoadError

    path = embedded_dir() if name_or_path == EMBEDDED_NAME else name_or_path
    if not os.path.isdir(path):
        raise ModelLoadError(f"{name_or_path!r} is not a checkpoint folder with a tokenizer, nor the embedded "
                             f"name {EMBEDDED_NAME!r}")
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: no usable tokenizer ({str(e).splitlines()[0]})") from None


def eos_ids(tokenizer) -> tuple[int, ...]:
    """The ids that end a completion: the tokenizer's eos plus the chat-turn ends it knows (SmolLM2's
    chat turns end with <|im_end|>, not its eos)."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    for t in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        if t in vocab:
            ids.add(vocab[t])
    return tuple(sorted(i for i in ids if i is not None))
