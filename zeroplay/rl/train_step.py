"""The jitted policy update: logprobs, policy loss, accumulated gradients, guarded optax step.

    step = make_train_step(model, policy_cfg, mesh=mesh)
    state, metrics = step(state, batch)              # or step(state, batch, ref_params)

Batch (a dict of arrays, rows = samples):
    tokens          int32 [B, T]  prompt (left-padded) then completion (right-padded)
    positions       int32 [B, T]  rotary positions (optional: 0..T-1)
    attention_mask  [B, T]        valid (non-pad) tokens (optional: all valid)
    loss_mask       [B, T]        completion tokens that are trained on
    advantages      [B] or [B, T]
    old_logprobs    [B, T]        optional; logprob of tokens[:, t] given tokens[:, :t] under the
                                  policy that sampled (absent: on-policy, ratio 1 with gradient)
    sampler_logprobs [B, T]       optional; the sampler's logprobs, for truncated IS (tis_cap)
    row_mask        [B]           optional; real rows (0 for rows that only pad the batch to a
                                  static size): the per-sequence normalisers count real rows only
    ref_logprobs    [B, T]        optional; else computed from `ref_params` when kl_coef > 0
Every per-token array is aligned to the token it scores: the loss at position t uses the
logits at t - 1 (see `zeroplay.rl.logprobs`), so loss_mask[:, 0] must be 0.

Gradients are accumulated over micro-batches of `cfg.micro_batch` rows inside the jitted step;
the loss normalisers are those of the whole batch, so accumulation changes nothing but memory.
A non-finite loss or gradient skips the update (params and optimizer state unchanged) and counts
in `state.skipped`. With a mesh, every input and output has an explicit NamedSharding and the
state is donated.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from zeroplay.models.config import resolve_dtype
from zeroplay.models.decoder import Decoder, abstract_params
from zeroplay.parallel.placement import (batch_divisor, batch_spec, model_param_shardings, replicated,
                                         state_shardings)
from zeroplay.parallel.sharding import rules_from_config
from zeroplay.rl.logprobs import token_logprobs
from zeroplay.rl.losses import policy_loss
from zeroplay.rl.optim import PolicyConfig, make_optimizer, make_schedule
from zeroplay.rl.policy import PolicyState, init_policy_state

_PER_TOKEN = ("positions", "attention_mask", "loss_mask", "old_logprobs", "sampler_logprobs", "ref_logprobs")
_EXTREMA = {"ratio_min": jnp.minimum, "ratio_max": jnp.maximum}


def train_model(model: Decoder, cfg: PolicyConfig) -> Decoder:
    """The decoder as trained: compute dtype from the policy config, float32 master weights."""
    if cfg.compute_dtype is None:
        return model
    return Decoder(model.cfg.replace(dtype=resolve_dtype(cfg.compute_dtype), param_dtype=jnp.float32))


def check_batch(batch, micro_batch: int | None = None, divisor: int = 1) -> tuple[int, int]:
    """(B, T) of a batch, or a ValueError naming the offending key (raised at trace time)."""
    for key in ("tokens", "loss_mask", "advantages"):
        if key not in batch:
            raise ValueError(f"train batch needs {key!r}; got keys {sorted(batch)}")
    if batch["tokens"].ndim != 2:
        raise ValueError(f"batch['tokens'] must be [B, T], got {batch['tokens'].shape}")
    b, t = batch["tokens"].shape
    for key in _PER_TOKEN:
        if key in batch and batch[key].shape != (b, t):
            raise ValueError(f"batch[{key!r}] has shape {batch[key].shape}, expected {(b, t)} like tokens")
    if "row_mask" in batch and batch["row_mask"].shape != (b,):
        raise ValueError(f"batch['row_mask'] has shape {batch['row_mask'].shape}, expected {(b,)}")
    if batch["advantages"].shape not in ((b,), (b, t)):
        raise ValueError(f"batch['advantages'] has shape {batch['advantages'].shape}, expected {(b,)} "
                         f"or {(b, t)}")
    m = micro_batch or b
    if b % m:
        raise ValueError(f"batch of {b} rows does not split into micro-batches of {m}")
    if m % divisor:
        raise ValueError(f"micro-batch of {m} rows does not divide over the {divisor} batch shards "
                         "of the mesh")
    return b, t


def _combine(acc: dict, m: dict) -> dict:
    """Token-weighted running sums of micro-batch metrics (extrema kept as extrema)."""
    out = {}
    for k, v in m.items():
        if k in _EXTREMA:
            out[k] = v if acc is None else _EXTREMA[k](acc[k], v)
        elif k == "tokens":
            out[k] = v if acc is None else acc[k] + v
        else:
            w = v * m["tokens"]
            out[k] = w if acc is None else acc[k] + w
    return out


def make_train_step(model: Decoder, cfg: PolicyConfig, *, mesh: Mesh | None = None, rules=None,
                    donate: bool = True) -> Callable[..., tuple[PolicyState, dict]]:
    """A function (state, batch[, ref_params]) -> (new_state, metrics), jitted (see module doc)."""
    model = train_model(model, cfg)
    optimizer = make_optimizer(cfg)
    rules = rules_from_config(rules)
    divisor = batch_divisor(mesh, rules) if mesh is not None else 1
    with_entropy = cfg.entropy_coef != 0

    def loss_fn(params, mb, ref_params, totals):
        lp, ent = token_logprobs(model, params, mb["tokens"], positions=mb.get("positions"),
                                 attention_mask=mb.get("attention_mask"), chunk_size=cfg.logprob_chunk,
                                 with_entropy=with_entropy)
        ref_lp = None
        if cfg.kl_coef > 0:  # static: no reference forward at all when the KL is off
            if "ref_logprobs" in mb:
                ref_lp = mb["ref_logprobs"]
            elif ref_params is None:
                raise ValueError("kl_coef > 0 needs ref_params or batch['ref_logprobs']")
            else:
                ref_lp, _ = token_logprobs(model, jax.lax.stop_gradient(ref_params), mb["tokens"],
                                           positions=mb.get("positions"),
                                           attention_mask=mb.get("attention_mask"),
                                           chunk_size=cfg.logprob_chunk)
                ref_lp = jax.lax.stop_gradient(ref_lp)
        old = mb.get("old_logprobs")
        old = jax.lax.stop_gradient(lp) if old is None else old
        return policy_loss(lp, old, mb["advantages"], mb["loss_mask"], ref_logprobs=ref_lp,
                           clip_low=cfg.clip_low, clip_high=cfg.clip_high, kl_coef=cfg.kl_coef,
                           kl_estimator=cfg.kl_estimator, aggregation=cfg.aggregation,
                           max_tokens=cfg.max_tokens, entropy=ent, entropy_coef=cfg.entropy_coef,
                           sampler_logprobs=mb.get("sampler_logprobs"), tis_cap=cfg.tis_cap,
                           total_rows=totals[0], total_tokens=totals[1])

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: PolicyState, batch: dict, ref_params=None):
        b, t = check_batch(batch, cfg.micro_batch, divisor)
        m = cfg.micro_batch or b
        n = b // m
        rows = jnp.maximum(jnp.sum(batch["row_mask"].astype(jnp.float32)), 1.0) if "row_mask" in batch else b
        totals = (rows, jnp.sum(batch["loss_mask"].astype(jnp.float32)))
        if n == 1:
            (loss, metrics), grads = grad_fn(state.params, batch, ref_params, totals)
            metrics = _combine(None, metrics)
        else:
            # Micro-batch i holds rows i, i + n, i + 2n, ...: each stays spread over the batch shards.
            split = lambda x: jnp.swapaxes(x.reshape((m, n) + x.shape[1:]), 0, 1)
            micro = {k: split(v) for k, v in batch.items()}
            if mesh is not None:
                micro = {k: jax.lax.with_sharding_constraint(
                    v, NamedSharding(mesh, jax.sharding.PartitionSpec(None, *batch_spec(v.ndim - 1, rules))))
                    for k, v in micro.items()}
            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)

            def body(carry, mb):
                g_acc, l_acc, m_acc = carry
                (loss_mb, mets), g = grad_fn(state.params, mb, ref_params, totals)
                g_acc = jax.tree.map(lambda a, x: a + x.astype(jnp.float32), g_acc, g)
                return (g_acc, l_acc + loss_mb, _combine(m_acc, mets)), None

            first = jax.tree.map(lambda v: v[0], micro)
            (l0, m0), g0 = grad_fn(state.params, first, ref_params, totals)
            init = (jax.tree.map(lambda a, x: a + x.astype(jnp.float32), zeros, g0), l0, _combine(None, m0))
            rest = jax.tree.map(lambda v: v[1:], micro)
            (grads, loss, metrics), _ = jax.lax.scan(body, init, rest)
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)

        tokens = jnp.maximum(metrics["tokens"], 1.0)
        metrics = {k: (v if k in _EXTREMA or k == "tokens" else v / tokens) for k, v in metrics.items()}
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.all(jnp.stack(
            [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))

        def apply(s: PolicyState) -> PolicyState:
            updates, opt_state = optimizer.update(grads, s.opt_state, s.params)
            return s.replace(params=optax.apply_updates(s.params, updates), opt_state=opt_state,
                             step=s.step + 1)

        def skip(s: PolicyState) -> PolicyState:
            return s.replace(skipped=s.skipped + 1)

        new_state = jax.lax.cond(finite, apply, skip, state)
        metrics.update(loss=loss, grad_norm=grad_norm, finite=finite.astype(jnp.float32),
                       skipped=new_state.skipped, step=new_state.step,
                       lr=optimizer_lr(cfg, state.step))
        return new_state, metrics

    # Activations are laid out by XLA's sharding propagation from the explicit param and batch
    # shardings. The decoder's logical activation constraints stay off: under a global mesh,
    # flax's DenseGeneral shape check applies the 3-d kernel names to its 2-d init (flax 0.12).
    traced = step
    if mesh is None:
        return jax.jit(traced, donate_argnums=(0,) if donate else ())

    abstract = abstract_params(model.cfg)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), abstract)
    state_abs = jax.eval_shape(lambda p: init_policy_state(p, optimizer), abstract)
    s_sh = state_shardings(state_abs, model.cfg, mesh, rules)
    p_sh = model_param_shardings(abstract, model.cfg, mesh, rules)
    b_sh = NamedSharding(mesh, batch_spec(1, rules))
    out = (s_sh, replicated(mesh))
    donate_args = (0,) if donate else ()
    without_ref = jax.jit(lambda s, b: traced(s, b, None), in_shardings=(s_sh, b_sh), out_shardings=out,
                          donate_argnums=donate_args)
    with_ref = jax.jit(traced, in_shardings=(s_sh, b_sh, p_sh), out_shardings=out, donate_argnums=donate_args)

    def sharded_step(state, batch, ref_params=None):
        if ref_params is None:
            return without_ref(state, batch)
        return with_ref(state, batch, ref_params)

    sharded_step.state_shardings = s_sh
    sharded_step.param_shardings = p_sh
    sharded_step.batch_sharding = b_sh
    return sharded_step


def optimizer_lr(cfg: PolicyConfig, step) -> jax.Array:
    """The learning rate the schedule gives at `step`."""
    return jnp.asarray(make_schedule(cfg)(step), jnp.float32)


def create_state(params, cfg: PolicyConfig, model_cfg=None, mesh: Mesh | None = None, rules=None) -> PolicyState:
    """A PolicyState for a float32 copy of `params` (master weights), placed on `mesh` if given.

    The copy keeps the caller's params alive: the train step donates the state's buffers.
    """
    optimizer = make_optimizer(cfg)
    params = jax.tree.map(lambda x: jnp.array(x, dtype=jnp.float32, copy=True), params)
    if mesh is None:
        return init_policy_state(params, optimizer)
    if model_cfg is None:
        raise ValueError("create_state with a mesh needs the model config for the logical axes")
    p_sh = model_param_shardings(params, model_cfg, mesh, rules)
    params = jax.device_put(params, p_sh)
    state_abs = jax.eval_shape(lambda p: init_policy_state(p, optimizer), params)
    s_sh = state_shardings(state_abs, model_cfg, mesh, rules)
    return jax.jit(lambda p: init_policy_state(p, optimizer), out_shardings=s_sh)(params)

