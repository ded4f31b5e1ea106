"""`zeroplay.models` stands alone: importing it (and loading or exporting a model without a mesh)
brings in no other zeroplay package; placement on a mesh comes from the caller as a `shardings`
function (`zeroplay.parallel.param_sharding_fn`)."""
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from zeroplay.models import ModelConfig, init_params, load_pretrained, save_pretrained
from zeroplay.models.hf import load_hf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = ModelConfig(family="qwen2", vocab_size=61, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                  num_kv_heads=2, attention_bias=True)


def _zeroplay_modules_after(code: str) -> list[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('zeroplay'))))"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _others(modules):
    return [m for m in modules if m != "zeroplay" and not m.startswith("zeroplay.models")]


def test_import_models_imports_no_other_zeroplay_package(tmp_path):
    mods = _zeroplay_modules_after("import zeroplay.models")
    assert "zeroplay.models.layers" in mods
    assert _others(mods) == []
    # Nor does using it without a mesh: init, save, load, apply.
    code = f"""
import jax, jax.numpy as jnp
from zeroplay.models import ModelConfig, init_params, load_pretrained, save_pretrained, abstract_params
cfg = ModelConfig(vocab_size=61, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2)
model, params = init_params(cfg, jax.random.PRNGKey(0))
save_pretrained(model, params, {str(tmp_path)!r})
model, params = load_pretrained({str(tmp_path)!r})
model.apply({{"params": params}}, jnp.zeros((1, 3), jnp.int32))
abstract_params(cfg)
"""
    assert _others(_zeroplay_modules_after(code)) == []


def test_models_source_names_no_other_zeroplay_package():
    """Lazy imports included: zeroplay/models names no other zeroplay package."""
    found = []
    folder = os.path.join(ROOT, "zeroplay", "models")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name)) as f:
                for line in f:
                    m = re.search(r"^\s*(?:from|import)\s+zeroplay\.(\w+)", line)
                    if m and m.group(1) != "models":
                        found.append((name, line.strip()))
    assert found == []


def test_load_with_shardings_function(tmp_path):
    """load_hf places each tensor with the sharding the caller's function gives for it, from the
    abstract params and logical axes models hands it."""
    model, params = init_params(CFG, jax.random.PRNGKey(0))
    save_pretrained(model, params, str(tmp_path))
    dev = jax.devices()[0]
    seen = {}

    def shardings(abstract, axes):
        seen["abstract"], seen["axes"] = abstract, axes
        return jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(dev), abstract)

    model2, params2 = load_hf(str(tmp_path), shardings=shardings)
    assert jax.tree.structure(seen["abstract"]) == jax.tree.structure(params)
    assert tuple(seen["axes"]["layers"]["self_attn"]["q_proj"]["kernel"]) == ("layers", "embed", "heads", "head_dim")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert b.sharding == jax.sharding.SingleDeviceSharding(dev)
    ids = jnp.asarray([[1, 5, 9, 2]])
    np.testing.assert_array_equal(model.apply({"params": params}, ids), model2.apply({"params": params2}, ids))


def test_load_sharded_is_load_pretrained_with_param_sharding_fn(tmp_path):
    from zeroplay.parallel import load_sharded, make_mesh, param_sharding_fn

    model, params = init_params(CFG, jax.random.PRNGKey(0))
    save_pretrained(model, params, str(tmp_path))
    mesh = make_mesh({"fsdp": -1})
    _, by_mesh = load_sharded(str(tmp_path), mesh)
    _, by_fn = load_pretrained(str(tmp_path), shardings=param_sharding_fn(mesh))
    for a, b in zip(jax.tree.leaves(by_mesh), jax.tree.leaves(by_fn)):
        assert a.sharding == b.sharding
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
