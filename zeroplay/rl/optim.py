"""Policy configuration and its optax optimizer (AdamW, global-norm clipping, LR schedules).

`PolicyConfig` holds everything one policy's update needs: optimizer and schedule, the loss
settings (clipping, KL, entropy, aggregation, TIS) and execution (micro-batch, compute dtype,
logprob chunking). `PolicyConfig.from_config(cd)` reads a ConfigDict / dict, ignoring no key
silently: an unknown key is an error.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import optax

SCHEDULES = ("constant", "warmup_constant", "cosine", "linear")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    # Optimizer.
    lr: float = 1e-6
    schedule: str = "constant"  # constant | warmup_constant | cosine | linear
    warmup_steps: int = 0
    total_steps: int = 1000  # decay horizon of cosine / linear
    end_lr_ratio: float = 0.0  # final lr / peak lr for cosine / linear
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # global norm; <= 0 disables
    # Loss.
    clip_low: float = 0.2
    clip_high: float = 0.2
    kl_coef: float = 0.0  # > 0 needs a frozen reference policy
    kl_estimator: str = "k3"
    aggregation: str = "token_mean"
    max_tokens: int | None = None  # Dr. GRPO normaliser (default: sequence length)
    entropy_coef: float = 0.0  # < 0 minimises entropy
    tis_cap: float | None = None  # truncated importance sampling against sampler logprobs
    # Execution.
    micro_batch: int | None = None  # rows per gradient-accumulation micro-batch
    compute_dtype: str | None = None  # "bfloat16" | "float32"; None keeps the model's dtype
    logprob_chunk: int | None = None  # sequence chunk for the LM head; None = full logits

    @property
    def needs_reference(self) -> bool:
        return self.kl_coef > 0

    def replace(self, **kw) -> "PolicyConfig":
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None = None, **overrides) -> "PolicyConfig":
        d = dict(cfg.to_dict() if hasattr(cfg, "to_dict") else (cfg or {}))
        d.update(overrides)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown policy config keys {unknown}; known: {sorted(names)}")
        return cls(**d)


def make_schedule(cfg: PolicyConfig) -> optax.Schedule:
    end = cfg.lr * cfg.end_lr_ratio
    warm = max(cfg.warmup_steps, 0)
    if cfg.schedule == "constant":
        return optax.constant_schedule(cfg.lr)
    if cfg.schedule == "warmup_constant":
        return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, max(warm, 1)),
                                     optax.constant_schedule(cfg.lr)], [warm])
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0 if warm else cfg.lr, cfg.lr, warm,
                                                  max(cfg.total_steps, warm + 1), end)
    if cfg.schedule == "linear":
        return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, max(warm, 1)),
                                     optax.linear_schedule(cfg.lr, end, max(cfg.total_steps - warm, 1))],
                                    [warm])
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use one of {SCHEDULES}")


def make_optimizer(cfg: PolicyConfig) -> optax.GradientTransformation:
    """AdamW on float32 master weights, after global-norm clipping."""
    parts = []
    if cfg.grad_clip and cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts.append(optax.adamw(make_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay))
    return optax.chain(*parts)
