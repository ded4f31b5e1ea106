"""Advantage estimators and band filters against NumPy, group by group."""
import jax
import numpy as np
import pytest

from zeroplay.rl import advantages as A

RTOL, ATOL = 1e-5, 1e-6


def groups():
    rng = np.random.default_rng(0)
    gid = np.array([7, 7, 7, 7, 3, 3, 3, 9, 5, 5, 5, 5, 5, 7], np.int32)  # 9 is a singleton
    rewards = rng.normal(size=gid.shape).astype(np.float32)
    rewards[8:13] = 1.0  # a constant group: zero advantage, no NaN
    return rewards, gid


def np_ref(rewards, gid, kind, eps=1e-6, ddof=1):
    out = np.zeros_like(rewards, dtype=np.float64)
    for g in np.unique(gid):
        idx = np.where(gid == g)[0]
        r = rewards[idx].astype(np.float64)
        n = len(idx)
        if n == 1:
            out[idx] = r
        elif kind == "grpo":
            out[idx] = (r - r.mean()) / (r.std(ddof=ddof) + eps)
        elif kind == "dr_grpo":
            out[idx] = r - r.mean()
        elif kind == "rloo":
            out[idx] = [r[i] - np.delete(r, i).mean() for i in range(n)]
    return out


@pytest.mark.parametrize("kind", ["grpo", "dr_grpo", "rloo"])
def test_group_estimators(kind):
    rewards, gid = groups()
    got = np.asarray(A.compute(kind, rewards, gid))
    np.testing.assert_allclose(got, np_ref(rewards, gid, kind), rtol=RTOL, atol=ATOL)
    assert np.all(got[8:13] == 0)


@pytest.mark.parametrize("ddof,eps", [(0, 1e-6), (1, 1e-4)])
def test_grpo_std_convention_and_eps(ddof, eps):
    rewards, gid = groups()
    got = np.asarray(jax.jit(lambda r, g: A.grpo(r, g, eps=eps, ddof=ddof))(rewards, gid))
    np.testing.assert_allclose(got, np_ref(rewards, gid, "grpo", eps, ddof), rtol=RTOL, atol=ATOL)


def test_task_relative_reinforce_pp_buckets():
    """AZR: one whitening bucket per (task type, role)."""
    rng = np.random.default_rng(1)
    task = rng.integers(0, 3, 40)
    role = rng.integers(0, 2, 40)
    rewards = rng.normal(size=40).astype(np.float32)
    got = np.asarray(A.reinforce_pp(rewards, A.bucket_ids(task, role)))
    want = np.zeros(40)
    for t in range(3):
        for r in range(2):
            idx = (task == t) & (role == r)
            x = rewards[idx].astype(np.float64)
            want[idx] = x if idx.sum() == 1 else (x - x.mean()) / (x.std() + 1e-6)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    assert len(np.unique(np.asarray(A.bucket_ids(task, role)))) == len(set(zip(task, role)))


def test_band_filter():
    gid = np.repeat(np.arange(4), 4)
    rewards = np.array([0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1], np.float32)
    np.testing.assert_allclose(np.asarray(A.solve_rate(rewards, gid)), np.repeat([0, .25, .5, 1], 4))
    dapo = np.asarray(A.band_filter(rewards, gid, 0.0, 1.0, inclusive=False))  # drop all-0 / all-1
    np.testing.assert_array_equal(dapo, np.repeat([False, True, True, False], 4))
    band = np.asarray(A.band_filter(rewards, gid, 0.25, 0.5))
    np.testing.assert_array_equal(band, np.repeat([False, True, True, False], 4))
    narrow = np.asarray(A.band_filter(rewards, gid, 0.3, 0.7))
    np.testing.assert_array_equal(narrow, np.repeat([False, False, True, False], 4))


def test_errors():
    with pytest.raises(ValueError, match="estimator"):
        A.compute("ppo", np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"\[N\]"):
        A.grpo(np.zeros((2, 3)), np.zeros((2, 3)))


def test_token_weighted_trr_pp_matches_numpy_masked_whitening():
    """AZR's TRR++: within each (task, role) bucket, veRL's masked whitening over every response
    token (the reward repeated on each of a response's tokens): mean and variance weighted by length."""
    rng = np.random.default_rng(3)
    rewards = rng.choice([-1.0, -0.5, 0.25, 1.0], size=24)
    buckets = rng.integers(0, 6, size=24)
    lengths = rng.integers(1, 40, size=24).astype(np.float64)
    got = np.asarray(A.reinforce_pp(rewards, buckets, weights=lengths, eps=1e-8))
    want = np.zeros(24)
    for b in np.unique(buckets):
        idx = buckets == b
        tokens = np.repeat(rewards[idx], lengths[idx].astype(int))  # one value per response token
        want[idx] = (rewards[idx] - tokens.mean()) / np.sqrt(tokens.var() + 1e-8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Equal lengths: the unweighted REINFORCE++ whitening (ddof 0).
    same = np.asarray(A.reinforce_pp(rewards, buckets, weights=np.full(24, 7.0), eps=1e-8))
    np.testing.assert_allclose(same, np.asarray(A.reinforce_pp(rewards, buckets, eps=0.0)), rtol=1e-4, atol=1e-4)
