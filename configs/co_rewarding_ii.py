"""Co-rewarding-II: an EMA teacher's majority answer labels the student (methods.md section 3).

    python -m zeroplay.train --config configs/co_rewarding_ii.py --workdir runs/crii             # SmolLM2
    python -m zeroplay.train --config configs/co_rewarding_ii.py:tiny --workdir runs/crii_tiny   # random, CPU
    python -m zeroplay.train --config configs/co_rewarding_ii.py:qwen3-8b-base-gpu4 --workdir ...
    python -m zeroplay.train --config configs/co_rewarding_ii.py:qwen3-8b-base-gpu4,paper_ema ...

Roles: "solver" -> the policy, "teacher" -> "policy@teacher" (its EMA teacher, which is also the
KL reference). EMA rate cosine from 0.01 to 1e-5 (the reference script); the paper writes a
teacher weight 0.99 -> 0.9999, i.e. an end rate of 1e-4: the ",paper_ema" modifier (or
--config.policies.policy.teacher.ema_end=1e-4). Full-size variants: 128 questions, G=8 student and
G~=8 teacher rollouts, lr 3e-6 cosine with 10% warmup, clip 0.2, prompts 512 / responses 3072,
T=1.0, KL 0.001 to the teacher, 300 steps (the paper's 300-330), on DAPO-14k-style questions read
from $ZEROPLAY_DATA/dapo_14k.jsonl (answers there are only reported, never trained on).
"""
import os

from zeroplay.games.label_free import EASY_ARITHMETIC, run_config

EMA_START, EMA_END, PAPER_EMA_END = 0.01, 1e-5, 1e-4


def get_config(arg=None):
    parts = [x for x in (arg or "").split(",") if x]
    paper_ema = "paper_ema" in parts
    arg = ",".join(x for x in parts if x != "paper_ema") or None
    full_steps = 300
    c = run_config(
        "co_rewarding_ii", arg,
        game=dict(source="rg:basic_arithmetic", source_options=EASY_ARITHMETIC,
                  size=500, data_seed=1, questions_per_step=4,
                  samples=4, teacher_samples=4),
        roles=dict(solver="policy", teacher="policy@teacher"),
        train=dict(kl_coef=0.001),
        teacher=dict(ema_start=EMA_START, ema_end=EMA_END, as_reference=True),
        tiny_game=dict(teacher_samples=2),
        full_game=dict(source="jsonl:" + os.path.join(os.environ.get("ZEROPLAY_DATA", "data"), "dapo_14k.jsonl"),
                       size=0, questions_per_step=128, samples=8, teacher_samples=8),
        full_train=dict(lr=3e-6, schedule="cosine", warmup_steps=full_steps // 10, clip_low=0.2, clip_high=0.2,
                        kl_coef=0.001, kl_estimator="k3", b1=0.9, b2=0.999, eps=1e-8),
        full_sampling=dict(max_prompt_tokens=512, max_new_tokens=3072, temperature=1.0, top_p=1.0),
        full_steps=full_steps)
    # Its answers have a long tail (a third to a half of lockstep row-steps on finished rows):
    # rows refilled as they end, the drain's batch halved (docs/performance.md, continuous batching).
    c.loop.continuous_batching = True
    if paper_ema:
        c.policies.policy.teacher.ema_end = PAPER_EMA_END
    if arg and arg.endswith("-gpu4"):  # 4 x 80 GB: one row per GPU per micro-batch, half the sampler rows
        c.policies.policy.train.micro_batch = 4  # (python -m zeroplay.memory: 69 GB peak instead of 97)
        c.loop.sample_batch = 128
    return c
