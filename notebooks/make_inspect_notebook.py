"""Writes notebooks/inspect_run.ipynb from the cells below (generated like probe_checkpoint.ipynb, so
that its code stays reviewable as plain Python and `tests/test_notebook.py` runs exactly these cells).

    python notebooks/make_inspect_notebook.py
"""
from make_probe_notebook import write

CELLS = [
    ("markdown", """# Inspecting a run

Plot a run's metrics, print its config and a per-step table, read the game state saved in its
latest checkpoint and look at example proposals with their answers and solve rates. Point
`RUN` (or the `ZEROPLAY_RUN` environment variable) at a run folder, the `--workdir` of
`python -m zeroplay.train`; left empty, the notebook first trains `configs/azr.py:tiny` for two
steps (a random tiny model, about a minute on a laptop CPU)."""),
    ("code", """import os
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import json, subprocess, sys, tempfile
from pathlib import Path
import zeroplay

RUN = os.environ.get("ZEROPLAY_RUN", "")  # a run folder: metrics.jsonl, config.json, checkpoints/"""),
    ("markdown", """## The run

Without a run folder: `python -m zeroplay.train --config configs/azr.py:tiny --config.steps=2` into a
fresh temporary folder, as one would from a shell; its closing summary is printed."""),
    ("code", """if not RUN:
    RUN = tempfile.mkdtemp(prefix="zeroplay_run_")
    repo = Path(zeroplay.__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "zeroplay.train", "--config", "configs/azr.py:tiny", "--config.steps=2",
           "--workdir", RUN]
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"training failed:\\n{done.stdout[-2000:]}\\n{done.stderr[-4000:]}")
    print(done.stdout)
print("run folder:", RUN)"""),
    ("markdown", """## Metrics

`zeroplay.plot` (the `python -m zeroplay.plot` command) reads `metrics.jsonl` and writes one PNG per
figure into `RUN/plots/`: reward, solve rate, valid proposals and evaluation accuracy, a panel per
role or benchmark; a figure with nothing to show is skipped."""),
    ("code", """from IPython.display import Image, display
from zeroplay.plot import load_metrics, plot

rows = load_metrics(RUN)
for png in plot([RUN]):
    print("wrote", png)
    display(Image(filename=png))"""),
    ("markdown", """## Config and per-step metrics

The config as the run saved it (`config.json`), then the key metrics of every step: rewards and
rates per role (the ones `python -m zeroplay.train` summarises), evaluation accuracies and the
step time."""),
    ("code", """from zeroplay.train import SUMMARY_RATES

with open(os.path.join(RUN, "config.json")) as f:
    raw = json.load(f)
print(json.dumps(raw, indent=1))
keys = sorted({k for r in rows for k in r if k.count("/") == 1 and k.endswith(SUMMARY_RATES)})
keys += sorted({k for r in rows for k in r if k.startswith("eval/")}) + ["time/step"]
width = max(len(k) for k in keys)
print("metric".ljust(width), *(f"step {r['step']:>3}" for r in rows))
for k in keys:
    print(k.ljust(width), *(f"{r[k]:8.3f}" if isinstance(r.get(k), (int, float)) else f"{'-':>8}" for r in rows))"""),
    ("markdown", """## Game state from the latest checkpoint

Each checkpoint holds the policy trees and, as JSON, the host state that the loop saves beside
them: the game's state (`game`), the host RNG, the config fingerprint, the game's name and the
step. `Checkpointer.restore(names=[])` reads that host state alone, without loading any array."""),
    ("code", """from zeroplay.checkpoint import Checkpointer

ckpt = Checkpointer(os.path.join(RUN, "checkpoints"), keep=None, async_save=False)
print("checkpoints:", ckpt.all_steps(), "| trees:", ckpt.tree_names())
_, host = ckpt.restore(names=[])
ckpt.close()
game_name, state = host["game_name"], host["game"]
print(f"game {game_name!r} after step {host['step']}; state keys: {sorted(state)}")
if game_name != "azr":
    print(json.dumps(state, indent=1, default=str)[:4000])"""),
    ("markdown", """## Example proposals (AZR)

AZR keeps every valid proposal in the buffer of its task: `input` (abduction, `code_i`: the solver
is shown program and output and answers an input), `output` (deduction, `code_o`: program and input,
answers the output) and `problem` (induction, `code_f`: shown input/output pairs and a message,
answers a program checked on the hidden pairs). `step_added` tags each entry with the step that
proposed it (-1: the seed).

A proposal's own solve rate (the learnability estimate behind its reward) is computed in the
game's `score` and kept only in that step's episodes, which are not saved: neither the buffers nor
`metrics.jsonl` hold it per proposal. What the run does hold is the mean over each step's valid
proposals per task (`proposer/solve_rate_mean/<task>`), shown beside each entry added at that step
(seed entries have none). The cell after next measures a fresh estimate instead."""),
    ("code", """from zeroplay.games.azr import BUFFER_OF

SHOW = 2  # entries per task, newest first
by_step = {r["step"]: r for r in rows}
examples = []
if game_name == "azr":
    for task, buf in BUFFER_OF.items():
        entries, added = state["buffers"][buf], state["step_added"][buf]
        print(f"=== {task}: {len(entries)} entries in the {buf!r} buffer")
        for i in reversed(range(max(0, len(entries) - SHOW), len(entries))):
            e, step = entries[i], added[i]
            mean = by_step.get(step, {}).get(f"proposer/solve_rate_mean/{task}")
            origin = "the seed" if step < 1 else f"step {step}, that step's mean solve rate {mean}"
            print(f"--- entry {i}, from {origin}")
            print(e["snippet"])
            if task == "code_f":
                k = int(e["n_shown"])
                print("shown:  ", list(zip(e["inputs"][:k], e["outputs"][:k])))
                print("hidden: ", list(zip(e["inputs"][k:], e["outputs"][k:])))
                print("message:", e["message"])
                print("answer:  a program f reproducing the hidden pairs")
            else:
                print("input: ", e["input"], "| output:", e["output"])
                print("answer:", e["output"] if task == "code_o"
                      else f"any x with f(x) == {e['output']} (the proposer's: {e['input']})")
            examples.append((task, i, e))"""),
    ("markdown", """## Solve rates now

The latest solver policy (restored with `zeroplay.evaluation.models.load_for_eval`) samples each
shown entry's solve prompt `learnability_samples` times at the run's temperature, and the game's own
`score` grades the answers as in training: a sample counts as solved when it is well formatted and
correct (the solver's reward criterion; the learnability estimate in training reads the answer
without asking for the format). A random tiny model solves nothing: expect zeros."""),
    ("code", """import dataclasses
import jax, numpy as np
from zeroplay.evaluation.models import load_for_eval
from zeroplay.models.tokenizer import eos_ids
from zeroplay.games import Completion, Context, Request, make_game
from zeroplay.games.azr_text import extract_answer, generation_text, r1_prompt, solve_prompt
from zeroplay.runconfig import parse
from zeroplay.sampling import generate

if examples:
    cfg = parse(raw)
    game = make_game(cfg.game_name, dataclasses.asdict(cfg.game))
    model, params, tok, info = load_for_eval(RUN, role="solver")
    spec = cfg.policies[cfg.policy_of("solver")].sampling
    n = cfg.game.learnability_samples
    temperature = cfg.game.learnability_temperature or spec.temperature
    encode = lambda s: tok.encode(s, add_special_tokens=False)
    prompts = [encode(r1_prompt(solve_prompt(task, e)))[-spec.max_prompt_tokens:] for task, _, e in examples]
    out = generate(model, params, prompts, max_new_tokens=spec.max_new_tokens, num_samples=n,
                   temperature=temperature, eos_token_ids=eos_ids(tok), pad_token_id=tok.pad_token_id or 0,
                   rng=jax.random.PRNGKey(0))
    rollouts = []
    for i in range(len(prompts)):
        toks = [[int(t) for t in out.tokens[i, g, :int(out.lengths[i, g])]] for g in range(n)]
        rollouts.append([Completion(tokens=t, logprobs=np.zeros(len(t), np.float32), finished=False,
                                    text=tok.decode(t, skip_special_tokens=True)) for t in toks])
    requests = [Request(role="solver", prompt=p, n=n, meta={"kind": "solve", "task": task, "entry": e})
                for p, (task, _, e) in zip(prompts, examples)]
    ctx = Context(sample=None, encode=encode, decode=tok.decode, rng=np.random.default_rng(0), step=info["step"])
    _, episodes, _ = game.score("play", requests, rollouts, state, ctx)
    print(f"solver policy of step {info['step']}, {n} samples per entry at temperature {temperature}")
    for j, (task, i, e) in enumerate(examples):
        eps = episodes[j * n:(j + 1) * n]
        answers = [extract_answer(generation_text(c.text))[:40] for c in rollouts[j]]
        solved = sum(ep.info["correct"] for ep in eps)  # correct implies well formatted here
        print(f"{task} entry {i}: solve rate {solved}/{n} = {solved / n:.2f}; answers {answers}")"""),
]


def main():
    write(CELLS, "inspect_run.ipynb")


if __name__ == "__main__":
    main()
