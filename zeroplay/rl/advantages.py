"""Advantage estimators: pure functions of rewards [N] and group ids [N] (any integers).

    grpo        (r - mean_g) / (std_g + eps)      group z-score; std with `ddof` (1 = unbiased)
    dr_grpo     r - mean_g                        Dr. GRPO: no std, no length normalisation
    rloo        r - mean of the other members     = n / (n - 1) (r - mean_g)
    reinforce_pp (r - mean_b) / (std_b + eps)     whitening within buckets: AZR's Task-Relative
                                                  REINFORCE++ uses one bucket per (task, role)
A sample alone in its group (or bucket) keeps its raw reward: there is nothing to compare with.

`band_filter` keeps the groups whose solve rate (mean reward, rewards in [0, 1]) lies in
[low, high] (or the open interval), e.g. DAPO's dynamic sampling (0, 1) or R-Zero's band
around 1/2. Everything is jnp, so it runs inside or outside jit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

ESTIMATORS = ("grpo", "dr_grpo", "rloo", "reinforce_pp")


def _group_stats(values: jax.Array, group_ids: jax.Array, ddof: int = 0):
    """Per-sample (count, mean, std) of its group; O(N^2) memory, fine for N up to ~10^4."""
    values = jnp.asarray(values, jnp.float32)
    group_ids = jnp.asarray(group_ids)
    if values.ndim != 1 or group_ids.shape != values.shape:
        raise ValueError(f"rewards and group ids must both be [N], got {values.shape} and {group_ids.shape}")
    same = (group_ids[:, None] == group_ids[None, :]).astype(jnp.float32)
    count = jnp.sum(same, axis=1)
    mean = same @ values / count
    sq = jnp.sum(same * jnp.square(values[None, :] - mean[:, None]), axis=1)
    var = sq / jnp.maximum(count - ddof, 1.0)
    return count, mean, jnp.sqrt(var)


def grpo(rewards, group_ids, *, eps: float = 1e-6, ddof: int = 1, scale_by_std: bool = True) -> jax.Array:
    """Group z-score (GRPO). `ddof=1` is torch.std's unbiased convention (TRL, verl)."""
    count, mean, std = _group_stats(rewards, group_ids, ddof)
    r = jnp.asarray(rewards, jnp.float32)
    adv = (r - mean) / (std + eps) if scale_by_std else r - mean
    return jnp.where(count > 1, adv, r)


def dr_grpo(rewards, group_ids) -> jax.Array:
    """Dr. GRPO: reward minus the group mean."""
    return grpo(rewards, group_ids, scale_by_std=False)


def rloo(rewards, group_ids) -> jax.Array:
    """REINFORCE leave-one-out: reward minus the mean of the rest of its group."""
    count, mean, _ = _group_stats(rewards, group_ids)
    r = jnp.asarray(rewards, jnp.float32)
    adv = count / jnp.maximum(count - 1.0, 1.0) * (r - mean)
    return jnp.where(count > 1, adv, r)


def reinforce_pp(rewards, bucket_ids, *, eps: float = 1e-6, ddof: int = 0, weights=None) -> jax.Array:
    """REINFORCE++ whitening within buckets (one bucket for the global baseline).

    With `weights` (each sample's response length), mean and variance are token-weighted:
    A = (r - mu_b) / sqrt(var_b + eps), mu_b = sum_b(w r) / sum_b(w), var_b = sum_b(w (r - mu_b)^2)
    / sum_b(w): veRL's masked whitening over every response token of the bucket (AZR's TRR++, whose
    reward sits on the last token and is returned to every token with gamma = 1).
    """
    if weights is None:
        return grpo(rewards, bucket_ids, eps=eps, ddof=ddof)
    r = jnp.asarray(rewards, jnp.float32)
    w = jnp.asarray(weights, jnp.float32)
    b = jnp.asarray(bucket_ids)
    if w.shape != r.shape or b.shape != r.shape:
        raise ValueError(f"rewards, bucket ids and weights must all be [N], got {r.shape}, {b.shape}, {w.shape}")
    same = (b[:, None] == b[None, :]).astype(jnp.float32)
    wsum = jnp.maximum(same @ w, 1e-12)
    mean = same @ (w * r) / wsum
    var = jnp.sum(same * w[None, :] * jnp.square(r[None, :] - mean[:, None]), axis=1) / wsum
    return (r - mean) / jnp.sqrt(var + eps)


def bucket_ids(*keys) -> jax.Array:
    """One int id per distinct tuple of keys, e.g. bucket_ids(task_type, role) for AZR."""
    keys = [jnp.asarray(k, jnp.int32) for k in keys]
    out = jnp.zeros_like(keys[0])
    for k in keys:
        out = out * (jnp.max(k) + 1) + k
    return out


def compute(name: str, rewards, group_ids, **kw) -> jax.Array:
    """Dispatch by name (from a config): one of ESTIMATORS."""
    fns = {"grpo": grpo, "dr_grpo": dr_grpo, "rloo": rloo, "reinforce_pp": reinforce_pp}
    if name not in fns:
        raise ValueError(f"unknown advantage estimator {name!r}; use one of {ESTIMATORS}")
    return fns[name](rewards, group_ids, **kw)


def solve_rate(rewards, group_ids) -> jax.Array:
    """Per-sample mean reward of its group (the group's solve rate for 0/1 rewards)."""
    return _group_stats(rewards, group_ids)[1]


def band_filter(rewards, group_ids, low: float = 0.0, high: float = 1.0, *,
                inclusive: bool = True) -> jax.Array:
    """Bool [N]: True for samples whose group's solve rate lies in the band."""
    rate = solve_rate(rewards, group_ids)
    if inclusive:
        return (rate >= low) & (rate <= high)
    return (rate > low) & (rate < high)
