"""A deterministic tiny self-play-shaped run for the exact-resume tests of zeroplay.checkpoint.

    python tests/resume_run.py --workdir W --steps N [--kill-after K | --kill-during-save K]

Each step: prompts come from a host-side task buffer (JSON state), a tiny random Decoder samples
G completions per prompt with a key split from the checkpointed RNG key, a toy verifier rewards
even tokens, a GRPO-style update (group-normalised advantages, clipped surrogate) steps AdamW, an
EMA teacher follows the params, and the best completion joins the buffer. One JSON line per step
goes to W/metrics.jsonl, then the state is checkpointed. --kill-after K SIGKILLs the process once
step K's checkpoint is committed; --kill-during-save K SIGKILLs it while step K is being written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zeroplay.checkpoint import Checkpointer, abstract_like, trim_jsonl
from zeroplay.models import Decoder, ModelConfig

try:  # the shared GRPO loss once zeroplay.rl has landed
    from zeroplay.rl.losses import policy_loss
except ImportError:  # pragma: no cover - fallback while zeroplay.rl is being written
    policy_loss = None

CFG = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2)
PROMPTS, GROUP, PROMPT_LEN, GEN_LEN = 2, 4, 6, 4
EMA_DECAY = 0.9


def surrogate_loss(logprobs, old_logprobs, advantages, mask):
    if policy_loss is not None:
        return policy_loss(logprobs, old_logprobs, advantages, mask)[0]
    ratio = jnp.exp(logprobs - old_logprobs)
    adv = advantages[:, None]
    s = -jnp.minimum(ratio * adv, jnp.clip(ratio, 0.8, 1.2) * adv)
    return jnp.sum(s * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def build(model):
    tx = optax.adamw(1e-2, weight_decay=0.01)

    def completion_logprobs(params, seqs):
        logits = model.apply({"params": params}, seqs[:, :-1])
        logp = jax.nn.log_softmax(logits, axis=-1)
        taken = jnp.take_along_axis(logp, seqs[:, 1:, None], axis=-1)[..., 0]
        return taken[:, PROMPT_LEN - 1:]

    @jax.jit
    def step(params, opt_state, ema, rng, prompts):
        rng, k_sample = jax.random.split(rng)
        seqs = jnp.pad(jnp.repeat(prompts, GROUP, axis=0), ((0, 0), (0, GEN_LEN)))

        def sample(i, seqs):  # ancestral sampling without a cache (causal: the padding is unseen)
            logits = model.apply({"params": params}, seqs)
            last = jax.lax.dynamic_index_in_dim(logits, PROMPT_LEN - 1 + i, axis=1, keepdims=False)
            tok = jax.random.categorical(jax.random.fold_in(k_sample, i), last).astype(jnp.int32)
            return jax.lax.dynamic_update_index_in_dim(seqs, tok, PROMPT_LEN + i, axis=1)

        seqs = jax.lax.fori_loop(0, GEN_LEN, sample, seqs)
        completions = seqs[:, PROMPT_LEN:]
        rewards = jnp.mean((completions % 2 == 0).astype(jnp.float32), axis=1)
        grouped = rewards.reshape(PROMPTS, GROUP)
        adv = ((grouped - grouped.mean(1, keepdims=True)) / (grouped.std(1, keepdims=True) + 1e-6)).reshape(-1)
        old = jax.lax.stop_gradient(completion_logprobs(params, seqs))
        mask = jnp.ones_like(old)

        def loss_fn(p):
            return surrogate_loss(completion_logprobs(p, seqs), old, adv, mask)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, p: EMA_DECAY * e + (1 - EMA_DECAY) * p, ema, params)
        best = completions.reshape(PROMPTS, GROUP, GEN_LEN)[0, jnp.argmax(grouped[0])]
        return params, opt_state, ema, rng, {"loss": loss, "reward": rewards.mean(), "best": best}

    return tx, step


def digest(tree) -> str:
    h = hashlib.sha1()
    for x in jax.tree.leaves(tree):
        h.update(np.asarray(x).tobytes())
    return h.hexdigest()


def fresh_state():
    model = Decoder(CFG)
    tx, step = build(model)

    @jax.jit
    def init(rng):
        params = nn.unbox(model.init(rng, jnp.zeros((1, PROMPT_LEN), jnp.int32)))["params"]
        return {"policy/solver": {"params": params, "opt_state": tx.init(params)}, "ema": params,
                "rng": jax.random.key(1234)}

    host = {"buffer": [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], "tasks_seen": 0}
    return init(jax.random.PRNGKey(0)), host, step


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--kill-after", type=int, default=None)
    ap.add_argument("--kill-during-save", type=int, default=None)
    ap.add_argument("--sync", action="store_true", help="synchronous saves")
    args = ap.parse_args(argv)

    os.makedirs(args.workdir, exist_ok=True)
    metrics_path = os.path.join(args.workdir, "metrics.jsonl")
    ckpt = Checkpointer(os.path.join(args.workdir, "checkpoints"), keep=2, async_save=not args.sync)
    trees, host, step_fn = fresh_state()
    start = ckpt.latest_step() or 0
    if start:
        trees, host = ckpt.restore(targets={k: abstract_like(v) for k, v in trees.items()})
        print(f"resumed from step {start}", file=sys.stderr, flush=True)
    trim_jsonl(metrics_path, start)

    for step in range(start + 1, args.steps + 1):
        pol = trees["policy/solver"]
        prompts = jnp.asarray(host["buffer"][-PROMPTS:], jnp.int32)
        params, opt_state, ema, rng, m = step_fn(pol["params"], pol["opt_state"], trees["ema"],
                                                 trees["rng"], prompts)
        trees = {"policy/solver": {"params": params, "opt_state": opt_state}, "ema": ema, "rng": rng}
        best = [int(t) for t in np.asarray(m["best"])]
        host = {"buffer": (host["buffer"] + [host["buffer"][-1][GEN_LEN:] + best])[-4:],
                "tasks_seen": host["tasks_seen"] + 1}
        record = {"step": step, "loss": float(m["loss"]), "reward": float(m["reward"]),
                  "param_sum": float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(params))),
                  "params_sha1": digest(params), "opt_sha1": digest(opt_state), "ema_sha1": digest(ema),
                  "rng": [int(v) for v in np.asarray(jax.random.key_data(rng))], "buffer": host["buffer"]}
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

        save_trees = dict(trees)
        if step == args.kill_during_save:  # 32 MB of noise keeps the background write busy
            save_trees["ballast"] = np.random.default_rng(0).standard_normal(8 << 20, dtype=np.float32)
        ckpt.save(step, save_trees, host)
        if step == args.kill_during_save:
            pending = [n for n in os.listdir(ckpt.directory) if n.startswith(f"{step}.") and "tmp" in n]
            print(f"pending at kill: {pending}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if step == args.kill_after:
            ckpt.wait()
            os.kill(os.getpid(), signal.SIGKILL)
    ckpt.close()


if __name__ == "__main__":
    main()
