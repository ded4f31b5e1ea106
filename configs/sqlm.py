"""SQLM (Self-Questioning LMs): a proposer asks questions on one topic, a solver answers, majority vote rewards both.

    python -m zeroplay.train --config configs/sqlm.py --workdir runs/sqlm                  # SmolLM2 x 2
    python -m zeroplay.train --config configs/sqlm.py:tiny --workdir runs/sqlm_tiny        # random, CPU
    python -m zeroplay.train --config configs/sqlm.py:qwen2.5-3b-gpu8 --workdir ...         # full size

Variants: "" (two copies of the embedded SmolLM2-135M-Instruct), "tiny" (two random tiny models, byte
tokenizer, 2 steps) and full-size runs of Qwen2.5-3B(-Instruct) on an 8-GPU node or a TPU slice
(models from $ZEROPLAY_MODELS/<name>). The topic is `--config.game.topic="..."`. SQLM's exact batch
sizes are [UNVERIFIED] (not in methods.md): the full-size values below are ours.
"""
import os

import ml_collections

FULL_SIZE = {
    "qwen2.5-3b": ("Qwen2.5-3B-Instruct", dict(
        family="qwen2", vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_layers=36, num_heads=16,
        num_kv_heads=2, rope_theta=1e6, tie_word_embeddings=True, attention_bias=True, max_position_embeddings=32768,
        rms_norm_eps=1e-6)),
}
MESHES = {"gpu8": dict(data=1, fsdp=8, tensor=1), "tpu": dict(data=1, fsdp=16, tensor=1)}
TINY_SHAPE = dict(family="qwen2", vocab_size=258, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=2, num_kv_heads=1, tie_word_embeddings=True, attention_bias=True,
                  max_position_embeddings=1024)


def _policy(max_new, max_prompt):
    return ml_collections.ConfigDict(dict(
        model=dict(name="smollm2-135m-instruct", dtype="float32", param_dtype="float32", scan_layers=True,
                   remat="none", shape=None, tokenizer=None),
        train=dict(lr=1e-6, schedule="constant", grad_clip=1.0, clip_low=0.2, clip_high=0.2, kl_coef=0.0,
                   aggregation="token_mean", entropy_coef=0.0,
                   micro_batch=4, logprob_chunk=128),  # full logits of 16 x 768 tokens: a 27 GB update
        sampling=dict(max_new_tokens=max_new, temperature=1.0, top_p=1.0, top_k=0, max_prompt_tokens=max_prompt),
    ))


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 4
    c.game = ml_collections.ConfigDict(dict(name="sqlm", proposals=4, solver_samples=4, require_tags=False,
                                            think=False, chat=True))
    c.roles = ml_collections.ConfigDict(dict(proposer="proposer", solver="solver"))
    c.policies = ml_collections.ConfigDict()
    c.policies.proposer = _policy(128, 256)
    c.policies.solver = _policy(256, 512)
    c.loop = ml_collections.ConfigDict(dict(
        checkpoint_every=1, keep_checkpoints=2, async_checkpoint=True, eval_every=0, sample_batch=32,
        train_row_multiple=8, train_len_multiple=64, progress=True))
    c.verifiers = ml_collections.ConfigDict(dict(code_workers=0, code_memory_mb=1024))
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.rules = ml_collections.config_dict.placeholder(list)

    if arg == "tiny":
        c.steps = 2
        c.game.proposals = 2
        c.game.solver_samples = 2
        c.game.chat = False
        for p in (c.policies.proposer, c.policies.solver):
            p.model.name = "random"
            p.model.shape = TINY_SHAPE
            p.model.tokenizer = "byte"
            p.train.lr = 1e-3
            p.train.micro_batch = None
            p.train.logprob_chunk = None
            p.sampling.max_new_tokens = 16
            p.sampling.max_prompt_tokens = 256
        c.loop.progress = False
        c.loop.train_len_multiple = 32
        c.loop.train_row_multiple = 4
    elif arg and arg.rsplit("-", 1)[0] in FULL_SIZE and arg.rsplit("-", 1)[1] in MESHES:
        model, where = arg.rsplit("-", 1)
        folder, shape = FULL_SIZE[model]
        c.steps = 200
        c.game.proposals = 64
        c.game.solver_samples = 8
        for p, max_new in ((c.policies.proposer, 512), (c.policies.solver, 2048)):
            p.model.name = os.path.join(os.environ.get("ZEROPLAY_MODELS", "models"), folder)
            p.model.shape = shape
            p.model.dtype = "bfloat16"
            p.model.remat = "full"
            p.train.lr = 1e-6
            p.train.compute_dtype = "bfloat16"
            p.train.micro_batch = 16
            p.train.logprob_chunk = 1024
            p.sampling.max_new_tokens = max_new
            p.sampling.max_prompt_tokens = 1024
        c.loop.sample_batch = 256
        c.loop.train_row_multiple = 16
        c.loop.train_len_multiple = 512
        c.loop.checkpoint_every = 20
        c.mesh = ml_collections.ConfigDict(MESHES[where])
    elif arg not in (None, ""):
        variants = ["tiny"] + [f"{m}-{w}" for m in FULL_SIZE for w in MESHES]
        raise ValueError(f"unknown configs/sqlm.py variant {arg!r}; use one of {variants} or nothing")
    return c
