"""Test doubles for the two-policy self-play games (PasoDoble, SQLM, R-Zero, CPMöbius).

- `fake_ctx(script)`: a `Context` whose `sample(role, prompts, n, sampling)` returns fixed texts:
  `script[role]` is a list of texts consumed in order (one per completion), or a callable
  `(prompt_text, g) -> text`. Encoding is a byte-level one (ids 0..255), like the tiny configs'.
- `ScriptedSampler(fn)`: a `sample_fn` for `zeroplay.loop.run` that answers with `fn(role,
  prompt_text, g)` through the byte tokenizer, deterministic in the prompt (so a resumed run
  repeats an uninterrupted one).
- `pasodoble_script`: a proposer that writes valid "a + b" problems of several wordings, a solver
  that gets odd sums always and even sums half the time (pass rates 1 and 1/2, so the proposer's
  rewards vary within a group and some questions lie in the solver's band).
- `python tests/selfplay_doubles.py CONFIG WORKDIR STEPS [--real] [--game KEY=JSON ...]`:
  `loop.run` of `configs/CONFIG` (e.g. "pasodoble.py:tiny") on a 1-device mesh with the matching
  script, or with the real sampler (`--real`). The tests run it as a subprocess with `cached_env`
  (a JAX compilation cache shared by the runs of one session: the tiny train steps compile once).
"""
from __future__ import annotations

import re
import sys
import zlib

import numpy as np

from zeroplay.games.base import Completion, Context


def _encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def _decode(ids) -> str:
    return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


def completion(text: str, tokens=None) -> Completion:
    toks = list(tokens) if tokens is not None else _encode(text)
    return Completion(tokens=toks, logprobs=np.full(len(toks), -1.0, np.float32), text=text, finished=True)


class FakeSample:
    """Records its calls; answers from `script`."""

    def __init__(self, script):
        self.script = {k: (v if callable(v) else list(v)) for k, v in script.items()}
        self.calls = []

    def __call__(self, role, prompts, n=1, sampling=None):
        self.calls.append((role, [list(p) for p in prompts], n, sampling))
        out = []
        src = self.script.get(role, [])
        for p in prompts:
            row = []
            for g in range(n):
                text = src(_decode(p), g) if callable(src) else (src.pop(0) if src else "")
                row.append(completion(text))
            out.append(row)
        return out


def fake_ctx(script=None, *, step=1, seed=0, chat=None) -> Context:
    return Context(sample=FakeSample(script or {}), encode=_encode, decode=_decode,
                   rng=np.random.default_rng(seed), step=step, chat=chat)


class ScriptedSampler:
    """A deterministic `sample_fn` for loop.run: completions are fn(role, prompt_text, g)."""

    def __init__(self, fn):
        from zeroplay.models.byte_tokenizer import byte_tokenizer

        self.fn = fn
        self.tok = byte_tokenizer()

    def __call__(self, role, prompts, n=1, sampling=None):
        out = []
        for p in prompts:
            text = self.tok.decode(list(p), skip_special_tokens=True)
            row = []
            for g in range(n):
                t = self.fn(role, text, g)
                row.append(completion(t, self.tok.encode(t, add_special_tokens=False) + [self.tok.eos_token_id]))
            out.append(row)
        return out


WORDINGS = ("Compute {a} + {b}.", "ADD {b} TO {a}!", "x = {a} + {b}; find x", "Q: {a} plus {b}?")
_SUM_RE = re.compile(r"(\d+)\D+?(\d+)")


def pasodoble_script(role: str, prompt: str, g: int) -> str:
    if role == "proposer":
        h = zlib.crc32(prompt.encode()) % 7
        a, b = 40, h + 1 + g
        q = WORDINGS[(h + g) % len(WORDINGS)].format(a=a, b=b)
        return f"thinking</think><problem>{q}</problem><answer>{a} + {b} = \\boxed{{{a + b}}}</answer>"
    # The solver: the problem is the last thing in its prompt before "<think>".
    m = list(re.finditer(r"(\d+)\D{1,8}?(\d+)", prompt.rsplit("<think>", 1)[0]))
    if not m:
        return "no idea"
    a, b = (int(x) for x in (m[-1].group(1), m[-1].group(2)))
    s = a + b
    right = s % 2 == 1 or g == 0
    return f"</think><answer>\\boxed{{{s if right else s + 1}}}</answer>"


SCRIPTS = {"pasodoble": pasodoble_script}


def load_config(spec: str):
    import importlib.util
    import os

    name, _, arg = spec.partition(":")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mod_spec = importlib.util.spec_from_file_location(f"cfg_{name[:-3]}", os.path.join(root, "configs", name))
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    d = mod.get_config(arg or None).to_dict()
    d["mesh"] = {"data": 1, "fsdp": 1, "tensor": 1}
    return d


def run_scripted(spec: str, workdir: str, steps: int, real: bool = False, **game):
    from zeroplay import loop, runconfig

    d = load_config(spec)
    d["steps"] = steps
    d["game"].update(game)
    sample_fn = None if real else ScriptedSampler(SCRIPTS[d["game"]["name"]])
    return loop.run(runconfig.parse(d), workdir, sample_fn=sample_fn, log=print)


def cached_env(cache_dir: str) -> dict:
    import os

    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache_dir),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def runner(spec: str, workdir: str, steps: int, *, real: bool = False, game=None) -> list[str]:
    import json
    import os

    cmd = [sys.executable, os.path.abspath(__file__), spec, str(workdir), str(steps)] + (["--real"] if real else [])
    for k, v in (game or {}).items():
        cmd += ["--game", f"{k}={json.dumps(v)}"]
    return cmd


def run_subprocess(spec, workdir, steps, cache_dir, *, real=False, game=None, timeout=600):
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(runner(spec, workdir, steps, real=real, game=game), cwd=root, env=cached_env(cache_dir),
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("workdir")
    ap.add_argument("steps", type=int)
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--game", action="append", default=[])
    a = ap.parse_args()
    overrides = {k: json.loads(v) for k, _, v in (g.partition("=") for g in a.game)}
    run_scripted(a.config, a.workdir, a.steps, real=a.real, **overrides)
