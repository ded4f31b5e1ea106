"""policy_loss against an independent NumPy implementation of the contract, and its gradient."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zeroplay.rl.losses import policy_loss

ATOL = 1e-6


def np_policy_loss(lp, old, adv, mask, ref=None, clip_low=0.2, clip_high=0.2, kl_coef=0.0, est="k3",
                   agg="token_mean", max_tokens=None, ent=None, ent_coef=0.0):
    lp, old, mask = (np.asarray(x, np.float64) for x in (lp, old, mask))
    b, t = lp.shape
    a = np.asarray(adv, np.float64)
    a = a[:, None] * np.ones((1, t)) if a.ndim == 1 else a
    r = np.exp(lp - old)
    s = -np.minimum(r * a, np.clip(r, 1 - clip_low, 1 + clip_high) * a)
    per_tok = s.copy()
    if ref is not None:
        d = np.asarray(ref, np.float64) - lp
        kl = {"k1": -d, "k2": d ** 2 / 2, "k3": np.exp(d) - d - 1}[est]
        per_tok = per_tok + kl_coef * kl
    if ent is not None:
        per_tok = per_tok - ent_coef * np.asarray(ent, np.float64)
    if agg == "token_mean":
        return (per_tok * mask).sum() / max(mask.sum(), 1)
    if agg == "seq_mean_token_mean":
        return sum((per_tok[i] * mask[i]).sum() / max(mask[i].sum(), 1) for i in range(b)) / b
    return (per_tok * mask).sum() / (b * (t if max_tokens is None else max_tokens))


def make_inputs(seed=0, b=5, t=7):
    rng = np.random.default_rng(seed)
    old = rng.normal(-2.0, 1.0, (b, t)).astype(np.float32)
    lp = (old + rng.normal(0, 0.3, (b, t))).astype(np.float32)  # ratios well beyond the clip range
    ref = (old + rng.normal(0, 0.5, (b, t))).astype(np.float32)
    mask = (rng.random((b, t)) < 0.7).astype(np.float32)
    mask[2] = 0.0  # an empty row: contributes zero, still counts in B
    ent = rng.uniform(0, 3, (b, t)).astype(np.float32)
    return lp, old, ref, mask, ent, rng


CASES = list(itertools.product(["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"],
                               ["k1", "k2", "k3"], ["row", "token"], [False, True]))


@pytest.mark.parametrize("agg,est,adv_kind,use_ent", CASES)
def test_matches_numpy(agg, est, adv_kind, use_ent):
    lp, old, ref, mask, ent, rng = make_inputs()
    adv = rng.normal(size=(5,) if adv_kind == "row" else (5, 7)).astype(np.float32)
    kw = dict(clip_low=0.2, clip_high=0.28, kl_coef=0.1)
    ent_kw = dict(entropy=ent, entropy_coef=-0.05) if use_ent else {}
    loss, metrics = policy_loss(lp, old, adv, mask, ref_logprobs=ref, kl_estimator=est, aggregation=agg,
                                **kw, **ent_kw)
    want = np_policy_loss(lp, old, adv, mask, ref, 0.2, 0.28, 0.1, est, agg,
                          ent=ent if use_ent else None, ent_coef=-0.05)
    np.testing.assert_allclose(float(loss), want, rtol=0, atol=ATOL)
    assert np.isfinite(float(loss))
    assert {"clip_frac", "kl", "ratio_mean"} <= set(metrics)


def test_metrics_match_numpy():
    lp, old, ref, mask, ent, rng = make_inputs(1)
    adv = rng.normal(size=5).astype(np.float32)
    _, m = policy_loss(lp, old, adv, mask, ref_logprobs=ref, kl_estimator="k2", clip_low=0.1,
                       clip_high=0.3, entropy=ent)
    sel = mask > 0
    r = np.exp(lp.astype(np.float64) - old)
    a = np.broadcast_to(adv[:, None], lp.shape)
    clipped = ((a > 0) & (r > 1.3)) | ((a < 0) & (r < 0.9))
    np.testing.assert_allclose(float(m["clip_frac"]), clipped[sel].mean(), atol=ATOL)
    np.testing.assert_allclose(float(m["ratio_mean"]), r[sel].mean(), rtol=1e-6)
    np.testing.assert_allclose(float(m["ratio_max"]), r[sel].max(), rtol=1e-6)
    np.testing.assert_allclose(float(m["ratio_min"]), r[sel].min(), rtol=1e-6)
    np.testing.assert_allclose(float(m["kl"]), (0.5 * (ref - lp.astype(np.float64)) ** 2)[sel].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m["entropy"]), ent[sel].mean(), rtol=1e-6)


def test_no_reference_means_no_kl_and_max_tokens():
    lp, old, ref, mask, ent, rng = make_inputs(2)
    adv = rng.normal(size=5).astype(np.float32)
    loss, m = policy_loss(lp, old, adv, mask, kl_coef=1.0, aggregation="seq_mean_token_sum_norm",
                          max_tokens=11)
    want = np_policy_loss(lp, old, adv, mask, agg="seq_mean_token_sum_norm", max_tokens=11)
    np.testing.assert_allclose(float(loss), want, atol=ATOL)
    assert float(m["kl"]) == 0.0


def test_padding_garbage_never_leaks():
    """-inf / nan in masked positions (pad logprobs) give a finite loss and finite gradients."""
    lp, old, ref, mask, ent, rng = make_inputs(3)
    adv = rng.normal(size=5).astype(np.float32)
    want = np_policy_loss(lp, old, adv, mask, ref, kl_coef=0.1)
    lp_bad, old_bad = lp.copy(), old.copy()
    lp_bad[mask == 0] = -np.inf
    old_bad[mask == 0] = np.nan
    f = lambda x: policy_loss(x, old_bad, adv, mask, ref_logprobs=ref, kl_coef=0.1)[0]
    loss, g = jax.value_and_grad(f)(jnp.asarray(lp_bad))
    np.testing.assert_allclose(float(loss), want, atol=ATOL)
    assert np.all(np.isfinite(np.asarray(g)))
    assert np.all(np.asarray(g)[mask == 0] == 0)
    empty = policy_loss(lp, old, adv, np.zeros_like(mask), aggregation="seq_mean_token_mean")[0]
    assert float(empty) == 0.0


def test_gradient_of_clipped_surrogate_is_analytic():
    """d loss / d logprob = -A r / N inside the trust region (or on its improving side), else 0."""
    lp, old, _, mask, _, rng = make_inputs(4)
    adv = rng.normal(size=(5, 7)).astype(np.float32)
    cl, ch = 0.2, 0.28
    g = np.asarray(jax.grad(lambda x: policy_loss(x, old, adv, mask, clip_low=cl, clip_high=ch)[0])(
        jnp.asarray(lp)))
    r = np.exp(lp.astype(np.float64) - old)
    active = ~(((adv > 0) & (r > 1 + ch)) | ((adv < 0) & (r < 1 - cl)))
    want = np.where(active & (mask > 0), -adv * r / mask.sum(), 0.0)
    assert 0 < (~active & (mask > 0)).sum() < (mask > 0).sum()  # both branches exercised
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-7)


def test_gradient_finite_differences_all_terms():
    lp, old, ref, mask, ent, rng = make_inputs(5, b=3, t=4)
    adv = rng.normal(size=3)
    lp64 = lp.astype(np.float64)
    f_np = lambda x: np_policy_loss(x, old, adv, mask, ref, 0.2, 0.28, 0.3, "k3", "seq_mean_token_mean")
    g = np.asarray(jax.grad(lambda x: policy_loss(x, old, adv, mask, ref_logprobs=ref, clip_low=0.2, clip_high=0.28,
                                                  kl_coef=0.3, aggregation="seq_mean_token_mean")[0])(
        jnp.asarray(lp)))
    h = 1e-6
    fd = np.zeros_like(lp64)
    for idx in np.ndindex(lp.shape):
        e = np.zeros_like(lp64)
        e[idx] = h
        fd[idx] = (f_np(lp64 + e) - f_np(lp64 - e)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-5)


def test_truncated_importance_sampling():
    lp, old, _, mask, _, rng = make_inputs(6)
    adv = rng.normal(size=5).astype(np.float32)
    sampler = (old + rng.normal(0, 0.5, old.shape)).astype(np.float32)
    loss, m = policy_loss(lp, old, adv, mask, sampler_logprobs=sampler, tis_cap=1.5)
    w = np.minimum(np.exp(old.astype(np.float64) - sampler), 1.5)
    r = np.exp(lp.astype(np.float64) - old)
    a = adv[:, None]
    s = -np.minimum(r * a, np.clip(r, 0.8, 1.2) * a) * w
    np.testing.assert_allclose(float(loss), (s * mask).sum() / mask.sum(), atol=ATOL)
    assert 0 < float(m["tis_capped_frac"]) < 1


def test_shape_errors_are_clear():
    lp = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(lp, lp, jnp.zeros((3,)), lp)
    with pytest.raises(ValueError, match="mask"):
        policy_loss(lp, lp, jnp.zeros((2,)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="aggregation"):
        policy_loss(lp, lp, jnp.zeros((2,)), lp, aggregation="sum")
    with pytest.raises(ValueError, match="kl_estimator"):
        policy_loss(lp, lp, jnp.zeros((2,)), lp, ref_logprobs=lp, kl_estimator="k4")


def test_k3_is_accurate_near_zero():
    """k3 = exp(d) - d - 1 without float32 cancellation for the tiny d of a policy near its ref."""
    from zeroplay.rl.losses import kl_penalty
    d = np.array([1e-5, -3e-4, 2e-3, -0.05, 0.0999, 0.1, 0.7, -3.0], np.float32)
    d64 = d.astype(np.float64)
    want = np.expm1(d64) - d64
    got = np.asarray(kl_penalty(jnp.zeros_like(d), jnp.asarray(d), "k3"), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5)
