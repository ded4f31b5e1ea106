"""Per-device memory of a run config, from shapes only: will it fit, and on which mesh?

    python -m zeroplay.memory --config configs/azr.py:qwen2.5-7b-coder-tpu [--device_gb 95]
    python -m zeroplay.memory --config configs/pasodoble.py:qwen3-1.7b-gpu1 --device_gb 80 --config.loop.sample_batch=16

Nothing is allocated: parameter and optimizer shapes come from `abstract_params` and
`jax.eval_shape(optimizer.init)`, their per-device shards from the config's mesh and logical-axis
rules through `zeroplay.parallel` (the same `model_param_shardings` / `opt_state_shardings` the
loop places them with, here on a `jax.sharding.AbstractMesh`, so no devices are needed). A dimension
sharded over mesh axes of total size n is divided by n; one they do not divide stays whole.

Per policy, held for the whole run (bytes per device):
    params       float32 master weights (`create_state` copies the params to float32)       4 P
    opt_state    optax's AdamW state: mu and nu like the params (float32), counts replicated  8 P
    reference    the frozen initial params (param_dtype), only when kl_coef > 0 and the KL is
                 not taken to the teacher
    teacher      the EMA teacher, a float32 copy of the params (policies.<name>.teacher)
where P is the per-device parameter count.

Transient, while the policy trains (the jitted step, one policy at a time); b = micro-batch rows
per device (micro_batch / batch shards, where batch shards = product of the mesh axes of the
logical "batch" axis), T = the longest train row (max_prompt_tokens + max_new_tokens rounded up to
loop.train_len_multiple), L layers, H hidden, NH / KVH (query / kv) heads per device (divided by
the tensor axis where it divides them), D head dim, F MLP width per device, V vocabulary,
c = logprob_chunk (T when unset), s = compute dtype bytes:
    grads        4 P; 12 P when micro-batching (n > 1): the float32 accumulator, the micro-batch
                 gradient and the scan carry's copy (XLA fuses optax's update into the param update,
                 so it adds nothing; both measured on the CPU compile, tests/test_memory.py)
    saved        what the backward pass keeps of the forward, for all L layers:
                   remat full:  L b T H s                         (each layer's input)
                   remat dots:  L b T (H + (2 NH + 2 KVH) D + 2 F + H) s   (+ layer inputs)
                   remat none:  L b [NH T^2 (4 + s) + T ((NH + 2 KVH) D + NH D + 3 F + 2 H) s
                                 + 2 T H 4]                       (probabilities f32 and cast,
                                 projections, MLP, float32 norm inputs)
    layer        one layer's backward working set: attention scores, probabilities and their
                 gradient in float32 plus the cast probabilities, b NH T^2 (3 * 4 + s), and its
                 projections b T ((2 NH + 2 KVH) D + 3 F + 2 H) 4
    head         the LM head on one chunk: logits, softmax and their gradient in float32,
                 3 b c V 4 (plus the [H, V] kernel cast to the compute dtype, H V s, when s != 4)
    weights      FSDP gathers one layer's weights (in the compute dtype) at a time: 2 W_layer s
                 (forward of the next layer overlaps the current), only when fsdp > 1
The reference forward (kl_coef > 0) runs outside the gradient: its working set is smaller than
`layer` + `head` and is not added.

Transient, while the policy samples (one sampler call of R rows, the loop's `sample_batch`
prompts x samples, bucketed to a power of two; cache slots S = prompt bucket of max_prompt_tokens
+ new-token bucket of max_new_tokens, both powers of two from 16, see `zeroplay.sampling.buckets`):
    kv_cache     2 L R S KVH D s_c  (k and v, one [R, KVH, S, D] pair per layer, in the policy
                 model's dtype s_c = `model.dtype`; rows over the batch shards, KVH over tensor)
    prefill      the prompt pass of N = R / n prompts over P slots (n = samples per prompt,
                 `--samples`, default 1: the worst case, AZR's): attention scores and
                 probabilities of one layer, N NH P^2 (4 + 4 + s), plus the prompts' own cache
                 2 L N P KVH D s_c
    dec_weights  the decode step's hoisted weights: every layer's fused q/k/v and gate/up (and
                 the rest of the layer) in the compute dtype, P_layers s, plus the [H, V] head
The sampler reads the live params (no copy) and its decode loop donates its state, so the cache
exists once.

Peak per device = sum over policies of what they hold + the largest transient of any policy
(training and sampling alternate; the sampler's arrays are gone when the update runs).
Not counted: XLA's own scratch and fragmentation, collectives' buffers, a game's snapshot of a
policy state (CPMobius), the host side.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

GB = 1e9


def _itemsize(dtype) -> int:
    import jax.numpy as jnp

    from zeroplay.models.config import resolve_dtype

    return jnp.dtype(resolve_dtype(dtype)).itemsize


def _pow2(n: int, minimum: int) -> int:
    from zeroplay.sampling.buckets import _round_up

    return _round_up(n, None, minimum)


def abstract_mesh(shape: dict):
    from jax.sharding import AbstractMesh

    from zeroplay.parallel import MESH_AXES

    return AbstractMesh(tuple(int(shape.get(a, 1)) for a in MESH_AXES), MESH_AXES)


def resolve_mesh(mesh: dict, devices: int | None) -> dict:
    """The config's mesh with its -1 axis filled from `devices` (None: the mesh must be complete)."""
    from zeroplay.parallel import MESH_AXES

    sizes = {a: int(mesh.get(a, 1)) for a in MESH_AXES}
    known = math.prod(v for v in sizes.values() if v != -1)
    if -1 in sizes.values():
        if devices is None:
            raise ValueError(f"mesh {mesh} has a -1 axis: give --devices N")
        if devices % known:
            raise ValueError(f"mesh {mesh} does not divide {devices} devices")
        sizes = {a: (devices // known if v == -1 else v) for a, v in sizes.items()}
    return sizes


def _per_device(shapes, shardings) -> int:
    """Bytes per device of a tree of ShapeDtypeStructs placed with a tree of NamedShardings."""
    import jax
    import numpy as np

    total = 0
    for x, s in zip(jax.tree.leaves(shapes), jax.tree.leaves(shardings)):
        total += int(np.prod(s.shard_shape(x.shape), dtype=np.int64)) * x.dtype.itemsize
    return total


def _axis_size(mesh_shape: dict, rules, logical: str) -> int:
    from zeroplay.parallel import rules_from_config

    axes = dict(rules_from_config(rules)).get(logical)
    if axes is None:
        return 1
    names = axes if isinstance(axes, tuple) else (axes,)
    return math.prod(mesh_shape[a] for a in names)


def _div(n: int, k: int) -> int:
    """n split k ways when k divides it (fit_to_shape's rule), else n whole."""
    return n // k if k > 1 and n % k == 0 else n


@dataclasses.dataclass
class PolicyMemory:
    name: str
    held: dict  # term -> bytes per device, for the whole run
    train: dict  # term -> bytes per device, while this policy trains
    sample: dict  # term -> bytes per device, while this policy samples
    notes: list

    @property
    def held_total(self) -> int:
        return sum(self.held.values())

    @property
    def peak_transient(self) -> int:
        return max(sum(self.train.values()), sum(self.sample.values()))


@dataclasses.dataclass
class Report:
    mesh: dict
    policies: list

    @property
    def held(self) -> int:
        return sum(p.held_total for p in self.policies)

    @property
    def transient(self) -> int:
        return max((p.peak_transient for p in self.policies), default=0)

    @property
    def peak(self) -> int:
        return self.held + self.transient


def model_config(spec) -> Any:
    """The ModelConfig of a policy spec from its configured shape (full-size configs carry it)."""
    import jax.numpy as jnp

    from zeroplay.models import ModelConfig

    m = spec.model
    if not m.shape:
        raise ValueError(f"model {m.name!r} has no model.shape in the config: the memory estimate needs the "
                         "architecture (ModelConfig fields)")
    return ModelConfig(**m.shape, dtype=jnp.dtype(m.dtype), param_dtype=jnp.dtype(m.param_dtype),
                       scan_layers=m.scan_layers, remat=m.remat)


def train_length(cfg, spec) -> int:
    from zeroplay.loop import _round_up

    return _round_up(spec.sampling.max_prompt_tokens + spec.sampling.max_new_tokens, cfg.loop.train_len_multiple)


def policy_memory(cfg, name: str, mesh_shape: dict, *, samples: int = 1, train_len: int | None = None,
                  train_rows: int | None = None) -> PolicyMemory:
    """The terms of the module docstring for one policy of a RunConfig on a mesh of these sizes."""
    import jax
    import jax.numpy as jnp

    from zeroplay.models import abstract_params
    from zeroplay.parallel import model_param_shardings, opt_state_shardings
    from zeroplay.rl.optim import make_optimizer
    from zeroplay.rl.train_step import train_model

    spec = cfg.policies[name]
    tc = spec.train
    mcfg = model_config(spec)
    mesh = abstract_mesh(mesh_shape)
    notes = []

    stored = abstract_params(mcfg)  # param_dtype, as loaded (the reference)
    f32 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), stored)
    p_sh = model_param_shardings(f32, mcfg, mesh, cfg.rules)
    opt = jax.eval_shape(make_optimizer(tc).init, f32)
    o_sh = opt_state_shardings(opt, p_sh, mesh)
    params_b = _per_device(f32, p_sh)
    held = {"params": params_b, "opt_state": _per_device(opt, o_sh)}
    as_ref = spec.teacher is not None and spec.teacher.as_reference
    if tc.needs_reference and not as_ref:
        held["reference"] = _per_device(stored, p_sh)
    if spec.teacher is not None:
        held["teacher"] = params_b

    # -- the train step -------------------------------------------------------------------------
    tm = train_model(_Model(mcfg), tc).cfg
    s = _itemsize(tm.dtype)
    shards = _axis_size(mesh_shape, cfg.rules, "batch")
    tensor = _axis_size(mesh_shape, cfg.rules, "heads")
    t = train_len or train_length(cfg, spec)
    # the update's rows (the loop pads them to this multiple; more rows only add micro-batches)
    rows_total = train_rows or math.lcm(cfg.loop.train_row_multiple, shards, tc.micro_batch or 1)
    micro = tc.micro_batch or rows_total
    n_micro = max(rows_total // micro, 1) if tc.micro_batch else 1
    if micro % shards:
        notes.append(f"micro_batch {micro} does not divide over {shards} batch shards (the step refuses it)")
    b = max(-(-micro // shards), 1)
    L, H, D, V = mcfg.num_layers, mcfg.hidden_size, mcfg.dim_per_head, mcfg.vocab_size
    nh, kvh = _div(mcfg.num_heads, tensor), _div(mcfg.num_kv_heads, tensor)
    f = _div(mcfg.intermediate_size, _axis_size(mesh_shape, cfg.rules, "mlp"))
    v_dev = _div(V, _axis_size(mesh_shape, cfg.rules, "vocab"))
    c = min(tc.logprob_chunk or t, t)
    proj = (2 * nh + 2 * kvh) * D  # q, k, v and the attention output, per token
    train = {"grads": params_b * (3 if n_micro > 1 else 1)}
    if mcfg.remat == "full":
        saved = L * b * t * H * s
    elif mcfg.remat == "dots":
        saved = L * b * t * (H + proj + 2 * f + H) * s + L * b * t * H * s
    else:
        saved = L * b * (nh * t * t * (4 + s) + t * (proj + 3 * f + 2 * H) * s + 2 * t * H * 4)
    train["saved"] = saved
    train["layer"] = b * nh * t * t * (3 * 4 + s) + b * t * (proj + 3 * f + 2 * H) * 4
    fsdp = _axis_size(mesh_shape, cfg.rules, "embed")
    # the [H, V] kernel is copied only when cast to a compute dtype other than the float32 masters
    train["head"] = 3 * b * c * v_dev * 4 + (H * v_dev * s if s != 4 else 0)
    layer_w = mcfg.num_params() - V * H * (1 if mcfg.tie_word_embeddings else 2)
    if fsdp > 1:
        train["weights"] = 2 * (layer_w // L) * s // max(tensor, 1)
    # tokens, positions, attention and loss masks [B, T] (4 bytes each), and the micro-batch copy
    train["batch"] = (2 if n_micro > 1 else 1) * rows_total * t * 4 * 4 // shards

    # -- the sampler ----------------------------------------------------------------------------
    sc = _itemsize(mcfg.dtype)
    chunk = max(1, cfg.loop.sample_batch // max(samples, 1))
    n_prompts = _pow2(chunk, 1)
    rows = n_prompts * samples
    p_len = _pow2(spec.sampling.max_prompt_tokens, 16)
    slots = p_len + _pow2(spec.sampling.max_new_tokens, 16)
    kv_per_token = 2 * L * kvh * D * sc
    r_dev, n_dev = _div(rows, shards), _div(n_prompts, shards)
    sample = {"kv_cache": r_dev * slots * kv_per_token,
              "prefill": n_dev * nh * p_len * p_len * (4 + 4 + s) + n_dev * p_len * kv_per_token,
              "dec_weights": (layer_w * sc) // max(tensor * fsdp if fsdp > 1 else tensor, 1) + H * v_dev * sc}
    return PolicyMemory(name, held, train, sample, notes)


class _Model:  # train_model needs an object with .cfg
    def __init__(self, cfg):
        self.cfg = cfg


def predict(cfg, mesh_shape: dict | None = None, *, devices: int | None = None, samples: int = 1) -> Report:
    """A Report of every policy of RunConfig `cfg` on `mesh_shape` (default: the config's mesh)."""
    shape = resolve_mesh(dict(mesh_shape or cfg.mesh), devices)
    return Report(shape, [policy_memory(cfg, n, shape, samples=samples) for n in cfg.policies])


def factorizations(n: int):
    """Every (data, fsdp, tensor) with data * fsdp * tensor = n."""
    for d in range(1, n + 1):
        if n % d:
            continue
        for t in range(1, n // d + 1):
            if (n // d) % t == 0:
                yield {"data": d, "fsdp": n // d // t, "tensor": t}


def fitting_meshes(cfg, devices: int, device_bytes: float, *, samples: int = 1):
    """[(mesh, peak bytes, fits)] over all factorizations of `devices`, smallest peak first."""
    out = []
    for shape in factorizations(devices):
        rep = predict(cfg, shape, samples=samples)
        bad = any(p.notes for p in rep.policies)
        out.append((shape, rep.peak, rep.peak <= device_bytes and not bad))
    return sorted(out, key=lambda x: x[1])


def _fmt(b: int) -> str:
    return f"{b / GB:8.2f} GB"


def format_report(rep: Report, device_bytes: float | None = None) -> str:
    lines = [f"mesh {rep.mesh} (bytes per device)"]
    for p in rep.policies:
        lines.append(f"policy {p.name}")
        for title, terms in (("held", p.held), ("while training", p.train), ("while sampling", p.sample)):
            lines.append(f"  {title:<16} {_fmt(sum(terms.values()))}")
            lines += [f"    {k:<14} {_fmt(v)}" for k, v in terms.items()]
        lines += [f"  note: {n}" for n in p.notes]
    lines.append(f"held by all policies  {_fmt(rep.held)}")
    lines.append(f"largest transient     {_fmt(rep.transient)}")
    lines.append(f"peak per device       {_fmt(rep.peak)}")
    if device_bytes:
        verdict = "fits" if rep.peak <= device_bytes else "does NOT fit"
        lines.append(f"{verdict} in {device_bytes / GB:.0f} GB per device")
    return "\n".join(lines)


def main(argv=None):
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, "Config file (configs/<name>.py[:arg]).",
                                             lock_config=True)
    device_gb = flags.DEFINE_float("device_gb", None, "Memory per device in GB (e.g. 80, 95); lists the "
                                   "meshes of the same device count that fit.")
    devices_f = flags.DEFINE_integer("devices", None, "Device count (for a mesh with -1; default: the "
                                     "mesh's product).")
    samples_f = flags.DEFINE_integer("samples", 1, "Samples per prompt of the largest sampler call (the "
                                     "prefill covers sample_batch / samples prompts); 1 is the worst case.")

    def _main(_):
        from zeroplay import runconfig

        if config.value is None:
            sys.exit("error: give --config configs/<name>.py[:variant]")
        try:
            cfg = runconfig.parse(config.value)
            rep = predict(cfg, devices=devices_f.value, samples=samples_f.value)
        except (runconfig.ConfigError, ValueError) as e:
            sys.exit(f"error: {e}")
        dev_b = device_gb.value * GB if device_gb.value else None
        print(format_report(rep, dev_b))
        if dev_b:
            n = math.prod(rep.mesh.values())
            fits = [(m, b) for m, b, ok in fitting_meshes(cfg, n, dev_b, samples=samples_f.value) if ok]
            print(f"meshes of {n} devices that fit in {device_gb.value:g} GB:")
            for m, b in fits:
                print(f"  data={m['data']} fsdp={m['fsdp']} tensor={m['tensor']}  peak {_fmt(b)}")
            if not fits:
                print("  none")

    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
