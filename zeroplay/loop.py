"""The self-play loop: one host-side Python loop that runs any game (`zeroplay/games`).

Read top to bottom, one step is:

    for phase in game.phases(state, step):
        requests = game.requests(phase, state, ctx)                      # prompts, per role
        rollouts = sample each role's requests with its policy's live params (no copy)
        state, episodes, metrics = game.score(phase, requests, rollouts, state, ctx)
                                   # verify in the host pools, rewards, nested samples
    episodes = game.filter(episodes)
    for each policy whose roles game.trains(step, state):
        advantages = game.estimator within each bucket (zeroplay.rl.advantages)
        policy state = one jitted train step (micro-batches, reference KL where configured)
    state, actions = game.after_step(state, step, metrics, ctx)   # may sample the updated policies
    apply the actions (snapshot / rollback)
    metrics.jsonl row, checkpoint (policies, references, game state, host RNG), evaluation hook

Runs resume by themselves from the latest checkpoint in the workdir (`run`); SIGINT / SIGTERM
finish the step in flight, save and return; a SIGKILL loses at most the steps since the last
checkpoint. Randomness: the sampler's key is a function of (seed, step, call), the host's
numpy Generator is checkpointed, so a resumed run repeats an uninterrupted one exactly.

Multi-host (`jax.distributed`, e.g. `python -m zeroplay.launch_local`): the mesh spans every
process's devices and every process runs this same loop in lockstep, with the same seed, host RNG
and game state. Each sampler call is split by chunks over the processes (each samples its own on
its local devices) and the completions gathered (`zeroplay.rollouts.Sampler`); each process verifies the gathered
completions and process 0's scored state, episodes and RNG are broadcast (`_same_everywhere`);
the train batch is built identically everywhere and each process places its rows; Orbax writes
the checkpoints collectively; metrics.jsonl, config.json and the progress bar come from process
0, every row carrying `num_processes`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from collections import defaultdict
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zeroplay.checkpoint import Checkpointer, abstract_like, trim_jsonl
from zeroplay.games import Completion, Context, Episode, Request, Sampling, make_game
from zeroplay.games.base import Game
from zeroplay.metrics_writer import MetricsWriter
from zeroplay.parallel.multihost import any_process, broadcast_object, is_multihost
from zeroplay.parallel.placement import batch_divisor
from zeroplay.rl import advantages as adv_lib
from zeroplay.rl.train_step import create_state, make_train_step
from zeroplay.rollouts import Sampler, StageTimer
from zeroplay.runconfig import ConfigError, RunConfig


class RunFolderError(ValueError):
    """The workdir holds a run this config cannot continue (one line)."""


# -- policies -----------------------------------------------------------------------------------

@dataclasses.dataclass
class PolicyRuntime:
    """One trained policy: its model, live state (params + optimizer), frozen reference."""
    name: str
    model: Any  # zeroplay.models.Decoder
    state: Any  # zeroplay.rl.PolicyState
    reference: Any  # params or None (kl_coef == 0, or the KL is taken to the teacher)
    train_step: Callable
    spec: Any  # runconfig.PolicySpec
    teacher: Any = None  # EMA teacher params (policies.<name>.teacher), or None
    snapshot: Any = None  # a kept copy of `state` (Game.after_step "snapshot"), or None

    @property
    def ref_params(self):
        if self.spec.train.needs_reference:
            return self.teacher if self.spec.teacher is not None and self.spec.teacher.as_reference else self.reference
        return None


def _load_model(spec, seed: int, mesh, rules):
    from zeroplay.models import ModelConfig, init_params
    from zeroplay.parallel.placement import load_sharded, model_param_shardings

    m = spec.model
    if m.name == "random":
        mcfg = ModelConfig(**m.shape, dtype=jnp.dtype(m.dtype), param_dtype=jnp.dtype(m.param_dtype),
                           scan_layers=m.scan_layers, remat=m.remat)
        model, params = init_params(mcfg, jax.random.PRNGKey(seed))
        return model, jax.device_put(params, model_param_shardings(params, mcfg, mesh, rules))
    model, params = load_sharded(m.name, mesh, rules, dtype=jnp.dtype(m.dtype),
                                 param_dtype=jnp.dtype(m.param_dtype), scan_layers=m.scan_layers, remat=m.remat)
    if m.shape:
        wrong = {k: (v, getattr(model.cfg, k)) for k, v in m.shape.items() if getattr(model.cfg, k, v) != v}
        if wrong:
            raise ConfigError(f"model {m.name} does not have the configured shape: {wrong} (configured, loaded)")
    return model, params


def load_tokenizer_for(spec):
    if spec.model.tokenizer == "byte":
        from zeroplay.models.byte_tokenizer import byte_tokenizer

        return byte_tokenizer()
    if spec.model.name == "random":
        raise ConfigError("a random model needs model.tokenizer='byte'")
    from zeroplay.models import load_tokenizer

    return load_tokenizer(spec.model.tokenizer or spec.model.name)


def run_mesh(cfg: RunConfig):
    """The config's mesh; a fully specified mesh smaller than the process's devices takes the first
    ones (e.g. `mesh.fsdp=1` under 8 simulated CPU devices)."""
    from zeroplay.parallel import mesh_from_config

    sizes = [int(v) for v in cfg.mesh.values()]
    if -1 not in sizes and math.prod(sizes) < jax.device_count() and jax.process_count() == 1:
        return mesh_from_config(dict(cfg.mesh), devices=jax.devices()[:math.prod(sizes)])
    return mesh_from_config(dict(cfg.mesh))


def build_policies(cfg: RunConfig, mesh) -> dict[str, PolicyRuntime]:
    out = {}
    for i, (name, spec) in enumerate(cfg.policies.items()):
        model, params = _load_model(spec, cfg.seed + i, mesh, cfg.rules)
        state = create_state(params, spec.train, model.cfg, mesh, cfg.rules)
        teacher = jax.tree.map(jnp.copy, state.params) if spec.teacher is not None else None
        as_ref = spec.teacher is not None and spec.teacher.as_reference
        reference = params if spec.train.needs_reference and not as_ref else None
        del params
        step = make_train_step(model, spec.train, mesh=mesh if mesh.size > 1 else None, rules=cfg.rules)
        out[name] = PolicyRuntime(name, model, state, reference, step, spec, teacher)
    return out


# -- training batches ---------------------------------------------------------------------------

def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def row_bucket(n: int, multiple: int, growth: float = 0.0) -> int:
    """The rows of a train batch of `n` episodes: `n` rounded up to a multiple of `multiple`
    and, when growth > 1, further up to the first `multiple * ceil(growth**k)` multiple. Batches
    whose size varies step to step (rows dropped, proposals rejected) then compile a few shapes
    (growth sqrt(2): 8, 16, 24, 32, 48, 64, 96, 128, 184, ...; at most 41% padding rows) instead
    of one per multiple; on the arith world each new shape cost 3-9 s of compilation."""
    b = _round_up(n, multiple)
    if growth > 1:
        k = 0
        while math.ceil(growth ** k - 1e-9) * multiple < b:  # -1e-9: sqrt(2)**2 is 2.0000000000000004
            k += 1
        b = math.ceil(growth ** k - 1e-9) * multiple
    return b


def build_batch(episodes: Sequence[Episode], advantages: np.ndarray, *, pad_id: int, row_multiple: int,
                len_multiple: int, max_len: int | None = None, row_growth: float = 0.0) -> dict[str, np.ndarray]:
    """The train step's batch: prompts left-padded to a common length, completions after them,
    rows and length padded to static sizes (`row_bucket`; padding rows have row_mask 0 and no loss)."""
    p_len = max(len(e.prompt) for e in episodes)
    c_len = max(len(e.completion.tokens) for e in episodes)
    t = _round_up(p_len + c_len, len_multiple)
    if max_len is not None:
        t = max(min(t, max_len), p_len + c_len)
    b = row_bucket(len(episodes), row_multiple, row_growth)
    tokens = np.full((b, t), pad_id, np.int32)
    attn = np.zeros((b, t), np.int32)
    loss_mask = np.zeros((b, t), np.float32)
    sampler_lp = np.zeros((b, t), np.float32)
    adv = np.zeros((b,), np.float32)
    row_mask = np.zeros((b,), np.float32)
    for i, (e, a) in enumerate(zip(episodes, advantages)):
        p, c = e.prompt, e.completion.tokens
        tokens[i, p_len - len(p):p_len] = p
        tokens[i, p_len:p_len + len(c)] = c
        attn[i, p_len - len(p):p_len + len(c)] = 1
        loss_mask[i, p_len:p_len + len(c)] = 1.0
        sampler_lp[i, p_len:p_len + len(c)] = e.completion.logprobs
        adv[i], row_mask[i] = a, 1.0
    positions = np.maximum(np.cumsum(attn, axis=1) - 1, 0).astype(np.int32)
    return {"tokens": tokens, "positions": positions, "attention_mask": attn, "loss_mask": loss_mask,
            "sampler_logprobs": sampler_lp, "advantages": adv, "row_mask": row_mask}


def compute_advantages(game: Game, episodes: Sequence[Episode]) -> np.ndarray:
    """The game's estimator within each bucket, over the episodes of one update."""
    names = {b: i for i, b in enumerate(dict.fromkeys(e.bucket for e in episodes))}
    rewards = jnp.asarray([e.reward for e in episodes], jnp.float32)
    buckets = jnp.asarray([names[e.bucket] for e in episodes], jnp.int32)
    kw = dict(game.estimator_kwargs)
    if kw.pop("token_weighted", False):
        kw["weights"] = jnp.asarray([len(e.completion.tokens) for e in episodes], jnp.float32)
    return np.asarray(adv_lib.compute(game.estimator, rewards, buckets, **kw), np.float32)


def _floats(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        v = np.asarray(v)
        if v.size == 1:
            out[prefix + k] = float(v)
    return out


# |advantage| at or below this is zero: a group of equal rewards gives exactly 0, or a float32
# rounding of it (mean of [0.1] * 8 - 0.1 is ~1e-8).
ZERO_ADVANTAGE = 1e-6


def train_policies(game: Game, policies: dict[str, PolicyRuntime], cfg: RunConfig, episodes: list[Episode],
                   step: int, pad_id: int, timer: StageTimer, mesh, state: Mapping) -> dict[str, float]:
    """One update per policy whose roles `game.trains(step, state)` names (state: the game state
    after this step's scoring).

    `loop.drop_zero_advantage`: the episodes whose advantage is zero leave the batch of a policy
    with no KL or entropy term. Their policy-gradient term is zero, so the gradient keeps its
    direction; a token-mean loss divides by fewer tokens, so its norm grows by all / kept tokens,
    which Adam's normalisation and the global-norm clip mostly absorb (DAPO's dynamic sampling
    drops the same groups). The step then costs the informative rows only."""
    metrics: dict[str, float] = {}
    training = set(game.trains(step, state))
    for name, pol in policies.items():
        roles = [r for r, p in cfg.roles.items() if p == name and r in training]
        eps = [e for e in episodes if e.role in roles]
        metrics[f"{name}/trained"] = 0.0
        if not roles:
            continue
        if not eps:  # everything filtered: logged, never a crash
            metrics[f"{name}/no_trainable_episodes"] = 1.0
            continue
        advantages = compute_advantages(game, eps)
        if cfg.loop.drop_zero_advantage and not (pol.spec.train.kl_coef or pol.spec.train.entropy_coef):
            keep = np.flatnonzero(np.abs(advantages) > ZERO_ADVANTAGE)
            metrics[f"{name}/rows_dropped"] = float(len(eps) - len(keep))
            if not len(keep):
                metrics[f"{name}/no_trainable_episodes"] = 1.0
                continue
            eps, advantages = [eps[i] for i in keep], advantages[keep]
        rows = math.lcm(cfg.loop.train_row_multiple, batch_divisor(mesh, cfg.rules),
                        pol.spec.train.micro_batch or 1)
        batch = build_batch(eps, advantages, pad_id=pad_id, row_multiple=rows,
                            len_multiple=cfg.loop.train_len_multiple, row_growth=cfg.loop.train_row_growth)
        if pol.spec.train.tis_cap is None:
            batch.pop("sampler_logprobs")
        if is_multihost():  # the same global batch on every process: each places its own rows
            sh = pol.train_step.batch_sharding
            batch = {k: jax.make_array_from_process_local_data(sh, v, v.shape) for k, v in batch.items()}
        with timer(f"train/{name}"):
            if pol.ref_params is not None:
                pol.state, m = pol.train_step(pol.state, batch, pol.ref_params)
            else:
                pol.state, m = pol.train_step(pol.state, batch)
            m = jax.device_get(m)
        metrics.update(_floats(m, f"{name}/"))
        metrics[f"{name}/trained"] = 1.0
        metrics[f"{name}/advantage_abs_mean"] = float(np.mean(np.abs(advantages)))
    return metrics


def role_metrics(episodes: Sequence[Episode], roles: Sequence[str]) -> dict[str, float]:
    """Per role: reward mean, response length, and the sampled tokens' mean negative logprob (a
    Monte Carlo estimate of the per-token entropy when sampling at temperature 1)."""
    out = {}
    for role in roles:
        eps = [e for e in episodes if e.role == role]
        out[f"{role}/episodes"] = float(len(eps))
        if not eps:
            continue
        out[f"{role}/reward_mean"] = float(np.mean([e.reward for e in eps]))
        out[f"{role}/response_length"] = float(np.mean([len(e.completion.tokens) for e in eps]))
        lp = np.concatenate([e.completion.logprobs for e in eps])
        out[f"{role}/entropy"] = float(-lp.mean()) if lp.size else 0.0
        out[f"{role}/truncated_rate"] = float(np.mean([not e.completion.finished for e in eps]))
    return out


def apply_actions(actions: dict, policies: dict[str, PolicyRuntime], cfg: RunConfig) -> dict[str, float]:
    """A game's after-step actions: "snapshot" copies the roles' policy states, "rollback" puts
    them back (a rollback with no snapshot is a no-op, reported in the metrics)."""
    out = {}
    unknown = sorted(set(actions) - {"snapshot", "rollback"})
    if unknown:
        raise ValueError(f"unknown game actions {unknown}; use 'snapshot' or 'rollback'")
    for role in actions.get("snapshot", ()):
        p = policies[cfg.policy_of(role)]
        p.snapshot = jax.tree.map(jnp.copy, p.state)
        out[f"{p.name}/snapshot"] = 1.0
    for role in actions.get("rollback", ()):
        p = policies[cfg.policy_of(role)]
        out[f"{p.name}/rollback"] = float(p.snapshot is not None)
        if p.snapshot is not None:
            p.state = jax.tree.map(jnp.copy, p.snapshot)  # the train step donates the state
    return out


def update_teachers(policies: dict[str, PolicyRuntime], step: int, total_steps: int) -> dict[str, float]:
    """The EMA teachers, before they sample at `step` (1-based): rate a_{step-1} of the cosine
    schedule (zeroplay.rl.ema_rate) over the run's `steps`, from ema_start at the first step."""
    from zeroplay.rl import ema_rate, ema_update

    out = {}
    for name, p in policies.items():
        if p.teacher is None:
            continue
        rate = ema_rate(step - 1, total_steps, p.spec.teacher.ema_start, p.spec.teacher.ema_end)
        p.teacher = ema_update(p.teacher, p.state.params, rate)
        out[f"{name}/ema_rate"] = float(rate)
    return out


# -- checkpoints --------------------------------------------------------------------------------

def _trees(policies: dict[str, PolicyRuntime]) -> dict[str, Any]:
    trees = {f"policy/{n}": p.state for n, p in policies.items()}
    trees.update({f"reference/{n}": p.reference for n, p in policies.items() if p.reference is not None})
    trees.update({f"teacher/{n}": p.teacher for n, p in policies.items() if p.teacher is not None})
    trees.update({f"snapshot/{n}": p.snapshot for n, p in policies.items() if p.snapshot is not None})
    return trees


def _save(ckpt: Checkpointer, step: int, policies, game_state, rng: np.random.Generator, cfg: RunConfig,
          force: bool = False) -> None:
    host = {"game": game_state, "rng": json.dumps(rng.bit_generator.state), "fingerprint": cfg.fingerprint(),
            "game_name": cfg.game_name, "step": step}
    ckpt.save(step, _trees(policies), host, force=force)


def _restore(ckpt: Checkpointer, policies, cfg: RunConfig):
    step = ckpt.latest_step()
    _, host = ckpt.restore(step, names=[])
    for n, p in policies.items():  # a snapshot saved with the run comes back with it
        if f"snapshot/{n}" in ckpt.tree_names(step):
            p.snapshot = p.state
    if host.get("fingerprint") != cfg.fingerprint():
        raise RunFolderError(f"{ckpt.directory} holds a run of another config (game {host.get('game_name')!r}, "
                             f"fingerprint {host.get('fingerprint')} != {cfg.fingerprint()}); use a new --workdir")
    trees, host = ckpt.restore(step, targets={k: abstract_like(v) for k, v in _trees(policies).items()})
    for n, p in policies.items():
        p.state = trees[f"policy/{n}"]
        if p.reference is not None:
            p.reference = trees[f"reference/{n}"]
        if p.teacher is not None:
            p.teacher = trees[f"teacher/{n}"]
        if p.snapshot is not None:
            p.snapshot = trees[f"snapshot/{n}"]
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = json.loads(host["rng"])
    return step, host["game"], rng


# -- the loop -----------------------------------------------------------------------------------

class _Signals:
    """SIGINT / SIGTERM: finish the step in flight, save, return. A second SIGINT interrupts."""

    def __init__(self):
        self.stop = False
        self._old = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.stop and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.stop = True

        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, handler)
            except ValueError:  # not the main thread: no handlers
                pass
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def run(cfg: RunConfig, workdir: str, *, evaluator: Callable[[int, Context], dict] | None = None,
        sample_fn=None, log: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) `cfg` in `workdir` up to `cfg.steps`; returns this call's metrics rows.

    evaluator(step, ctx) -> {benchmark: accuracy}: the periodic evaluation hook (every
    `loop.eval_every` steps, rows `eval/<name>`). sample_fn replaces the sampler (test doubles).
    """
    from tqdm import tqdm

    os.makedirs(workdir, exist_ok=True)
    mesh = run_mesh(cfg)
    from zeroplay.verifiers import code

    code.configure_default_pool(cfg.verifiers.code_workers, cfg.verifiers.code_memory_mb)
    game = make_game(cfg.game_name, dataclasses.asdict(cfg.game))
    if cfg.coldstart is not None:
        from zeroplay import coldstart

        cfg = coldstart.prepare(cfg, workdir, log)
    policies = build_policies(cfg, mesh)
    tokenizer = load_tokenizer_for(next(iter(cfg.policies.values())))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=cfg.loop.keep_checkpoints,
                        save_interval_steps=1, async_save=cfg.loop.async_checkpoint)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if evaluator is None and cfg.loop.eval_benchmarks:
        from zeroplay.evaluation import loop_evaluator
        from zeroplay.evaluation.protocols import resolve

        protocol = resolve(cfg.loop.eval_protocol, max_new_tokens=cfg.loop.eval_max_new_tokens or None)
        evaluator = loop_evaluator(list(cfg.loop.eval_benchmarks), protocol,
                                   cfg.loop.eval_limit or None, role=cfg.loop.eval_role,
                                   report_dir=os.path.join(workdir, "eval"))
    # Multi-host: every process runs the same steps in lockstep; process 0 alone writes the files
    # other than the checkpoints (which Orbax writes collectively) and shows the progress bar.
    lead, num_processes = jax.process_index() == 0, jax.process_count()
    if lead:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(cfg.raw, f, indent=1, default=str)

    bar = tqdm(total=cfg.steps, disable=not cfg.loop.progress or not lead, dynamic_ncols=True, unit="step")
    stage = {"name": "setup", "reward": float("nan")}

    def on_stage(name):
        stage["name"] = name
        bar.set_postfix_str(f"{name} | last reward {stage['reward']:.3f}", refresh=True)

    timer = StageTimer(on_stage)
    sampler = Sampler(cfg, policies, tokenizer, mesh, timer)
    sample = sample_fn or sampler

    def context(step: int, rng) -> Context:
        sampler.step, sampler.calls, sampler.tail = step, 0, {}
        return Context(sample=sample, encode=lambda s: tokenizer.encode(s, add_special_tokens=False),
                       decode=lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True), rng=rng,
                       step=step, timer=timer, chat=_chat_fn(tokenizer),
                       sampling_of=lambda role: Sampling(*sampler.resolve(role, None)), workdir=workdir)

    start = ckpt.latest_step()
    if start is not None:
        start, game_state, rng = _restore(ckpt, policies, cfg)
        if lead:
            trim_jsonl(metrics_path, start)
            log(f"resumed from step {start} in {workdir}")
    else:
        start, rng = 0, np.random.Generator(np.random.PCG64(cfg.seed))
        if lead and os.path.exists(metrics_path):
            os.remove(metrics_path)
        with timer("init"):
            game_state = game.init_state(context(0, rng))
            game_state = _same_everywhere(game_state, rng)
    bar.update(start)
    t_run = time.perf_counter()
    rows = []
    writer = MetricsWriter(workdir) if lead else None
    evaluates = evaluator is not None or type(game).evaluate is not Game.evaluate

    def evaluate(step: int, ctx: Context, state) -> dict[str, float]:
        """The game's own held-out figures (as it names them) and the benchmarks' (`eval/<name>`)."""
        out = {k: float(v) for k, v in game.evaluate(state, ctx).items()}
        if evaluator is not None:
            out.update({f"eval/{k}": float(v) for k, v in evaluator(step, ctx).items()})
        return out

    if start == 0 and evaluates and cfg.loop.eval_at_start:
        with timer("eval"):
            row = {"step": 0, **evaluate(0, context(0, rng), game_state)}
        if num_processes > 1:
            row["num_processes"] = num_processes
        if writer is not None:
            writer.write(row)
        rows.append(row)
    try:
        with _Signals() as signals:
            for step in range(start + 1, cfg.steps + 1):
                timer.seconds.clear()
                t0 = time.perf_counter()
                ctx = context(step, rng)
                episodes, metrics = [], {}
                with timer("teacher"):
                    metrics.update(update_teachers(policies, step, cfg.steps))
                for phase in game.phases(game_state, step):
                    with timer("prompts"):
                        requests = game.requests(phase, game_state, ctx)
                    rollouts = sample_requests(requests, sample, cfg)
                    with timer("score"):
                        game_state, eps, m = game.score(phase, requests, rollouts, game_state, ctx)
                        game_state, eps, m = _same_everywhere((game_state, eps, m), rng)
                    episodes += eps
                    metrics.update(m)
                metrics.update(role_metrics(episodes, game.roles))
                kept = game.filter(episodes)
                metrics["episodes_kept"] = float(len(kept))
                metrics.update(train_policies(game, policies, cfg, kept, step, pad_id, timer, mesh, game_state))
                game_state, actions = game.after_step(game_state, step, metrics, ctx)  # sees the updated params
                game_state, actions = _same_everywhere((game_state, actions), rng)
                metrics.update(apply_actions(actions, policies, cfg))
                # a time budget ends the run like the last step: evaluated, checkpointed, resumable
                out_of_time = any_process(bool(cfg.loop.time_limit_s) and
                                          time.perf_counter() - t_run >= cfg.loop.time_limit_s)
                due = step == cfg.steps or out_of_time or (cfg.loop.eval_every and step % cfg.loop.eval_every == 0)
                if evaluates and due:
                    with timer("eval"):
                        metrics.update(evaluate(step, ctx, game_state))
                stop = any_process(signals.stop)  # a signal seen by one process stops them all
                last = step == cfg.steps or stop or out_of_time
                if step % cfg.loop.checkpoint_every == 0 or last:
                    with timer("checkpoint"):
                        _save(ckpt, step, policies, game_state, rng, cfg, force=True)
                row = {"step": step, **metrics, **sampler.tail_metrics(), **timer.metrics(),
                       "time/step": time.perf_counter() - t0}
                if num_processes > 1:
                    row["num_processes"] = num_processes
                if writer is not None:
                    writer.write(row)
                rows.append(row)
                rewards = [v for k, v in metrics.items() if k.endswith("/reward_mean")]
                stage["reward"] = float(np.mean(rewards)) if rewards else float("nan")
                bar.update(1)
                on_stage("done")
                if stop or out_of_time:
                    if lead:
                        why = "by a signal" if stop else f"at the time limit ({cfg.loop.time_limit_s:g} s)"
                        log(f"stopped {why} after step {step}; checkpoint saved, rerun the command to resume")
                    break
    finally:
        ckpt.close()
        bar.close()
        if writer is not None:
            writer.close()
    return rows


def _same_everywhere(obj, rng: np.random.Generator):
    """Multi-host: process 0's `obj` and host RNG state on every process. Each process verified
    the same gathered completions; this makes a verifier that is not reproducible (a sandbox
    timeout under load) unable to split the processes' game states. One process: `obj` as is."""
    if not is_multihost():
        return obj
    obj, rng_state = broadcast_object((obj, rng.bit_generator.state))
    rng.bit_generator.state = rng_state
    return obj


def sample_requests(requests: Sequence[Request], sample, cfg: RunConfig) -> list[list[Completion]]:
    """Every request sampled: one sampler call per (role, n, sampling), in request order. A prompt
    longer than its policy's `sampling.max_prompt_tokens` is cut from the left here, in the
    request itself, so that the episode trains on exactly the prompt that was sampled."""
    out: list = [None] * len(requests)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(requests):
        cap = cfg.policies[cfg.policy_of(r.role)].sampling.max_prompt_tokens
        if len(r.prompt) > cap:
            r.prompt = list(r.prompt)[-cap:]
        groups[(r.role, r.n, r.sampling)].append(i)
    for (role, n, sampling), idx in groups.items():
        for i, comps in zip(idx, sample(role, [requests[i].prompt for i in idx], n, sampling)):
            out[i] = comps
    return out


def _chat_fn(tokenizer):
    if not getattr(tokenizer, "chat_template", None):
        return None
    from zeroplay.sampling import chat_prompts

    return lambda text: chat_prompts(tokenizer, [text])[0]
