"""Policies: trainable state per policy, roles mapped onto policies, reference and EMA teacher.

A game names roles ("proposer", "solver"); `Policies` maps each role to a policy name, so two
roles may share one policy (AZR trains one model in both roles) or own one each (PasoDoble).
Each policy has its own `PolicyConfig` (learning rate, KL settings, ...) and `PolicyState`.
A frozen reference exists only for policies with kl_coef > 0. The EMA teacher of
Co-rewarding-II is a plain param tree updated with `ema_update(teacher, student, ema_rate(...))`.

`PolicyState` is a pytree of arrays only (params, optax state, step), so Orbax saves and
restores it as is.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import optax

from zeroplay.rl.optim import PolicyConfig, make_optimizer


@flax.struct.dataclass
class PolicyState:
    params: Any
    opt_state: Any
    step: jax.Array  # int32 scalar: updates applied
    skipped: jax.Array  # int32 scalar: steps skipped for a non-finite loss or gradient


def init_policy_state(params, optimizer: optax.GradientTransformation) -> PolicyState:
    """Fresh optimizer state for `params` (float32 master weights expected)."""
    return PolicyState(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32),
                       skipped=jnp.zeros((), jnp.int32))


@dataclasses.dataclass(frozen=True)
class Policies:
    """role -> policy name, and policy name -> PolicyConfig."""
    roles: Mapping[str, str]
    configs: Mapping[str, PolicyConfig]

    def __post_init__(self):
        missing = sorted(set(self.roles.values()) - set(self.configs))
        if missing:
            raise ValueError(f"roles map to policies {missing} that have no config")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Policies":
        """From {"roles": {role: policy}, "policies": {policy: {PolicyConfig keys}}}."""
        cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        configs = {name: PolicyConfig.from_config(c) for name, c in cfg["policies"].items()}
        return cls(roles=dict(cfg["roles"]), configs=configs)

    @classmethod
    def shared(cls, roles, config: PolicyConfig, name: str = "policy") -> "Policies":
        return cls(roles={r: name for r in roles}, configs={name: config})

    @property
    def names(self) -> tuple[str, ...]:
        """Policy names in first-role order (each once)."""
        return tuple(dict.fromkeys(self.roles.values()))

    def policy_of(self, role: str) -> str:
        if role not in self.roles:
            raise KeyError(f"unknown role {role!r}; roles are {sorted(self.roles)}")
        return self.roles[role]

    def roles_of(self, policy: str) -> tuple[str, ...]:
        return tuple(r for r, p in self.roles.items() if p == policy)

    def config(self, role_or_policy: str) -> PolicyConfig:
        name = self.roles.get(role_or_policy, role_or_policy)
        return self.configs[name]

    def needs_reference(self, policy: str) -> bool:
        return self.configs[policy].needs_reference


def init_policies(policies: Policies, params: Mapping[str, Any]):
    """(states, references): a PolicyState per policy, and a frozen copy of the initial params for
    each policy with kl_coef > 0 (the others get none, so no reference forward ever runs)."""
    states, refs = {}, {}
    for name in policies.names:
        p = params[name]
        states[name] = init_policy_state(p, make_optimizer(policies.configs[name]))
        if policies.needs_reference(name):
            refs[name] = jax.tree.map(jnp.copy, p)
    return states, refs


def ema_rate(k, total_steps: int, a_start: float, a_end: float):
    """Cosine-scheduled EMA rate: a_k = a_end + (a_start - a_end) (1 + cos(pi k / K)) / 2."""
    frac = jnp.clip(jnp.asarray(k, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
    return a_end + 0.5 * (a_start - a_end) * (1.0 + jnp.cos(math.pi * frac))


@jax.jit
def ema_update(teacher, student, rate):
    """theta_T <- (1 - rate) theta_T + rate theta_pi, leaf by leaf, in the teacher's dtype."""
    return jax.tree.map(lambda t, s: ((1.0 - rate) * t.astype(jnp.float32)
                                      + rate * s.astype(jnp.float32)).astype(t.dtype), teacher, student)


def concat_batches(batches):
    """One batch from several roles' batches (same T) for a policy they share."""
    keys = set(batches[0])
    for b in batches[1:]:
        if set(b) != keys:
            raise ValueError(f"batches have different keys: {sorted(keys)} vs {sorted(b)}")
    return {k: jnp.concatenate([jnp.asarray(b[k]) for b in batches], axis=0) for k in batches[0]}
