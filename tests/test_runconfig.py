"""The run config: strict parsing (one clear line per mistake), every config file's variants, and
the full-size variants validated without running (shapes, mesh, batch divisibility, roles)."""
import importlib.util
import math
import os
import subprocess
import sys

import pytest

from zeroplay import runconfig
from zeroplay.models import ModelConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name, arg=None):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(ROOT, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod, mod.get_config(arg)


def test_default_and_tiny_parse():
    for name, arg in (("azr", None), ("azr", "tiny")):
        cfg = runconfig.parse(load(name, arg)[1])
        assert cfg.game_name == "azr" and set(cfg.roles) == {"proposer", "solver"}
        assert cfg.policies["policy"].train.total_steps == cfg.steps  # given once
    for arg in (None, "tiny"):
        cfg = runconfig.parse(load("default", arg)[1])
        assert cfg.game_name == "ttrl" and set(cfg.roles) == {"solver"}
        assert cfg.policies["policy"].train.total_steps == cfg.steps
    default = runconfig.parse(load("default")[1])
    assert default.policies["policy"].model.name == "smollm2-135m-instruct"
    assert default.loop.eval_benchmarks and default.loop.eval_at_start  # evaluated before and after
    assert runconfig.parse(load("azr", "tiny")[1]).policies["policy"].model.name == "random"


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(stepz=3), "unknown config key 'stepz'"),
    (lambda c: c["loop"].update(chekpoint_every=2), "unknown config key loop.chekpoint_every"),
    (lambda c: c["policies"]["policy"]["train"].update(learning_rate=1.0), "policies.policy.train: unknown"),
    (lambda c: c["policies"]["policy"]["sampling"].update(temp=0.5), "policies.policy.sampling.temp"),
    (lambda c: c["policies"]["policy"]["model"].update(nme="x"), "policies.policy.model.nme"),
    (lambda c: c["policies"]["policy"].update(optimizer={}), "policies.policy.optimizer"),
    (lambda c: c["game"].update(batch_per_task=3), "unknown game.batch_per_task"),
    (lambda c: c["game"].update(name="nope"), "unknown game 'nope'"),
    (lambda c: c["roles"].pop("solver"), "roles must map exactly"),
    (lambda c: c["roles"].update(solver="other"), "define"),
    (lambda c: c["policies"]["policy"]["model"].update(name="random", shape=None), "needs model.shape"),
    (lambda c: c["policies"]["policy"]["sampling"].update(top_p=0.0), "bad sampling"),
    (lambda c: c.update(steps=-1), "steps must be"),
])
def test_malformed_configs_are_one_line(mutate, message):
    d = load("azr", "tiny")[1].to_dict()
    mutate(d)
    with pytest.raises(runconfig.ConfigError) as e:
        runconfig.parse(d)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_misspelled_override_on_the_command_line_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "zeroplay.train", "--config", "configs/azr.py:tiny",
                          "--workdir", str(tmp_path), "--config.game.batch_per_tsk_role=3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "batch_per_tsk_role" in out.stderr.strip().splitlines()[-1]


FULL = {"qwen2.5-7b-coder-tpu": 32, "qwen2.5-7b-coder-gpu8": 8, "qwen2.5-3b-coder-tpu": 32,
        "qwen2.5-3b-coder-gpu8": 8}


@pytest.mark.parametrize("variant", sorted(FULL))
def test_full_size_azr_variants_are_consistent(variant):
    mod, c = load("azr", variant)
    cfg = runconfig.parse(c)
    devices = FULL[variant]
    assert math.prod(cfg.mesh.values()) == devices
    g = cfg.game
    assert (g.batch_per_task_role, g.k_references, g.learnability_samples, g.buffer_cap, g.seed_size) == (
        64, 6, 8, 16384, 256)
    assert (g.induction_inputs, g.induction_shown) == (10, 5)
    pol = cfg.policies["policy"]
    assert set(cfg.roles.values()) == {"policy"}
    assert pol.train.lr == 1e-6 and pol.train.kl_coef == 0 and pol.train.schedule == "constant"
    assert (pol.train.clip_low, pol.train.clip_high) == (0.2, 0.28)
    assert (pol.sampling.max_prompt_tokens, pol.sampling.max_new_tokens) == (6144, 8096)
    assert pol.sampling.temperature == 1.0 and pol.sampling.top_p == 1.0
    shape = ModelConfig(**pol.model.shape)
    assert shape.num_heads % cfg.mesh["tensor"] == 0 and shape.num_kv_heads % cfg.mesh["tensor"] == 0
    assert shape.max_position_embeddings >= pol.sampling.max_prompt_tokens + pol.sampling.max_new_tokens
    shards = cfg.mesh["data"] * cfg.mesh["fsdp"]
    rows = 3 * 2 * g.batch_per_task_role  # 6 (task, role) buckets, one rollout each
    assert rows % cfg.loop.train_row_multiple == 0
    assert cfg.loop.train_row_multiple % pol.train.micro_batch == 0 and pol.train.micro_batch % shards == 0
    assert cfg.loop.sample_batch % shards == 0
    # The parameter count is the model's: 7.6B / 3.1B.
    expected = {"7b": 7.6e9, "3b": 3.1e9}[variant.split("-")[1]]
    assert abs(shape.num_params() - expected) / expected < 0.03


def test_fingerprint_ignores_run_length_and_bookkeeping():
    a = load("azr", "tiny")[1].to_dict()
    b = load("azr", "tiny")[1].to_dict()
    b["steps"], b["loop"]["checkpoint_every"] = 9, 3
    assert runconfig.parse(a).fingerprint() == runconfig.parse(b).fingerprint()
    b["game"]["k_references"] = 3
    assert runconfig.parse(a).fingerprint() != runconfig.parse(b).fingerprint()
