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
