"""R-Zero: a challenger writes questions the solver is unsure about; the solver trains on them.

    python -m zeroplay.train --config configs/r_zero.py --workdir runs/r_zero                 # SmolLM2 x 2
    python -m zeroplay.train --config configs/r_zero.py:tiny --workdir runs/r_zero_tiny       # random, CPU
    python -m zeroplay.train --config configs/r_zero.py:qwen3-4b-gpu8 --workdir ...            # reference run

Variants: "" (two copies of the embedded SmolLM2-135M-Instruct, sized for a 2-core CPU), "tiny"
(two random tiny models, byte tokenizer, 2 steps: one challenger step, then a solver step with its
question set), and the reference runs of methods.md section 5 (Qwen3-4B/8B-Base; challenger: 5
GRPO steps per iteration, 16 prompts x 4, lr 1e-6, KL 0.01; solver: 1000 questions voted on 10
times at T=1.0, top-p 0.95, p in [0.3, 0.8], 15 GRPO steps of 128 questions x 5; 3 iterations)
on an 8-GPU node or a TPU slice, models from $ZEROPLAY_MODELS/<name>.
"""
import os

import ml_collections

QWEN3 = dict(family="qwen3", vocab_size=151936, qk_norm=True, rope_theta=1e6, attention_bias=False,
             max_position_embeddings=32768, rms_norm_eps=1e-6, head_dim=128)
FULL_SIZE = {
    "qwen3-4b": ("Qwen3-4B-Base", dict(QWEN3, hidden_size=2560, intermediate_size=9728, num_layers=36,
                                       num_heads=32, num_kv_heads=8, tie_word_embeddings=True)),
    "qwen3-8b": ("Qwen3-8B-Base", dict(QWEN3, hidden_size=4096, intermediate_size=12288, num_layers=36,
                                       num_heads=32, num_kv_heads=8, tie_word_embeddings=False)),
}
MESHES = {"gpu8": dict(data=1, fsdp=8, tensor=1), "tpu": dict(data=1, fsdp=32, tensor=1)}
TINY_SHAPE = dict(family="qwen2", vocab_size=258, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=2, num_kv_heads=1, tie_word_embeddings=True, attention_bias=True,
                  max_position_embeddings=1024)


def _policy(max_new, max_prompt, temperature=1.0, top_p=1.0):
    return ml_collections.ConfigDict(dict(
        model=dict(name="smollm2-135m-instruct", dtype="float32", param_dtype="float32", scan_layers=True,
                   remat="none", shape=None, tokenizer=None),
        train=dict(lr=1e-6, schedule="constant", grad_clip=1.0, clip_low=0.2, clip_high=0.2, kl_coef=0.01,
                   aggregation="token_mean", entropy_coef=0.0,
                   micro_batch=4, logprob_chunk=128),  # full logits of 16 x 768 tokens: a 27 GB update
        sampling=dict(max_new_tokens=max_new, temperature=temperature, top_p=top_p, top_k=0,
                      max_prompt_tokens=max_prompt),
    ))


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 6
    c.game = ml_collections.ConfigDict(dict(
        name="r_zero", challenger_steps=2, solver_steps=3, challenger_prompts=2, challenger_samples=4, votes=4,
        solver_pool=16, band_low=0.3, band_high=0.8, solver_batch=4, solver_samples=4, bleu_threshold=0.5,
        think=False, chat=True))
    c.roles = ml_collections.ConfigDict(dict(challenger="challenger", solver="solver"))
    c.policies = ml_collections.ConfigDict()
    c.policies.challenger = _policy(192, 256)
    c.policies.solver = _policy(256, 512, top_p=0.95)
    c.loop = ml_collections.ConfigDict(dict(
        checkpoint_every=1, keep_checkpoints=2, async_checkpoint=True, eval_every=0, sample_batch=32,
        train_row_multiple=8, train_len_multiple=64, progress=True))
    c.verifiers = ml_collections.ConfigDict(dict(code_workers=0, code_memory_mb=1024))
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.rules = ml_collections.config_dict.placeholder(list)

    if arg == "tiny":
        c.steps = 2
        c.game.update(dict(challenger_steps=1, solver_steps=1, challenger_prompts=1, challenger_samples=2, votes=2,
                           solver_pool=2, solver_batch=2, solver_samples=2, chat=False))
        for p in (c.policies.challenger, c.policies.solver):
            p.model.name = "random"
            p.model.shape = TINY_SHAPE
            p.model.tokenizer = "byte"
            p.train.lr = 1e-3
            p.train.micro_batch = None
            p.train.logprob_chunk = None
            p.train.kl_coef = 0.0
            p.sampling.max_new_tokens = 16
            p.sampling.max_prompt_tokens = 256
        c.loop.progress = False
        c.loop.train_len_multiple = 32
        c.loop.train_row_multiple = 4
    elif arg and arg.rsplit("-", 1)[0] in FULL_SIZE and arg.rsplit("-", 1)[1] in MESHES:
        model, where = arg.rsplit("-", 1)
        folder, shape = FULL_SIZE[model]
        c.steps = 3 * (5 + 15)  # three iterations
        c.game.update(dict(challenger_steps=5, solver_steps=15, challenger_prompts=16, challenger_samples=4,
                           votes=10, solver_pool=1000, band_low=0.3, band_high=0.8, solver_batch=128,
                           solver_samples=5, bleu_threshold=0.5, think=False, chat=False))
        for p in (c.policies.challenger, c.policies.solver):
            p.model.name = os.path.join(os.environ.get("ZEROPLAY_MODELS", "models"), folder)
            p.model.shape = shape
            p.model.dtype = "bfloat16"
            p.model.remat = "full"
            p.train.lr = 1e-6
            p.train.kl_coef = 0.01
            p.train.compute_dtype = "bfloat16"
            p.train.micro_batch = 16
            p.train.logprob_chunk = 1024
            p.sampling.max_new_tokens = 4096
            p.sampling.max_prompt_tokens = 1024
            p.sampling.temperature = 1.0
        c.policies.solver.sampling.top_p = 0.95
        c.loop.sample_batch = 512
        c.loop.train_row_multiple = 32
        c.loop.train_len_multiple = 512
        c.loop.checkpoint_every = 5
        c.mesh = ml_collections.ConfigDict(MESHES[where])
    elif arg not in (None, ""):
        variants = ["tiny"] + [f"{m}-{w}" for m in FULL_SIZE for w in MESHES]
        raise ValueError(f"unknown configs/r_zero.py variant {arg!r}; use one of {variants} or nothing")
    return c
