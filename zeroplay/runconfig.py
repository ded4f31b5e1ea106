"""The run config, parsed strictly into frozen dataclasses.

A config file (`configs/<name>.py`, `get_config(arg)` -> ConfigDict) has these sections:

    seed, steps                 top level; `--config.steps=N` sets the run length
    game                        `name` and the game's own settings (its `Settings` dataclass)
    roles                       role -> policy name (AZR: both roles -> "policy"), or
                                "<policy>@teacher" for a role sampled from the policy's EMA teacher
    policies.<name>.model       which model: the embedded name, an HF folder, or "random" + `shape`
    policies.<name>.train       the update (zeroplay.rl.PolicyConfig: lr, kl_coef, clip, ...)
    policies.<name>.sampling    max_new_tokens, temperature, top_p, top_k, max_prompt_tokens
    policies.<name>.teacher     optional EMA teacher (ema_start, ema_end, as_reference)
    loop                        checkpoint_every, keep_checkpoints, eval_every, sample_batch, ...
    verifiers                   worker counts and timeouts of the host pools
    mesh, rules                 device mesh shape and logical-axis rules (zeroplay.parallel)
    coldstart                   optional: a tokenizer and a supervised start trained before
                                self-play (zeroplay.coldstart); model.name "coldstart" loads it

Every section rejects an unknown or misspelled key with one line naming it. Values given once:
the schedule horizon of every policy (`train.total_steps`) is `steps` unless set.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

from zeroplay.coldstart import ColdStartSpec
from zeroplay.rl.optim import PolicyConfig


class ConfigError(ValueError):
    """A malformed run config; the message is one line naming the key."""


def _as_dict(x) -> dict:
    if x is None:
        return {}
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if not isinstance(x, Mapping):
        raise ConfigError(f"expected a section (mapping), got {type(x).__name__}")
    return dict(x)


def _strict(cls, d: Mapping, where: str):
    d = _as_dict(d)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {where}.{unknown[0]}; {where} takes {sorted(fields)}")
    kw = {}
    for k, v in d.items():
        if isinstance(v, list):
            v = tuple(v)
        kw[k] = v
    try:
        return cls(**kw)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str = "smollm2-135m-instruct"  # the embedded name, an HF folder, or "random"
    dtype: str = "float32"  # compute dtype; bfloat16 on accelerators
    param_dtype: str = "float32"
    scan_layers: bool = True
    remat: str = "none"
    # The architecture (zeroplay.models.ModelConfig fields): required for "random"; for a
    # checkpoint it documents the expected shape (checked at load, used by full-size validation).
    shape: Any = None
    tokenizer: str | None = None  # None: the checkpoint's own; "byte": a 258-token byte-level one

    def __post_init__(self):
        if self.name in ("random", "coldstart") and not self.shape:
            raise ValueError(f"model {self.name!r} needs model.shape (ModelConfig fields)")
        if self.shape is not None:
            object.__setattr__(self, "shape", dict(self.shape))


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_prompt_tokens: int = 2048  # longer prompts are cut from the left

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.max_prompt_tokens < 1:
            raise ValueError("max_new_tokens and max_prompt_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"bad sampling settings {self}")


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """An EMA teacher of the policy (Co-rewarding-II): theta_T <- (1 - a_k) theta_T + a_k theta,
    a_k cosine from ema_start at step 0 to ema_end at the last step, updated before the teacher
    samples, every step. A role mapped to "<policy>@teacher" samples with it and never trains."""
    ema_start: float = 0.01
    ema_end: float = 1e-5
    as_reference: bool = True  # the policy's KL term (kl_coef > 0) is taken to the teacher

    def __post_init__(self):
        if not (0 <= self.ema_end <= 1 and 0 <= self.ema_start <= 1):
            raise ValueError("ema_start and ema_end must lie in [0, 1]")


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    model: ModelSpec
    train: PolicyConfig
    sampling: SamplingSpec
    teacher: TeacherSpec | None = None


@dataclasses.dataclass(frozen=True)
class LoopSpec:
    checkpoint_every: int = 1  # steps between checkpoints (and always at the end / on a signal)
    keep_checkpoints: int = 2
    async_checkpoint: bool = True
    eval_every: int = 0  # steps between evaluations (also after the last step); 0: only before / after
    eval_benchmarks: tuple = ()  # zeroplay.eval names (gsm8k, rg:basic_arithmetic, ...); () : no evaluation
    eval_protocol: str = "default"  # zeroplay.evaluation protocol (default, azr, cpmobius, ttrl)
    eval_limit: int = 0  # items per benchmark; 0: all
    eval_max_new_tokens: int = 0  # 0: the protocol's
    eval_role: str = "solver"  # the role whose policy is evaluated
    eval_at_start: bool = True  # evaluate the initial policy too (a row with step 0)
    sample_batch: int = 64  # prompts per sampler call (rows = prompts x samples)
    continuous_batching: bool = False  # one call of sample_batch x samples rows, refilled as they end
    #                                    (zeroplay.sampling.continuous; one process: several sample chunks)
    train_row_multiple: int = 8  # train batches are padded to a multiple of this many rows
    train_len_multiple: int = 64  # ... and of this many tokens (fewer recompilations)
    train_row_growth: float = 0.0  # > 1: rows further rounded up to multiple * ceil(growth^k) (loop.row_bucket)
    drop_zero_advantage: bool = False  # zero-advantage episodes leave the batch (loop.train_policies)
    progress: bool = True  # the tqdm bar
    time_limit_s: float = 0  # > 0: stop after the step that ends past this many seconds of this
    #                          call's steps (evaluated and checkpointed like the last; rerun to go on)

    def __post_init__(self):
        if self.checkpoint_every < 1 or self.sample_batch < 1 or self.train_row_multiple < 1:
            raise ValueError("checkpoint_every, sample_batch and train_row_multiple must be >= 1")
        if self.train_row_growth and not self.train_row_growth > 1:
            raise ValueError(f"train_row_growth must be 0 (off) or > 1, got {self.train_row_growth}")


@dataclasses.dataclass(frozen=True)
class VerifierSpec:
    code_workers: int = 0  # sandbox workers (the process-wide pool); 0: two per core
    code_memory_mb: int = 1024  # address-space limit of each sandboxed program


@dataclasses.dataclass(frozen=True)
class RunConfig:
    seed: int
    steps: int
    game_name: str
    game: Any  # the game's Settings dataclass
    roles: Mapping[str, str]
    policies: Mapping[str, PolicySpec]
    loop: LoopSpec
    verifiers: VerifierSpec
    mesh: Mapping[str, int]
    rules: Any
    raw: Mapping[str, Any]  # the config as a dict, for the run folder
    coldstart: ColdStartSpec | None = None

    def policy_of(self, role: str) -> str:
        """The policy whose params (or EMA teacher, for "<policy>@teacher") the role samples with."""
        return self.roles[role].partition("@")[0]

    def fingerprint(self) -> str:
        """What a resumed run must share with the run in its folder: everything but the run
        length and the loop's bookkeeping (checkpoint and eval intervals, progress bar)."""
        d = {k: v for k, v in self.raw.items() if k not in ("steps", "loop")}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


_TOP = ("seed", "steps", "game", "roles", "policies", "loop", "verifiers", "mesh", "rules", "coldstart")


def parse(cfg) -> RunConfig:
    """A RunConfig from a ConfigDict or dict; ConfigError (one line) on any malformed key."""
    from zeroplay.games import game_module, parse_settings

    raw = _as_dict(cfg)
    unknown = sorted(set(raw) - set(_TOP))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; the sections are {list(_TOP)}")
    for key in ("steps", "game", "roles", "policies"):
        if key not in raw:
            raise ConfigError(f"the config has no {key!r}")
    steps = int(raw["steps"])
    if steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}")
    game_d = _as_dict(raw["game"])
    name = game_d.pop("name", None)
    if not name:
        raise ConfigError("game.name is missing")
    try:
        module = game_module(name)
        settings = parse_settings(name, game_d)
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    roles = {str(k): str(v) for k, v in _as_dict(raw["roles"]).items()}
    game_roles = tuple(module.make(settings).roles)
    if set(roles) != set(game_roles):
        raise ConfigError(f"roles must map exactly the game's roles {list(game_roles)}, got {sorted(roles)}")
    policies = {}
    for pname, p in _as_dict(raw["policies"]).items():
        p = _as_dict(p)
        extra = sorted(set(p) - {"model", "train", "sampling", "teacher"})
        if extra:
            raise ConfigError(f"unknown config key policies.{pname}.{extra[0]}; a policy has model, train, "
                              "sampling, teacher")
        train = _as_dict(p.get("train"))
        train.setdefault("total_steps", max(steps, 1))
        try:
            train_cfg = PolicyConfig.from_config(train)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"policies.{pname}.train: {str(e).splitlines()[0]}") from None
        policies[pname] = PolicySpec(model=_strict(ModelSpec, p.get("model"), f"policies.{pname}.model"),
                                     train=train_cfg,
                                     sampling=_strict(SamplingSpec, p.get("sampling"), f"policies.{pname}.sampling"),
                                     teacher=(_strict(TeacherSpec, p["teacher"], f"policies.{pname}.teacher")
                                              if p.get("teacher") is not None else None))
    targets = {v.split("@")[0] for v in roles.values()}
    missing = sorted(targets - set(policies))
    if missing:
        raise ConfigError(f"roles name policies {missing} that policies does not define")
    for role, v in roles.items():
        base, _, which = v.partition("@")
        if which and (which != "teacher" or policies[base].teacher is None):
            raise ConfigError(f"roles.{role}={v!r}: only '<policy>@teacher' of a policy with a teacher section")
    unused = sorted(set(policies) - targets)
    if unused:
        raise ConfigError(f"policies {unused} are used by no role")
    coldstart = _strict(ColdStartSpec, raw["coldstart"], "coldstart") if raw.get("coldstart") is not None else None
    wants = sorted(n for n, p in policies.items() if p.model.name == "coldstart")
    if wants and coldstart is None:
        raise ConfigError(f"policies {wants} load model 'coldstart' but the config has no coldstart section")
    mesh = {str(k): int(v) for k, v in _as_dict(raw.get("mesh") or {"data": 1, "fsdp": -1, "tensor": 1}).items()}
    return RunConfig(seed=int(raw.get("seed", 0)), steps=steps, game_name=name, game=settings, roles=roles,
                     policies=policies, loop=_strict(LoopSpec, raw.get("loop"), "loop"),
                     verifiers=_strict(VerifierSpec, raw.get("verifiers"), "verifiers"), mesh=mesh,
                     rules=raw.get("rules"), raw=raw, coldstart=coldstart)
