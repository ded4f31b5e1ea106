"""The GRPO-family policy loss: clipped surrogate, KL to a reference, entropy term, aggregation.

    loss, metrics = policy_loss(logprobs, old_logprobs, advantages, mask, ...)

Per token, with r = exp(logprobs - old_logprobs) and A the advantage:
    s = -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A)         (clip_high > clip_low: DAPO)
    l = w s + kl_coef KL(d = ref_logprobs - logprobs) - entropy_coef entropy
where w is the truncated importance weight min(exp(old_logprobs - sampler_logprobs), tis_cap)
(no gradient) when `sampler_logprobs` and `tis_cap` are given, else 1. KL estimators (Schulman):
k1 = -d, k2 = d^2 / 2, k3 = exp(d) - d - 1. A positive `entropy_coef` is an entropy bonus; a
negative one minimises entropy (CPMobius, RENT).

Aggregations over the masked tokens of a [B, T] batch:
    token_mean               sum(l m) / max(sum(m), 1)
    seq_mean_token_mean      (1/B) sum_b sum_t(l m) / max(sum_t(m), 1)
    seq_mean_token_sum_norm  sum(l m) / (B max_tokens)                 (Dr. GRPO, max_tokens = T)
A row with an empty mask contributes zero and still counts in B.

Gradient accumulation: a micro-batch passes the normalisers of the whole batch (`total_rows`,
`total_tokens`), so the micro-batch losses sum exactly to the full-batch loss.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")
KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_penalty(logprobs: jax.Array, ref_logprobs: jax.Array, estimator: str = "k3") -> jax.Array:
    """Per-token estimate of KL(pi || ref) from samples of pi, with d = ref - logprobs."""
    d = ref_logprobs - logprobs
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d * d
    if estimator == "k3":
        # expm1(d) - d loses ~2 eps / |d| relative accuracy to cancellation; near 0 (where the
        # policy hugs its reference) use the series d^2/2 (1 + d/3 + d^2/12 + d^3/60 + d^4/360).
        series = 0.5 * d * d * (1 + d / 3 * (1 + d / 4 * (1 + d / 5 * (1 + d / 6))))
        return jnp.where(jnp.abs(d) < 0.1, series, jnp.expm1(d) - d)
    raise ValueError(f"unknown kl_estimator {estimator!r}; use one of {KL_ESTIMATORS}")


def aggregate(per_token: jax.Array, mask: jax.Array, aggregation: str = "token_mean", *,
              max_tokens: int | None = None, total_rows: int | None = None,
              total_tokens: jax.Array | None = None) -> jax.Array:
    """Reduce a [B, T] per-token loss over `mask` (see the module docstring)."""
    mask = mask.astype(jnp.float32)
    masked = jnp.where(mask > 0, per_token, 0.0)
    rows = per_token.shape[0] if total_rows is None else total_rows
    if aggregation == "token_mean":
        tokens = jnp.sum(mask) if total_tokens is None else total_tokens
        return jnp.sum(masked) / jnp.maximum(tokens, 1.0)
    if aggregation == "seq_mean_token_mean":
        row = jnp.sum(masked, axis=1) / jnp.maximum(jnp.sum(mask, axis=1), 1.0)
        return jnp.sum(row) / rows
    if aggregation == "seq_mean_token_sum_norm":
        norm = per_token.shape[1] if max_tokens is None else max_tokens
        return jnp.sum(masked) / (rows * norm)
    raise ValueError(f"unknown aggregation {aggregation!r}; use one of {AGGREGATIONS}")


def _check_shapes(logprobs, old_logprobs, advantages, mask, **optional) -> None:
    if logprobs.ndim != 2:
        raise ValueError(f"policy_loss: logprobs must be [B, T], got shape {logprobs.shape}")
    named = dict(old_logprobs=old_logprobs, mask=mask, **optional)
    for name, x in named.items():
        if x is not None and x.shape != logprobs.shape:
            raise ValueError(f"policy_loss: {name} has shape {x.shape}, expected {logprobs.shape} "
                             "like logprobs")
    if advantages.shape not in (logprobs.shape[:1], logprobs.shape):
        raise ValueError(f"policy_loss: advantages has shape {advantages.shape}, expected "
                         f"{logprobs.shape[:1]} or {logprobs.shape}")


def policy_loss(logprobs, old_logprobs, advantages, mask, *, ref_logprobs=None, clip_low: float = 0.2,
                clip_high: float = 0.2, kl_coef: float = 0.0, kl_estimator: str = "k3",
                aggregation: str = "token_mean", max_tokens: int | None = None, entropy=None,
                entropy_coef: float = 0.0, sampler_logprobs=None, tis_cap: float | None = None,
                total_rows: int | None = None, total_tokens=None):
    """(loss, metrics) of the clipped policy-gradient objective; see the module docstring.

    logprobs, old_logprobs, ref_logprobs, sampler_logprobs, mask, entropy: [B, T];
    advantages: [B] or [B, T]. Metrics are means over the masked tokens, except the ratio
    min / max; `tokens` is the mask count they were taken over.
    """
    _check_shapes(logprobs, old_logprobs, advantages, mask, ref_logprobs=ref_logprobs, entropy=entropy,
                  sampler_logprobs=sampler_logprobs)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; use one of {AGGREGATIONS}")
    valid = mask.astype(bool)
    # Padding may hold anything (even -inf); zero it so neither the loss nor its gradient sees it.
    zero = lambda x: jnp.where(valid, x.astype(jnp.float32), 0.0)
    lp, old = zero(logprobs), zero(old_logprobs)
    adv = advantages.astype(jnp.float32)
    adv = jnp.broadcast_to(adv[:, None] if adv.ndim == 1 else adv, lp.shape)
    adv = jnp.where(valid, adv, 0.0)

    log_ratio = lp - old
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    surrogate = -jnp.minimum(ratio * adv, clipped * adv)
    per_token = surrogate
    metrics = {}
    if sampler_logprobs is not None and tis_cap is not None:
        raw_w = jnp.exp(old - zero(sampler_logprobs))
        weight = jax.lax.stop_gradient(jnp.minimum(raw_w, tis_cap))
        per_token = per_token * weight
        metrics["tis_weight"] = weight
        metrics["tis_capped_frac"] = (raw_w > tis_cap).astype(jnp.float32)
    kl = jnp.zeros_like(lp)
    if ref_logprobs is not None:
        kl = kl_penalty(lp, zero(ref_logprobs), kl_estimator)
        per_token = per_token + kl_coef * kl
    if entropy is not None:
        ent = zero(entropy)
        per_token = per_token - entropy_coef * ent
        metrics["entropy"] = ent
    loss = aggregate(per_token, mask, aggregation, max_tokens=max_tokens, total_rows=total_rows,
                     total_tokens=total_tokens)

    fmask = valid.astype(jnp.float32)
    n = jnp.sum(fmask)
    mean = lambda x: jnp.sum(jnp.where(valid, x, 0.0)) / jnp.maximum(n, 1.0)
    clip_hi = (adv > 0) & (ratio > 1.0 + clip_high)
    clip_lo = (adv < 0) & (ratio < 1.0 - clip_low)
    sg = jax.lax.stop_gradient
    big = jnp.finfo(jnp.float32).max
    out = {
        "clip_frac": mean((clip_hi | clip_lo).astype(jnp.float32)),
        "clip_frac_high": mean(clip_hi.astype(jnp.float32)),
        "clip_frac_low": mean(clip_lo.astype(jnp.float32)),
        "kl": mean(kl),
        "ratio_mean": mean(ratio),
        "ratio_min": jnp.min(jnp.where(valid, ratio, big)),
        "ratio_max": jnp.max(jnp.where(valid, ratio, -big)),
        "log_ratio_abs": mean(jnp.abs(log_ratio)),
        "advantage": mean(adv),
        "pg_loss": mean(surrogate),
        "tokens": n,
    }
    out.update({k: mean(v) for k, v in metrics.items()})
    return loss, jax.tree.map(sg, out)
