"""Writes notebooks/probe_checkpoint.ipynb from the cells below (the notebook is generated so that
its code stays reviewable as plain Python and `tests/test_notebook.py` runs exactly these cells).

    python notebooks/make_probe_notebook.py
"""
import json
import os

CELLS = [
    ("markdown", """# Probing a sharded checkpoint

Restore a policy saved on one mesh onto another, inspect its sharding, sample from it and score the
samples with the verifiers. Runs on a laptop CPU: 8 simulated devices stand in for a pod slice.
Set `MODEL = "smollm2-135m-instruct"` to use the embedded pretrained model instead of a random tiny one."""),
    ("code", """import os
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")  # before importing jax
import tempfile
import jax, jax.numpy as jnp, numpy as np
from zeroplay.models import ModelConfig, init_params, load_pretrained, load_tokenizer
from zeroplay.parallel import make_mesh
from zeroplay.rl import PolicyConfig, create_state
from zeroplay.checkpoint import Checkpointer, abstract_like
from zeroplay.parallel.placement import state_shardings
from zeroplay.sampling import generate, chat_prompts
from zeroplay.verifiers.math import extract_boxed, is_equivalent

MODEL = os.environ.get("ZEROPLAY_NOTEBOOK_MODEL", "random")
print(jax.device_count(), "devices")"""),
    ("code", """# A policy on a (fsdp=4, tensor=2) mesh, as a pod job would hold it, saved with Orbax.
train_mesh = make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
if MODEL == "random":
    model, params = init_params(ModelConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2,
                                            num_heads=4, num_kv_heads=2, tie_word_embeddings=True),
                                jax.random.PRNGKey(0))
    tok = None
else:
    model, params = load_pretrained(MODEL)
    tok = load_tokenizer(MODEL)
pc = PolicyConfig(lr=1e-5)
state = create_state(params, pc, model.cfg, mesh=train_mesh)
workdir = tempfile.mkdtemp()
ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=2)
ckpt.save(1, {"policy/solver": state}, {"note": "saved on 8 devices"})
ckpt.wait()
print("saved steps:", ckpt.all_steps(), "trees:", ckpt.tree_names(1))"""),
    ("code", """# Restore onto a different mesh: 2-way tensor parallel only, as a single-host notebook might use.
probe_mesh = make_mesh({"data": 1, "fsdp": 1, "tensor": 2}, devices=jax.devices()[:2])
target = abstract_like(state, state_shardings(state, model.cfg, probe_mesh))
trees, host = ckpt.restore(targets={"policy/solver": target})
restored = trees["policy/solver"]
q = restored.params["layers"]["self_attn"]["q_proj"]["kernel"]
print(host, "| step", int(restored.step))
print("q_proj", q.shape, q.sharding.spec, "on", len(q.sharding.device_set), "devices")
same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))), state.params, restored.params)
assert all(jax.tree.leaves(same))"""),
    ("code", """# Sample from the restored params and score the samples with the math verifier.
if tok is not None:
    prompts = chat_prompts(tok, ["What is 12 + 35? Put the final answer in \\\\boxed{}."])
else:
    prompts = [[1, 2, 3, 4], [5, 6, 7]]
out = generate(model, restored.params, prompts, max_new_tokens=24, num_samples=4, temperature=1.0,
               rng=jax.random.PRNGKey(0), mesh=probe_mesh)
print("tokens", out.tokens.shape, "lengths", out.lengths.tolist())
texts = ([tok.decode(out.tokens[0, g, :out.lengths[0, g]]) for g in range(4)] if tok is not None
         else ["\\\\boxed{47}", "\\\\boxed{48}", "no answer", "\\\\boxed{47.0}"])
rewards = [float(is_equivalent(extract_boxed(t) or "", "47")) for t in texts]
print("rewards", rewards)
ckpt.close()"""),
]


def write(cells, filename: str) -> str:
    """Write `cells` ((kind, source) pairs) as notebooks/<filename>; returns its path."""
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                          "language": "python"}},
          "cells": []}
    for i, (kind, src) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"cell-{i}", "metadata": {}, "source": src.splitlines(keepends=True)}
        if kind == "code":
            cell.update(outputs=[], execution_count=None)
        nb["cells"].append(cell)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
    with open(path, "w") as f:
        json.dump(nb, f, indent=1)
        f.write("\n")
    return path


def main():
    write(CELLS, "probe_checkpoint.ipynb")


if __name__ == "__main__":
    main()
