"""The default run: TTRL on the embedded SmolLM2-135M-Instruct, sized for a 2-core CPU.

    python -m zeroplay.train --workdir runs/default
    python -m zeroplay.train --config configs/default.py:tiny --workdir runs/tiny   # random tiny model
    python -m zeroplay.train --workdir runs/default --config.steps=12                # resume, go further

Why this game: with no labels at all, TTRL's majority vote over 8 samples gives SmolLM2 a real
learning signal on one-digit addition and subtraction (reasoning-gym `basic_arithmetic`, which it
answers about 60% of the time): the vote agrees with itself on some samples and not on others,
so the rewards vary within most groups. AZR's code tasks are out of its reach (environment.md:
1 of 32 proposals parsed, none ran). The run evaluates the solver greedily on 100 held-out items
of the same task (reasoning-gym's evaluation seed, never a training seed) before the first step
and after the last. Any key can be overridden with `--config.a.b=value` (see configs/ttrl.py).
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location("zeroplay_configs_ttrl", os.path.join(os.path.dirname(__file__),
                                                                                      "ttrl.py"))
_ttrl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ttrl)

HELD_OUT = "rg:basic_arithmetic:min_terms=2:max_terms=2:min_digits=1:max_digits=1:operators=('+','-')"


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
        c.loop.eval_benchmarks = (HELD_OUT,)
        c.loop.eval_limit = 100
        c.loop.eval_protocol = "default"  # greedy, one sample
        c.loop.eval_max_new_tokens = 128
    return c
