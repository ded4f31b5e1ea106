"""Co-rewarding-I: question and rephrasing label each other (methods.md section 3).

    python -m zeroplay.train --config configs/co_rewarding_i.py --workdir runs/cri              # SmolLM2
    python -m zeroplay.train --config configs/co_rewarding_i.py:tiny --workdir runs/cri_tiny    # random, CPU
    python -m zeroplay.train --config configs/co_rewarding_i.py:qwen3-8b-base-gpu4 --workdir ...

Variants: "" (the embedded SmolLM2-135M-Instruct on easy reasoning-gym arithmetic, sized for a
2-core CPU), "tiny" (a random tiny model, byte tokenizer, 2 steps), and "<model>-<mesh>" with the
paper's settings: 128 questions x G=8 (plus 8 for each rephrasing), lr 3e-6 cosine with 10%
warmup, clip 0.2, prompts 512 / responses 3072 tokens, T=1.0, KL 0.005 (k3, as a loss) to the
initial model, 200 steps (the paper's 170-220). The full-size source is a JSON lines file of
questions with `rephrasing` fields ($ZEROPLAY_DATA/math_train_rephrased.jsonl); without the field a
procedural rephrasing is used (zeroplay.data.rephrase).
"""
import os

from zeroplay.games.label_free import run_config

EASY = dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1, operators=["+", "-"])  # environment.md: 62%


def get_config(arg=None):
    full_steps = 200
    return run_config(
        "co_rewarding_i", arg,
        game=dict(source="rg:basic_arithmetic", source_options=EASY, size=500, data_seed=1, questions_per_step=4,
                  samples=4),
        roles=dict(solver="policy"),
        train=dict(kl_coef=0.005),
        full_game=dict(source="jsonl:" + os.path.join(os.environ.get("ZEROPLAY_DATA", "data"),
                                                      "math_train_rephrased.jsonl"),
                       size=0, questions_per_step=128, samples=8),
        full_train=dict(lr=3e-6, schedule="cosine", warmup_steps=full_steps // 10, clip_low=0.2, clip_high=0.2,
                        kl_coef=0.005, kl_estimator="k3", b1=0.9, b2=0.999, eps=1e-8),
        full_sampling=dict(max_prompt_tokens=512, max_new_tokens=3072, temperature=1.0, top_p=1.0),
        full_steps=full_steps)
