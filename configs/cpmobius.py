"""CPMöbius: a coach writes instructions, a player trains on the ones its majority vote finds hard;
the coach is rewarded by the change of the player's probe score.

    python -m zeroplay.train --config configs/cpmobius.py --workdir runs/cpmobius                 # SmolLM2 x 2
    python -m zeroplay.train --config configs/cpmobius.py:tiny --workdir runs/cpmobius_tiny       # random, CPU
    python -m zeroplay.train --config configs/cpmobius.py:qwen2.5-math-7b-instruct-gpu8 --workdir ...

Variants: "" (two copies of the embedded SmolLM2-135M-Instruct, sized for a 2-core CPU), "tiny" (two
random tiny models, byte tokenizer, 2 steps), and the reference runs of methods.md section 2: the
7B-Instruct script (16 instructions x 16 answers, player T=0.7, top-p 0.9, prompt <= 768, response
<= 3300 tokens, lr 1e-6, KL 0.001 low-var, entropy coef -0.01; coach T=0.7, entropy +0.01; greedy
probe of 83 questions; rollback after step 200 with patience 15; 1000 steps) and the 1.5B script
(player T=0.6, coach T=0.9, 1024 / 2048 tokens, rollback after step 100). The reference probes on
labeled AMC; here the probe is label-free by default (`game.probe_mode="labeled"` for ground truth).
Models come from $ZEROPLAY_MODELS/<name>.
"""
import os

import ml_collections

FULL_SIZE = {
    "qwen2.5-math-7b-instruct": ("Qwen2.5-Math-7B-Instruct", dict(
        family="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28, num_heads=28,
        num_kv_heads=4, rope_theta=1e4, tie_word_embeddings=False, attention_bias=True, max_position_embeddings=4096,
        rms_norm_eps=1e-6)),
    "qwen2.5-math-1.5b": ("Qwen2.5-Math-1.5B", dict(
        family="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12,
        num_kv_heads=2, rope_theta=1e4, tie_word_embeddings=True, attention_bias=True, max_position_embeddings=4096,
        rms_norm_eps=1e-6)),
}
MESHES = {"gpu8": dict(data=1, fsdp=8, tensor=1), "tpu": dict(data=1, fsdp=32, tensor=1)}
TINY_SHAPE = dict(family="qwen2", vocab_size=258, hidden_size=32, intermediate_size=64, num_layers=2,
                  num_heads=2, num_kv_heads=1, tie_word_embeddings=True, attention_bias=True,
                  max_position_embeddings=1024)


def _policy(max_new, max_prompt, temperature, top_p, kl, entropy):
    return ml_collections.ConfigDict(dict(
        model=dict(name="smollm2-135m-instruct", dtype="float32", param_dtype="float32", scan_layers=True,
                   remat="none", shape=None, tokenizer=None),
        train=dict(lr=1e-6, schedule="constant", grad_clip=1.0, clip_low=0.2, clip_high=0.2, kl_coef=kl,
                   kl_estimator="k3", aggregation="token_mean", entropy_coef=entropy,
                   micro_batch=4, logprob_chunk=128),  # full logits of 16 x 768 tokens: a 27 GB update
        sampling=dict(max_new_tokens=max_new, temperature=temperature, top_p=top_p, top_k=0,
                      max_prompt_tokens=max_prompt),
    ))


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 4
    c.game = ml_collections.ConfigDict(dict(
        name="cpmobius", groups=4, player_samples=4, band_low=0.2, band_high=0.8, max_resample_rounds=2,
        probe_mode="label_free", probe_task="basic_arithmetic", probe_size=8, probe_seed=1234, probe_samples=1,
        probe_temperature=0.0, probe_votes=4, coach_reward_scale=100.0, patience=15, rollback_after=200, chat=True))
    c.roles = ml_collections.ConfigDict(dict(coach="coach", player="player"))
    c.policies = ml_collections.ConfigDict()
    c.policies.coach = _policy(128, 256, 0.7, 1.0, 0.0, 0.01)
    c.policies.player = _policy(256, 512, 0.7, 0.9, 0.001, -0.01)
    c.loop = ml_collections.ConfigDict(dict(
        checkpoint_every=1, keep_checkpoints=2, async_checkpoint=True, eval_every=0, sample_batch=32,
        train_row_multiple=8, train_len_multiple=64, progress=True))
    c.verifiers = ml_collections.ConfigDict(dict(code_workers=0, code_memory_mb=1024))
    c.mesh = ml_collections.ConfigDict(dict(data=1, fsdp=-1, tensor=1))
    c.rules = ml_collections.config_dict.placeholder(list)

    if arg == "tiny":
        c.steps = 2
        c.game.update(dict(groups=2, player_samples=2, max_resample_rounds=0, probe_size=2, probe_votes=2,
                           chat=False))
        for p in (c.policies.coach, c.policies.player):
            p.model.name = "random"
            p.model.shape = TINY_SHAPE
            p.model.tokenizer = "byte"
            p.train.lr = 1e-3
            p.train.micro_batch = None
            p.train.logprob_chunk = None
            p.train.kl_coef = 0.0  # no reference copy in the tiny run (the default variant keeps 0.001)
            p.sampling.max_new_tokens = 16
            p.sampling.max_prompt_tokens = 256
        c.loop.progress = False
        c.loop.train_len_multiple = 32
        c.loop.train_row_multiple = 4
    elif arg and arg.rsplit("-", 1)[0] in FULL_SIZE and arg.rsplit("-", 1)[1] in MESHES:
        model, where = arg.rsplit("-", 1)
        folder, shape = FULL_SIZE[model]
        small = model == "qwen2.5-math-1.5b"
        c.steps = 1000
        c.game.update(dict(groups=16, player_samples=16, max_resample_rounds=8, probe_size=83,
                           probe_temperature=0.6 if small else 0.0, probe_samples=10 if small else 1,
                           patience=15, rollback_after=100 if small else 200, chat=True))
        c.policies.coach.sampling.temperature = 0.9 if small else 0.7
        c.policies.player.sampling.temperature = 0.6 if small else 0.7
        c.policies.player.sampling.top_p = 1.0 if small else 0.9
        for p, max_new, max_prompt in ((c.policies.coach, 1024 if small else 768, 256),
                                       (c.policies.player, 2048 if small else 3300, 1024 if small else 768)):
            p.model.name = os.path.join(os.environ.get("ZEROPLAY_MODELS", "models"), folder)
            p.model.shape = shape
            p.model.dtype = "bfloat16"
            p.model.remat = "full"
            p.train.lr = 1e-6
            p.train.compute_dtype = "bfloat16"
            p.train.micro_batch = 16
            p.train.logprob_chunk = 1024
            p.sampling.max_new_tokens = max_new
            p.sampling.max_prompt_tokens = max_prompt
        c.loop.sample_batch = 256
        c.loop.train_row_multiple = 32
        c.loop.train_len_multiple = 512
        c.loop.checkpoint_every = 20
        c.mesh = ml_collections.ConfigDict(MESHES[where])
    elif arg not in (None, ""):
        variants = ["tiny"] + [f"{m}-{w}" for m in FULL_SIZE for w in MESHES]
        raise ValueError(f"unknown configs/cpmobius.py variant {arg!r}; use one of {variants} or nothing")
    return c
