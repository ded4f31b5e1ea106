"""What `--model` names: the embedded model, a Hugging Face folder, or a zeroplay run.

    model, params, tokenizer, info = load_for_eval(path, role="solver")

- the embedded name "smollm2-135m-instruct" or an HF folder (config.json + *.safetensors):
  `load_pretrained` + `load_tokenizer`;
- a run folder (`DIR/config.json` holding a zeroplay run config, checkpoints under
  `DIR/checkpoints/`): the model is rebuilt from the config of the policy that plays `role` (a random
  model from its recorded shape), and its params are restored from the latest checkpoint's
  `policy/<name>` tree;
- a checkpoint step folder `DIR/checkpoints/<step>`: the same, at that step.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os


class ModelPathError(ValueError):
    """`--model` names nothing usable (one line)."""


def _run_of(path: str) -> tuple[str, int | None] | None:
    """(run folder, step or None) when `path` is a zeroplay run folder or one of its step folders."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    if os.path.basename(path).isdigit() and os.path.basename(parent) == "checkpoints":
        run = os.path.dirname(parent)
        if _is_run_config(os.path.join(run, "config.json")):
            return run, int(os.path.basename(path))
    if _is_run_config(os.path.join(path, "config.json")):
        return path, None
    return None


def _is_run_config(path: str) -> bool:
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and "policies" in d and "roles" in d


def check_model_path(path: str) -> None:
    """The cheap checks of `--model` (before any benchmark or model is loaded): ModelPathError."""
    from zeroplay.models import EMBEDDED_NAME

    if path == EMBEDDED_NAME:
        return
    if not os.path.isdir(path):
        raise ModelPathError(f"--model {path}: no such folder, and not the embedded name {EMBEDDED_NAME!r}")
    run = _run_of(path)
    if run is not None:
        ckdir = os.path.join(run[0], "checkpoints")
        steps = [d for d in os.listdir(ckdir) if d.isdigit()] if os.path.isdir(ckdir) else []
        if not steps:
            raise ModelPathError(f"--model {run[0]}: the run folder has no checkpoints (train it first)")
        return
    if not os.path.isfile(os.path.join(path, "config.json")) or not glob.glob(os.path.join(path, "*.safetensors")):
        raise ModelPathError(f"--model {path}: neither a Hugging Face folder (config.json + *.safetensors) "
                             "nor a zeroplay run folder (config.json + checkpoints/)")


def load_for_eval(path: str, *, role: str = "solver", dtype: str = "float32"):
    """(model, params, tokenizer, info dict) for `--model`; ModelPathError (one line) otherwise."""
    import jax.numpy as jnp

    from zeroplay.models import EMBEDDED_NAME, ModelLoadError, load_pretrained, load_tokenizer

    check_model_path(path)
    run = _run_of(path) if path != EMBEDDED_NAME else None
    if run is not None:
        return _load_run(*run, role=role)
    try:
        model, params = load_pretrained(path, dtype=jnp.dtype(dtype))
        tokenizer = load_tokenizer(path)
    except ModelLoadError as e:
        raise ModelPathError(f"--model {path}: {e}") from None
    return model, params, tokenizer, {"model": path}


def _load_run(run: str, step: int | None, *, role: str):
    import jax
    import jax.numpy as jnp

    from zeroplay.checkpoint import CheckpointNotFoundError, Checkpointer, abstract_like
    from zeroplay.models import ModelConfig, ModelLoadError, abstract_params, load_pretrained
    from zeroplay.models.decoder import Decoder
    from zeroplay.rl.optim import make_optimizer
    from zeroplay.rl.policy import init_policy_state
    from zeroplay.runconfig import ConfigError, parse

    with open(os.path.join(run, "config.json")) as f:
        raw = json.load(f)
    try:
        cfg = parse(raw)
    except ConfigError as e:
        raise ModelPathError(f"--model {run}: its config.json does not parse ({e})") from None
    if role not in cfg.roles:
        raise ModelPathError(f"--role {role}: the run's roles are {sorted(cfg.roles)}")
    pname = cfg.roles[role]
    spec = cfg.policies[pname]
    ckdir = os.path.join(run, "checkpoints")
    m = spec.model
    if m.name == "coldstart":  # the run trained its own model first: rebuild it from that folder
        from zeroplay.coldstart import folder

        m = dataclasses.replace(m, name=folder(cfg.coldstart, run))
    try:
        if m.name == "random":
            mcfg = ModelConfig(**m.shape, dtype=jnp.dtype(m.dtype), param_dtype=jnp.float32,
                               scan_layers=m.scan_layers, remat="none")
            model, params = Decoder(mcfg), abstract_params(mcfg)
        else:
            model, params = load_pretrained(m.name, dtype=jnp.dtype(m.dtype), param_dtype=jnp.float32,
                                            scan_layers=m.scan_layers)
    except (ModelLoadError, TypeError, ValueError) as e:
        raise ModelPathError(f"--model {run}: cannot rebuild policy {pname!r} ({str(e).splitlines()[0]})") from None
    ckpt = Checkpointer(ckdir, keep=None, async_save=False)
    try:
        if ckpt.latest_step() is None:
            raise ModelPathError(f"--model {run}: no complete checkpoint under {ckdir} (train it first)")
        name = f"policy/{pname}"
        try:
            names = ckpt.tree_names(step)
        except CheckpointNotFoundError as e:
            raise ModelPathError(f"--model {run}: {e}") from None
        if name not in names:
            raise ModelPathError(f"--model {run}: the checkpoint has no tree {name!r} (it has {names})")
        params_abs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), params)
        state_abs = jax.eval_shape(lambda p: init_policy_state(p, make_optimizer(spec.train)), params_abs)
        one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        trees, host = ckpt.restore(step, targets={name: abstract_like(state_abs, one)})
        step = host.get("step", step if step is not None else ckpt.latest_step())
    finally:
        ckpt.close()
    from zeroplay.models.byte_tokenizer import byte_tokenizer
    from zeroplay.models import load_tokenizer

    try:
        tokenizer = byte_tokenizer() if m.tokenizer == "byte" else load_tokenizer(m.tokenizer or m.name)
    except ModelLoadError as e:
        raise ModelPathError(f"--model {run}: {e}") from None
    return model, trees[name].params, tokenizer, {"model": run, "step": step, "role": role, "policy": pname}
