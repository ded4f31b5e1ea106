"""The two-policy self-play configs (PasoDoble, SQLM, R-Zero, CPMöbius): each `:tiny` runs 2 steps
through zeroplay.loop.run; PasoDoble's offline mode updates only the policy that trains that step
(the other's params and optimizer state bitwise unchanged); every variant parses, and the full-size
ones carry the reference constants and a mesh that fits their machine (validated without running).

The tiny runs are subprocesses (`tests/selfplay_doubles.py`) sharing one JAX compilation cache."""
import dataclasses
import importlib.util
import json
import math
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import selfplay_doubles as doubles  # noqa: E402

from zeroplay import loop, runconfig  # noqa: E402
from zeroplay.checkpoint import Checkpointer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAMES = ("pasodoble", "sqlm", "r_zero", "cpmobius")


def load(name, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(ROOT, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.get_config(arg)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "jax_cache"


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


EXPECT = {"pasodoble": ("proposer/valid_rate", "solver/band_keep_rate", "proposer/diversity_mean", "game/history"),
          "sqlm": ("proposer/valid_rate", "solver/majority_agreement"),
          "r_zero": ("challenger/valid_rate", "challenger/penalty_mean"),
          "cpmobius": ("probe/score", "probe/delta", "player/band_keep_rate", "coach/valid_rate")}


@pytest.mark.parametrize("name", GAMES)
def test_tiny_config_runs_two_steps(name, cache, tmp_path):
    doubles.run_subprocess(f"{name}.py:tiny", str(tmp_path), 2, cache, real=True)
    rows = _rows(str(tmp_path))
    assert [r["step"] for r in rows] == [1, 2]
    for key in EXPECT[name]:
        assert key in rows[0], key
    assert all(f"{p}/trained" in rows[0] for p in runconfig.parse(load(name, "tiny")[1]).policies)
    if name == "r_zero":  # step 2 is the solver iteration: it built its question set first
        assert "solver/set_size" in rows[1] and rows[0]["solver/trained"] == 0.0
    ckpt = Checkpointer(os.path.join(str(tmp_path), "checkpoints"), async_save=False)
    names = ckpt.tree_names(2)
    assert {f"policy/{p}" for p in runconfig.parse(load(name, "tiny")[1]).policies} <= set(names)


def _state(workdir, step, name):
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    trees, host = ckpt.restore(step, names=[f"policy/{name}"])
    ckpt.close()
    return _leaves(trees[f"policy/{name}"]), host


def _leaves(tree):
    """Leaves by key path (restored trees are dicts where the live state has named tuples)."""
    name = lambda k: str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
    return {"/".join(name(k) for k in p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_offline_pasodoble_updates_only_the_policy_that_trains(cache, tmp_path):
    """tiny,offline with one proposer step then one solver step (scripted sampler so both train)."""
    workdir = str(tmp_path)
    doubles.run_subprocess("pasodoble.py:tiny,offline", workdir, 2, cache)
    rows = _rows(workdir)
    assert (rows[0]["proposer/trained"], rows[0]["solver/trained"]) == (1.0, 0.0)
    assert (rows[1]["proposer/trained"], rows[1]["solver/trained"]) == (0.0, 1.0)
    d = doubles.load_config("pasodoble.py:tiny,offline")
    cfg = runconfig.parse(d)
    init = {n: _leaves({f.name: getattr(p.state, f.name) for f in dataclasses.fields(p.state)})
            for n, p in loop.build_policies(cfg, loop.run_mesh(cfg)).items()}
    s1 = {n: _state(workdir, 1, n)[0] for n in ("proposer", "solver")}
    s2, host = {}, None
    for n in ("proposer", "solver"):
        s2[n], host = _state(workdir, 2, n)
    assert _same(s1["solver"], init["solver"])          # step 1: the solver is frozen, bit for bit
    assert not _same(s1["proposer"], init["proposer"])
    assert _same(s2["proposer"], s1["proposer"])        # step 2: the proposer is frozen
    assert not _same(s2["solver"], s1["solver"])
    assert host["game"]["buffer"] and host["game"]["cursor"] == 2 % len(host["game"]["buffer"])


@pytest.mark.parametrize("name", GAMES)
def test_default_and_tiny_variants_parse(name):
    for arg in (None, "tiny"):
        cfg = runconfig.parse(load(name, arg)[1])
        assert cfg.game_name == name and len(set(cfg.roles.values())) == 2
    assert runconfig.parse(load(name)[1]).policies[next(iter(runconfig.parse(load(name)[1]).policies))] \
        .model.name == "smollm2-135m-instruct"
    with pytest.raises(ValueError, match="unknown configs"):
        load(name, "nope")


def _full(name):
    mod = load(name)[0]
    return [f"{m}-{w}" for m in mod.FULL_SIZE for w in mod.MESHES]


@pytest.mark.parametrize("name, variant", [(n, v) for n in GAMES for v in _full(n)])
def test_full_size_variants_are_consistent(name, variant):
    mod, c = load(name, variant)
    cfg = runconfig.parse(c)
    where = variant.rsplit("-", 1)[1]
    assert dict(cfg.mesh) == mod.MESHES[where] and math.prod(cfg.mesh.values()) in (1, 8, 16, 32)  # gpu1: one GPU
    for pol in cfg.policies.values():
        assert pol.model.shape and pol.model.dtype == "bfloat16" and pol.train.lr == 1e-6
        assert cfg.loop.train_row_multiple % pol.train.micro_batch == 0
        mc = pol.model.shape
        assert mc["num_heads"] % mc["num_kv_heads"] == 0
    g, p = cfg.game, cfg.policies
    if name == "pasodoble":
        assert (g.proposals, g.solver_samples, g.low, g.high, g.history_size) == (6, 6, 0.2, 1.0, 100)
        assert (g.proposer_updates, g.solver_updates) == (10, 5)
        for pol, prompt in ((p["proposer"], 1280), (p["solver"], 512)):
            assert pol.train.aggregation == "seq_mean_token_sum_norm" and pol.train.max_tokens == 6144
            assert pol.train.kl_coef == 0 and pol.sampling.temperature == 0.6
            assert pol.sampling.max_new_tokens == 6144 and pol.sampling.max_prompt_tokens == prompt
        assert cfg.steps == 2000 and cfg.loop.checkpoint_every == 40
        assert runconfig.parse(load(name, variant + ",offline")[1]).game.mode == "offline"
    elif name == "r_zero":
        assert (g.challenger_steps, g.solver_steps, g.challenger_prompts, g.challenger_samples, g.votes) == (
            5, 15, 16, 4, 10)
        assert (g.solver_pool, g.band_low, g.band_high, g.solver_batch, g.solver_samples) == (1000, 0.3, 0.8, 128, 5)
        assert p["challenger"].train.kl_coef == 0.01 and p["solver"].sampling.top_p == 0.95
    elif name == "cpmobius":
        assert (g.groups, g.player_samples, g.band_low, g.band_high, g.patience) == (16, 16, 0.2, 0.8, 15)
        assert p["player"].train.entropy_coef == -0.01 and p["player"].train.kl_coef == 0.001
        assert p["coach"].train.entropy_coef == 0.01 and cfg.steps == 1000
        assert g.rollback_after == (100 if "1.5b" in variant else 200)
    elif name == "sqlm":
        assert g.solver_samples >= 2
