"""RENT: reward = minus the mean token entropy of the response (methods.md section 5).

    python -m zeroplay.train --config configs/rent.py --workdir runs/rent                  # SmolLM2
    python -m zeroplay.train --config configs/rent.py:tiny --workdir runs/rent_tiny      # random, CPU
    python -m zeroplay.train --config configs/rent.py:qwen3-8b-base-gpu4 --workdir ...

The per-token statistics come from the sampler's own logits (Sampling(token_stats=True)), no
second forward pass. Full-size variants use the Co-rewarding paper's shared baseline settings
(its Table 5): 128 questions x G=8, lr 3e-6 cosine with 10% warmup, clip 0.2, prompts 512 /
responses 3072, T=1.0, GRPO, 200 steps; the original repositories' own constants are unverified
(methods.md), and the KL 0.005 to the initial model is Co-rewarding-I's, our choice.
"""
import os

from zeroplay.games.label_free import EASY_ARITHMETIC, run_config



def get_config(arg=None):
    full_steps = 200
    return run_config(
        "rent", arg,
        game=dict(source="rg:basic_arithmetic", source_options=EASY_ARITHMETIC,
                  size=500, data_seed=1, questions_per_step=4,
                  samples=4),
        roles=dict(solver="policy"),
        train=dict(kl_coef=0.005),
        full_game=dict(source="jsonl:" + os.path.join(os.environ.get("ZEROPLAY_DATA", "data"), "math_train.jsonl"),
                       size=0, questions_per_step=128, samples=8),
        full_train=dict(lr=3e-6, schedule="cosine", warmup_steps=full_steps // 10, clip_low=0.2, clip_high=0.2,
                        kl_coef=0.005, kl_estimator="k3", b1=0.9, b2=0.999, eps=1e-8),
        full_sampling=dict(max_prompt_tokens=512, max_new_tokens=3072, temperature=1.0, top_p=1.0),
        full_steps=full_steps)
