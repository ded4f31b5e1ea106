"""Default run: the embedded SmolLM2-135M-Instruct, small enough for a 2-core CPU.

    python -m zeroplay.train --workdir runs/default
    python -m zeroplay.train --config configs/default.py:tiny --workdir runs/tiny   # random tiny model
    python -m zeroplay.train --config configs/default.py --workdir runs/x --config.steps=3

Any key can be overridden with `--config.a.b=value`.
"""
import ml_collections


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 2

    c.model = ml_collections.ConfigDict()
    c.model.name = "smollm2-135m-instruct"  # an HF folder, or the embedded name
    c.model.dtype = "float32"  # compute dtype; bfloat16 on accelerators
    c.model.param_dtype = "float32"
    c.model.scan_layers = True
    c.model.remat = "none"
    # Used only when model.name == "random": a random model of this shape (tests, CPU smoke runs).
    c.model.random = ml_collections.ConfigDict(dict(
        family="qwen2", vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=2,
        num_heads=4, num_kv_heads=2, tie_word_embeddings=True))

    # Mesh axes (data, fsdp, tensor); -1 fills the remaining devices. Rules map logical axis
    # names of the model to mesh axes (see zeroplay/parallel/sharding.py).
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.rules = ml_collections.config_dict.placeholder(list)

    c.sampling = ml_collections.ConfigDict(dict(
        max_new_tokens=48, temperature=1.0, top_p=1.0, top_k=0, num_samples=4))

    c.demo_prompt = "What is 12 + 35? Answer with a number."

    if arg == "tiny":
        c.model.name = "random"
        c.sampling.max_new_tokens = 16
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use 'tiny' or nothing")
    return c
