"""TTRL: majority vote over N samples labels them; train on a subset (methods.md section 5).

    python -m zeroplay.train --config configs/ttrl.py --workdir runs/ttrl                  # SmolLM2
    python -m zeroplay.train --config configs/ttrl.py:tiny --workdir runs/ttrl_tiny        # random, CPU
    python -m zeroplay.train --config configs/ttrl.py:qwen2.5-7b-gpu4 --workdir ...
    python -m zeroplay.train --config configs/ttrl.py:qwen2.5-7b-gpu4,test_time_aime24 --workdir ...

Full-size: 8 questions per step, 64 votes, 32 train, lr 5e-7 cosine with 3% warmup, T=1.0,
3072 new tokens, GRPO, no KL. By default it trains on a procedural / training source, never a
benchmark. TTRL's own setting trains on the unlabeled *test* questions: the ",test_time_<set>"
modifier (aime24, amc23, math500) sets `game.test_time=True` and the shared benchmark file as the
source; the result is then not a held-out evaluation on that set, and the run says so in its config.
"""
import os

from zeroplay.games.label_free import EASY_ARITHMETIC, run_config

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")
TEST_TIME_SETS = ("aime24", "amc23", "math500")


def get_config(arg=None):
    parts = [x for x in (arg or "").split(",") if x]
    test_time = [x[len("test_time_"):] for x in parts if x.startswith("test_time_")]
    arg = ",".join(x for x in parts if not x.startswith("test_time_")) or None
    full_steps = 240
    c = run_config(
        "ttrl", arg,
        game=dict(source="rg:basic_arithmetic", source_options=EASY_ARITHMETIC,
                  size=500, data_seed=1, questions_per_step=2,
                  votes=8, train_samples=4),
        roles=dict(solver="policy"),
        train=dict(lr=5e-7),
        tiny_game=dict(votes=4, train_samples=2),
        full_game=dict(questions_per_step=8, votes=64, train_samples=32),
        full_train=dict(lr=5e-7, schedule="cosine", warmup_steps=max(1, round(0.03 * full_steps)), kl_coef=0.0),
        full_sampling=dict(max_prompt_tokens=1024, max_new_tokens=3072, temperature=1.0, top_p=1.0),
        full_steps=full_steps)
    if test_time:
        name = test_time[0]
        if name not in TEST_TIME_SETS:
            raise ValueError(f"unknown test-time set {name!r}; use one of {TEST_TIME_SETS}")
        # TTRL's test-time mode: trains on the benchmark's questions (never its answers).
        c.game.test_time = True
        c.game.source = "jsonl:" + os.path.normpath(os.path.join(SHARED, name, "test.jsonl"))
        c.game.size = 0
    return c
