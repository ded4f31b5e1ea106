"""One hour of TTRL on the embedded SmolLM2-135M-Instruct: does a label-free game raise its held-out score?

    python -m zeroplay.train --config configs/smollm2_hour.py --workdir runs/smollm2_hour
    python -m zeroplay.evaluation.compare runs/smollm2_hour/eval/eval_0.json runs/smollm2_hour/eval/eval_<last>.json
    python -m zeroplay.eval --model smollm2-135m-instruct --benchmarks gsm8k --limit 200 --out runs/gsm8k_before.json
    python -m zeroplay.eval --model runs/smollm2_hour --benchmarks gsm8k --limit 200 --out runs/gsm8k_after.json
    python -m zeroplay.evaluation.compare runs/gsm8k_before.json runs/gsm8k_after.json

The task: reasoning-gym `basic_arithmetic` with two terms of one or two digits, + and - (HELD_OUT
below). Half its items have one-digit terms (200 distinct questions, most of them among the 500
evaluated ones) and half two-digit terms (~20,000): after the exclusion the training source keeps
~1300 of its 2000 questions, mostly two-digit ones. The model
scores 14% on its first 64 evaluation items greedily, inside the 10-60% band where a majority vote
can carry signal. No label is ever used: the reward is agreement with the majority of `votes`
samples (configs/ttrl.py, methods.md section 5).

The run evaluates the solver greedily on 500 items of the task from reasoning-gym's evaluation
seed before the first step and after the last (`runs/.../eval/eval_<step>.json`, per item); the
training source drops those 500 questions (`game.exclude`). Self-play stops itself after 60
minutes of steps (`loop.time_limit_s`; the evaluations are outside the budget; rerun to go on).
`zeroplay.evaluation.compare` gives the paired difference with its 95% interval.

Settings: the training prompt ends with the evaluation's own instruction (zeroplay.eval's
MATH_SUFFIX) so the two read alike; 4 questions x 16 votes per step, 8 of them trained;
lr 1e-5 (configs/default.py's 2e-6 moved nothing measurable in 10 steps, and an hour is ~40 steps);
T=0.7 and 128 new tokens: at T=1.0 and 96 tokens the first step's samples ran to the cap 69% of
the time, 6% were right, and the majority was right for none of the 4 questions.
"""
import importlib.util
import os

from zeroplay.evaluation.scoring import MATH_SUFFIX

_spec = importlib.util.spec_from_file_location("zeroplay_configs_ttrl", os.path.join(os.path.dirname(__file__),
                                                                                      "ttrl.py"))
_ttrl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ttrl)

OPTIONS = dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2, operators=["+", "-"],
               allow_parentheses=False, allow_negation=False)
HELD_OUT = ("rg:basic_arithmetic:min_terms=2:max_terms=2:min_digits=1:max_digits=2:operators=('+','-')"
            ":allow_parentheses=False:allow_negation=False")


def get_config(arg=None):
    if arg not in (None, "", "tiny"):
        raise ValueError(f"unknown configs/smollm2_hour.py variant {arg!r}; use 'tiny' or nothing")
    c = _ttrl.get_config(arg)
    c.game.source_options = dict(OPTIONS)
    c.game.size = 2000
    c.game.prompt_suffix = "\n" + MATH_SUFFIX
    c.game.exclude = (HELD_OUT,)
    c.loop.eval_benchmarks = (HELD_OUT,)
    c.loop.eval_protocol = "default"  # greedy, one sample
    c.loop.eval_at_start = True
    if arg == "tiny":  # the same wiring on a random model, 2 steps, 8 held-out items (the CI test)
        c.game.size = 64
        c.game.exclude_limit = 8
        c.loop.eval_limit = 8
        c.loop.eval_max_new_tokens = 16
        return c
    c.steps = 1000  # more than fit: the time limit ends the run
    c.game.questions_per_step = 4
    c.game.votes = 16
    c.game.train_samples = 8
    c.game.exclude_limit = 500
    c.policies.policy.train.lr = 1e-5
    c.policies.policy.sampling.max_new_tokens = 128
    c.policies.policy.sampling.temperature = 0.7
    c.loop.eval_limit = 500
    c.loop.eval_max_new_tokens = 128
    c.loop.checkpoint_every = 5
    c.loop.time_limit_s = 60 * 60.0
    return c
