"""The default run: TTRL on the embedded SmolLM2-135M-Instruct, sized for a 2-core CPU.

    python -m zeroplay.train --workdir runs/default
    python -m zeroplay.train --config configs/default.py:tiny --workdir runs/tiny   # random tiny model
    python -m zeroplay.train --workdir runs/default --config.steps=12                # resume, go further

Why this game: with no labels at all, TTRL's majority vote over 8 samples gives SmolLM2 a real
learning signal on one-digit addition and subtraction (reasoning-gym `basic_arithmetic`, two
terms, no negated terms or parentheses: `zeroplay.games.label_free.EASY_ARITHMETIC`). Measured on
24 questions x 8 samples at T=1: 22% of the samples are right but the majority is right 46% of
the time, agreement with the majority is 35%, and every group has both rewards (none all-0 or
all-1), so the vote pulls the samples toward an answer that is right more often than they are.
SmolLM2 rarely writes a boxed answer (under 2% of samples), so an answer is the last boxed one or
else the last number (`game.answer="boxed_or_number"`, the rule `zeroplay.eval` scores these items
by). AZR's code tasks are out of its reach (environment.md: 1 of 32 proposals parsed, none ran).

The run evaluates the solver greedily on 100 held-out items of the same task (reasoning-gym's
evaluation seed, never a training seed) before the first step and after the last. One-digit sums
have only 200 distinct questions, so the training source drops every question of those 100
(`game.exclude`): no evaluated question ever trains. Any key can be overridden with
`--config.a.b=value` (see configs/ttrl.py).
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location("zeroplay_configs_ttrl", os.path.join(os.path.dirname(__file__),
                                                                                      "ttrl.py"))
_ttrl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ttrl)

HELD_OUT = ("rg:basic_arithmetic:min_terms=2:max_terms=2:min_digits=1:max_digits=1:operators=('+','-')"
            ":allow_parentheses=False:allow_negation=False")


def get_config(arg=None):
    if arg not in (None, "", "tiny"):
        raise ValueError(f"unknown configs/default.py variant {arg!r}; use 'tiny' or nothing")
    c = _ttrl.get_config(arg)
    if not arg:
        c.steps = 8
        c.game.questions_per_step = 4
        c.game.votes = 8
        c.game.train_samples = 8
        c.policies.policy.train.lr = 2e-6
        c.policies.policy.sampling.max_new_tokens = 96
        c.game.exclude = (HELD_OUT,)  # one-digit sums have 200 distinct questions: none evaluated trains
        c.game.exclude_limit = 100
        c.loop.eval_benchmarks = (HELD_OUT,)
        c.loop.eval_limit = 100
        c.loop.eval_protocol = "default"  # greedy, one sample
        c.loop.eval_max_new_tokens = 128
    return c
