"""The embedded SmolLM2-135M-Instruct against transformers' own loading of the same GGUF file."""
import os
import time

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from zeroplay.models import load_pretrained, load_tokenizer
from zeroplay.models.embedded import EMBEDDED_NAME, gguf_path

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def chat_ids():
    tok = load_tokenizer(EMBEDDED_NAME)
    assert "<|im_start|>" in tok.chat_template  # ChatML
    msgs = [{"role": "user", "content": "What is 12 + 35? Answer with a number, then explain briefly."}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.rstrip().endswith("<|im_start|>assistant")
    return tok(text)["input_ids"]


def test_embedded_matches_transformers_gguf(chat_ids):
    model, params = load_pretrained(EMBEDDED_NAME)
    cfg = model.cfg
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.vocab_size) == (30, 576, 9, 3, 49152)
    assert cfg.tie_word_embeddings and cfg.rope_theta == 100000.0
    ours = np.asarray(model.apply({"params": params}, jnp.asarray([chat_ids])))[0]
    path = gguf_path()
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        ref = ref_model(torch.tensor([chat_ids])).logits[0].float().numpy()
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
    assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()


def test_embedded_cached_load_is_fast():
    load_pretrained(EMBEDDED_NAME)  # converts on first use
    t = time.perf_counter()
    load_pretrained(EMBEDDED_NAME)
    assert time.perf_counter() - t < 5.0
