"""A byte-level `transformers` tokenizer for random tiny models (tests, `:tiny` configs).

Every UTF-8 byte is one token (ids 0..255, GPT-2's printable byte alphabet), plus `<|endoftext|>`
(eos, 256) and `<|pad|>` (257): any text round-trips exactly, with no training and no download.
"""
from __future__ import annotations

EOS, PAD = "<|endoftext|>", "<|pad|>"
VOCAB_SIZE = 258


def _byte_alphabet() -> list[str]:
    """GPT-2's bytes -> printable characters map, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def byte_tokenizer():
    """A PreTrainedTokenizerFast over bytes (vocab 258, eos 256, pad 257)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(_byte_alphabet())}
    vocab[EOS], vocab[PAD] = 256, 257
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS, PAD])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
