"""A deterministic tiny self-play-shaped run for the exact-resume tests of zeroplay.checkpoint.

    python tests/resume_run.py --workdir W --steps N [--kill-after K | --kill-during-save K] [--sync]

Each step: prompts come from a host-side task buffer (JSON state), a tiny random Decoder samples
G completions per prompt with a key split from the checkpointed RNG key, a toy verifier rewards
even tokens, zeroplay.rl's GRPO advantages and jitted train step (AdamW, state donated) update the
PolicyState, an EMA teacher follows the params, and the best completion joins the buffer. One
JSON line per step goes to W/metrics.jsonl, then the state is checkpointed. --kill-after K
SIGKILLs the process once step K's checkpoint is committed; --kill-during-save K SIGKILLs it
while step K is being written.
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

from zeroplay.checkpoint import Checkpointer, abstract_like, trim_jsonl
from zeroplay.models import Decoder, ModelConfig
from zeroplay.rl import PolicyConfig, advantages, create_state, ema_update, make_train_step

CFG = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2)
POLICY = PolicyConfig(lr=1e-2, weight_decay=0.01, clip_high=0.28)
PROMPTS, GROUP, PROMPT_LEN, GEN_LEN = 2, 4, 6, 4
EMA_RATE = 0.1


def make_rollout(model):
    group_ids = jnp.repeat(jnp.arange(PROMPTS), GROUP)
    loss_mask = jnp.zeros((PROMPTS * GROUP, PROMPT_LEN + GEN_LEN), jnp.float32).at[:, PROMPT_LEN:].set(1.0)

    @jax.jit
    def rollout(params, rng, prompts):
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
        batch = {"tokens": seqs, "loss_mask": loss_mask, "advantages": advantages.grpo(rewards, group_ids)}
        best = completions[jnp.argmax(rewards[:GROUP])]
        return rng, batch, rewards.mean(), best

    return rollout


def digest(tree) -> str:
    h = hashlib.sha1()
    for x in jax.tree.leaves(tree):
        h.update(np.asarray(x).tobytes())
    return h.hexdigest()


def fresh_state():
    model = Decoder(CFG)

    @jax.jit
    def init(rng):
        params = nn.unbox(model.init(rng, jnp.zeros((1, PROMPT_LEN), jnp.int32)))["params"]
        return {"policy/solver": create_state(params, POLICY), "ema": params, "rng": jax.random.key(1234)}

    host = {"buffer": [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], "tasks_seen": 0}
    return init(jax.random.PRNGKey(0)), host, make_rollout(model), make_train_step(model, POLICY)


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
    trees, host, rollout, train_step = fresh_state()
    start = ckpt.latest_step() or 0
    if start:
        trees, host = ckpt.restore(targets={k: abstract_like(v) for k, v in trees.items()})
        print(f"resumed from step {start}", file=sys.stderr, flush=True)
    trim_jsonl(metrics_path, start)

    for step in range(start + 1, args.steps + 1):
        state = trees["policy/solver"]
        prompts = jnp.asarray(host["buffer"][-PROMPTS:], jnp.int32)
        rng, batch, reward, best = rollout(state.params, trees["rng"], prompts)
        state, m = train_step(state, batch)  # donates the previous state's buffers
        ema = ema_update(trees["ema"], state.params, EMA_RATE)
        trees = {"policy/solver": state, "ema": ema, "rng": rng}
        best = [int(t) for t in np.asarray(best)]
        host = {"buffer": (host["buffer"] + [host["buffer"][-1][GEN_LEN:] + best])[-4:],
                "tasks_seen": host["tasks_seen"] + 1}
        record = {"step": step, "loss": float(m["loss"]), "reward": float(reward),
                  "grad_norm": float(m["grad_norm"]), "policy_step": int(state.step),
                  "param_sum": float(sum(np.abs(np.asarray(x, np.float64)).sum()
                                         for x in jax.tree.leaves(state.params))),
                  "params_sha1": digest(state.params), "opt_sha1": digest(state.opt_state),
                  "ema_sha1": digest(ema), "rng": [int(v) for v in np.asarray(jax.random.key_data(rng))],
                  "buffer": host["buffer"]}
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
