"""Absolute Zero (AZR): one model proposes and solves deduction, abduction and induction tasks.

    python -m zeroplay.train --config configs/azr.py --workdir runs/azr                  # SmolLM2
    python -m zeroplay.train --config configs/azr.py:tiny --workdir runs/azr_tiny        # random, CPU
    python -m zeroplay.train --config configs/azr.py:qwen2.5-7b-coder-tpu --workdir gs://...  # v5p-64

Variants: "" (the embedded SmolLM2-135M-Instruct, sized for a 2-core CPU), "tiny" (a random tiny
model with a byte tokenizer: 2 steps in well under 2 minutes), and the reference runs of
methods.md section 1 (Qwen2.5-Coder 7B / 3B: batch 64 per (task, role), lr 1e-6 constant, K=6,
n=8, buffer cap 16384, prompts 6144 / responses 8096 tokens, no KL, clip 0.2 / 0.28) on a TPU
v5p-64 slice (32 chips) or an 8-GPU node; their models are read from $ZEROPLAY_MODELS/<name>
(Hugging Face folders: nothing is downloaded).
"""
import os

import ml_collections

FULL_SIZE = {
    # name: (HF folder name, architecture, mesh)
    "qwen2.5-7b-coder": ("Qwen2.5-Coder-7B", dict(
        family="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28,
        num_heads=28, num_kv_heads=4, rope_theta=1e6, tie_word_embeddings=False, attention_bias=True,
        max_position_embeddings=32768, rms_norm_eps=1e-6)),
    "qwen2.5-3b-coder": ("Qwen2.5-Coder-3B", dict(
        family="qwen2", vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_layers=36,
        num_heads=16, num_kv_heads=2, rope_theta=1e6, tie_word_embeddings=True, attention_bias=True,
        max_position_embeddings=32768, rms_norm_eps=1e-6)),
}
# v5p-64 (32 chips): tensor=4 splits the 28 heads (7 per chip) and so the [T, T] attention scores of
# 14k-token rows, which fsdp alone cannot (`python -m zeroplay.memory --config configs/azr.py:qwen2.5-7b-coder-tpu`).
MESHES = {"tpu": dict(data=1, fsdp=8, tensor=4), "gpu8": dict(data=1, fsdp=8, tensor=1)}
TINY_SHAPE = dict(family="qwen2", vocab_size=258, hidden_size=64, intermediate_size=128, num_layers=2,
                  num_heads=4, num_kv_heads=2, tie_word_embeddings=True, attention_bias=True,
                  max_position_embeddings=4096)


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 4

    c.game = ml_collections.ConfigDict(dict(
        name="azr", batch_per_task_role=2, k_references=2, learnability_samples=4, seed_size=6,
        seed_max_rounds=2, new_mix=2, timeout_s=5.0))
    c.roles = ml_collections.ConfigDict(dict(proposer="policy", solver="policy"))
    c.policies = ml_collections.ConfigDict()
    c.policies.policy = ml_collections.ConfigDict(dict(
        # remat, micro-batches and a chunked LM head keep the update of 1.7k-token rows in a few GB.
        model=dict(name="smollm2-135m-instruct", dtype="float32", param_dtype="float32", scan_layers=True,
                   remat="full", shape=None, tokenizer=None),
        train=dict(lr=1e-6, schedule="constant", grad_clip=1.0, clip_low=0.2, clip_high=0.28, kl_coef=0.0,
                   aggregation="token_mean", entropy_coef=0.0, micro_batch=4, logprob_chunk=256),
        sampling=dict(max_new_tokens=192, temperature=1.0, top_p=1.0, top_k=0, max_prompt_tokens=1536),
    ))
    c.loop = ml_collections.ConfigDict(dict(
        checkpoint_every=1, keep_checkpoints=2, async_checkpoint=True, eval_every=0, sample_batch=32,
        train_row_multiple=8, train_len_multiple=64, progress=True))
    c.verifiers = ml_collections.ConfigDict(dict(code_workers=0, code_memory_mb=1024))
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.rules = ml_collections.config_dict.placeholder(list)

    if arg == "tiny":
        c.steps = 2
        c.policies.policy.model.name = "random"
        c.policies.policy.model.remat = "none"
        c.policies.policy.train.micro_batch = None
        c.policies.policy.train.logprob_chunk = None
        c.policies.policy.model.shape = TINY_SHAPE
        c.policies.policy.model.tokenizer = "byte"
        c.policies.policy.train.lr = 1e-3
        c.policies.policy.sampling.max_new_tokens = 32
        # Byte tokens: AZR's propose prompts are ~3000 of them; the tiny model sees their last 512.
        c.policies.policy.sampling.max_prompt_tokens = 512
        c.game.learnability_samples = 2
        c.game.seed_size = 2
        c.game.seed_max_rounds = 1
        c.loop.progress = False
    elif arg and arg.rsplit("-", 1)[0] in FULL_SIZE and arg.rsplit("-", 1)[1] in MESHES:
        model, where = arg.rsplit("-", 1)
        folder, shape = FULL_SIZE[model]
        c.steps = 500  # the maintainers' horizon; gains saturate near 400 (methods.md)
        c.game = ml_collections.ConfigDict(dict(
            name="azr", batch_per_task_role=64, k_references=6, learnability_samples=8, seed_size=256,
            seed_max_rounds=64, new_mix=64, timeout_s=10.0, buffer_cap=16384, induction_inputs=10,
            induction_shown=5))
        p = c.policies.policy
        p.model.name = os.path.join(os.environ.get("ZEROPLAY_MODELS", "models"), folder)
        p.model.shape = shape
        p.model.dtype = "bfloat16"
        p.model.param_dtype = "float32"
        p.model.remat = "full"
        p.train.lr = 1e-6
        p.train.compute_dtype = "bfloat16"
        mesh = dict(MESHES[where])
        while shape["num_kv_heads"] % mesh["tensor"]:  # tensor shards whole KV heads (the 3B has 2)
            mesh["tensor"] //= 2
            mesh["fsdp"] *= 2
        p.train.micro_batch = mesh["data"] * mesh["fsdp"] if where == "tpu" else 16  # tpu: a row per batch shard
        p.train.logprob_chunk = 1024
        p.sampling.max_new_tokens = 8096
        p.sampling.max_prompt_tokens = 6144
        # rows per sampler call: the prefill's attention over 8192-slot prompts and the KV cache
        # must fit next to the state (zeroplay.memory)
        c.loop.sample_batch = 128 if where == "tpu" else 512
        c.loop.train_row_multiple = 128
        c.loop.train_len_multiple = 512
        c.loop.checkpoint_every = 10
        c.loop.eval_every = 50
        c.mesh = ml_collections.ConfigDict(mesh)
    elif arg not in (None, ""):
        variants = ["tiny"] + [f"{m}-{w}" for m in FULL_SIZE for w in MESHES]
        raise ValueError(f"unknown configs/azr.py variant {arg!r}; use one of {variants} or nothing")
    return c
