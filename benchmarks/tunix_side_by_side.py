"""google-tunix 0.1.7 side by side with zeroplay: sampler and GRPO train step, in one run.

    python benchmarks/tunix_side_by_side.py                    # tiny shape (about 1 minute on 2 cores)
    python benchmarks/tunix_side_by_side.py --shape smollm2    # SmolLM2-135M's shape (about 5 minutes)
    python benchmarks/tunix_side_by_side.py --venv DIR --reps 3 --batch 8 --prompt 32 --new 128

tunix lives in its own virtualenv (default ~/.cache/zeroplay/tunix-0.1.7-venv, made once and
reused, ~1.6 GB): its pins conflict with ours (safetensors<0.8 against our 0.8, which also moves
transformers back to 5.12), and it brings grain, tensorflow_datasets, orbax, qwix, ... that the
project does not need. The script makes it with `python -m venv` and `pip install
google-tunix==0.1.7` (a few minutes, the first time only); where that fails (no registry, no
wheel) or tunix does not start or run here, it prints one `skipped: ...` line saying why and
exits 0.

One run, two processes: this one (our venv) and a child in the tunix venv (this file with
--child), driven over stdin/stdout so that runs of the two systems alternate:
  sampler: tunix's vanilla `tunix.generate.sampler.Sampler` (prefill + `lax.while_loop` decode,
    KV cache of exactly prompt + new slots, the least it accepts) against our `generate` with
    decode_kernel="xla" (the path of GPUs and TPUs) and decode_kernel="cpu" (the fused CPU kernel).
    Same random prompt ids, batch, prompt length and new tokens; temperature 1 (plain categorical,
    top_p 1, no top_k) in both; no eos can stop a row, so every row makes all `--new` tokens; both
    return the tokens and their logprobs to the host. Timed: the whole call, after a warm-up call.
  GRPO step: the jitted train step that tunix's `GRPOLearner` installs on its `RLCluster`'s actor
    trainer (GRPO loss, beta 0, one iteration; nnx.Optimizer with clip-by-global-norm 1 + AdamW)
    against our `make_train_step` (GRPO loss, no KL, same optimizer), float32, no micro-batches,
    full logits, on the same tokens (prompt + completion) and advantages. Timed after a warm-up.
Random weights of the same shape in both (tunix's llama3 `Llama3`, weight tying on, against our
llama-family `ModelConfig`). Tokens/s = batch x new / call time; GRPO rows x tokens/s = batch x
(prompt + new) / step time. Best of `--reps` (and the median); ratios are ours / tunix.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

TUNIX = "google-tunix==0.1.7"
DEFAULT_VENV = Path.home() / ".cache" / "zeroplay" / "tunix-0.1.7-venv"
MARK = "@@ "  # prefix of the child's protocol lines on stdout (anything else it prints is passed through)

# Llama shapes: (layers, hidden, intermediate, heads, kv heads, head dim, vocab, rope theta, norm eps), tied.
SHAPES = {
    "tiny": (4, 256, 1024, 4, 4, 64, 32000, 10000.0, 1e-6),  # benchmarks/sampler.py's peer shape
    "smollm2": (30, 576, 1536, 9, 3, 64, 49152, 100000.0, 1e-5),  # SmolLM2-135M
}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average %.2f, %.2f, %.2f" % os.getloadavg()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "(no output)"


def ensure_venv(venv: Path) -> tuple[Path | None, str]:
    """(python of a virtualenv holding google-tunix 0.1.7, "") or (None, why not)."""
    py = venv / "bin" / "python"
    marker = venv / ".zeroplay-tunix-ok"
    if marker.exists() and py.exists():
        return py, ""
    steps = [([sys.executable, "-m", "venv", str(venv)], 600),
             ([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", TUNIX], 3600),
             ([str(py), "-c", "import tunix.generate.sampler, tunix.rl.grpo.grpo_learner"], 600)]
    print(f"setting up {venv} with {TUNIX} (once; reused by later runs)", flush=True)
    for cmd, timeout in steps:
        if cmd[1] == "-m" and cmd[2] == "venv" and py.exists():
            continue
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as e:
            return None, f"{' '.join(cmd[:4])}: {e}"
        if r.returncode != 0:
            return None, f"{' '.join(cmd[:5])} exited {r.returncode}: {last_line(r.stderr or r.stdout)}"
    marker.write_text(TUNIX + "\n")
    return py, ""


# ---------------------------------------------------------------------------------------------
# The child: runs in the tunix venv; imports nothing of zeroplay.

def child_main() -> None:
    import logging as pylogging
    from importlib import metadata

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from absl import logging as absl_logging
    from jax.interpreters import pxla
    from tunix.generate import sampler as sampler_lib
    from tunix.models.dummy_model_creator import create_dummy_model
    from tunix.models.llama3 import model as llama3
    from tunix.rl import rl_cluster as rl_cluster_lib
    from tunix.rl.grpo import grpo_learner
    from tunix.rl.rollout import base_rollout

    absl_logging.set_verbosity(absl_logging.WARNING)
    pylogging.getLogger().setLevel(pylogging.WARNING)
    out = sys.stdout
    sys.stdout = sys.stderr  # tunix's own prints go to stderr; stdout carries the protocol

    def reply(**kw):
        out.write(MARK + json.dumps(kw) + "\n")
        out.flush()

    class IdTokenizer:
        """Text is the token ids in decimal, space-separated; pad 0, no bos, eos never sampled."""

        def encode(self, text, **kw):
            return [int(t) for t in text.split()]

        def decode(self, ids, **kw):
            return " ".join(str(int(i)) for i in ids)

        def bos_id(self):
            return None

        def eos_id(self):
            return -1

        def pad_id(self):
            return 0

    spec = json.loads(sys.stdin.readline())
    layers, hidden, inter, heads, kv, hd, vocab, theta, eps = spec["shape"]
    cfg = llama3.ModelConfig(num_layers=layers, vocab_size=vocab, embed_dim=hidden, hidden_dim=inter,
                             num_heads=heads, head_dim=hd, num_kv_heads=kv, rope_theta=int(theta), norm_eps=eps,
                             weight_tying=True)
    batch, plen, new = spec["batch"], spec["prompt"], spec["new"]
    prompts = [" ".join(map(str, row)) for row in spec["prompt_ids"]]
    reply(jax=jax.__version__, flax=metadata.version("flax"), tunix=metadata.version("google-tunix"),
          optax=metadata.version("optax"), devices=str(jax.devices()))

    state: dict = {}

    def sample(seed: int) -> float:
        t = time.perf_counter()
        o = state["sampler"](prompts, max_generation_steps=new, max_prompt_length=plen, temperature=1.0, top_p=1.0,
                             seed=seed, eos_tokens=[-1], return_logprobs=True)
        dt = time.perf_counter() - t
        n = [len(x) for x in o.tokens]
        assert min(n) == new, f"tunix made {n} tokens per row, expected {new}"
        return dt

    def train_step() -> tuple[float, float]:
        t = time.perf_counter()
        loss, _, _ = state["step"](state["example"])
        loss = float(jax.block_until_ready(loss))
        return time.perf_counter() - t, loss

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "sample_setup":
            model = create_dummy_model(llama3.Llama3, cfg, dtype=jnp.float32, random_seed=0)
            state["sampler"] = sampler_lib.Sampler(
                model, IdTokenizer(), sampler_lib.CacheConfig(cache_size=plen + new, num_layers=layers,
                                                              num_kv_heads=kv, head_dim=hd))
            t = time.perf_counter()
            sample(0)
            reply(compile_s=time.perf_counter() - t)
        elif op == "sample":
            reply(t=sample(cmd["seed"]))
        elif op == "train_setup":
            state.pop("sampler", None)
            mesh = pxla.thread_resources.env.physical_mesh  # empty: one CPU device, no sharding
            actor = create_dummy_model(llama3.Llama3, cfg, dtype=jnp.float32, random_seed=1)
            opt = optax.chain(optax.clip_by_global_norm(1.0),
                              optax.adamw(spec["lr"], b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0))
            cluster = rl_cluster_lib.RLCluster(
                actor=actor, reference=None, tokenizer=IdTokenizer(),
                cluster_config=rl_cluster_lib.ClusterConfig(
                    role_to_mesh={r: mesh for r in (rl_cluster_lib.Role.ACTOR, rl_cluster_lib.Role.REFERENCE,
                                                     rl_cluster_lib.Role.ROLLOUT)},
                    rollout_engine="vanilla", offload_to_cpu=False,
                    training_config=rl_cluster_lib.RLTrainingConfig(actor_optimizer=opt, eval_every_n_steps=10 ** 9,
                                                                    max_steps=10 ** 6),
                    rollout_config=base_rollout.RolloutConfig(max_tokens_to_generate=new, max_prompt_length=plen,
                                                              kv_cache_size=plen + new, temperature=1.0)))
            learner = grpo_learner.GRPOLearner(
                rl_cluster=cluster, reward_fns=lambda prompts, completions, **kw: [0.0] * len(completions),
                algo_config=grpo_learner.GRPOConfig(num_generations=2, num_iterations=1, beta=0.0, epsilon=0.2))
            tokens = np.asarray(spec["tokens"], np.int32)
            state["learner"] = learner  # keeps the cluster and its trainer alive
            state["step"], _ = cluster.actor_trainer.jit_train_and_eval_step(cache_nnx_graph=True)
            state["example"] = grpo_learner.TrainExample(
                prompt_ids=jnp.asarray(tokens[:, :plen]), prompt_mask=jnp.ones((batch, plen), jnp.bool_),
                completion_ids=jnp.asarray(tokens[:, plen:]), completion_mask=jnp.ones((batch, new), jnp.bool_),
                ref_per_token_logps=None, advantages=jnp.asarray(spec["advantages"], jnp.float32),
                old_per_token_logps=None)
            t = time.perf_counter()
            train_step()
            reply(compile_s=time.perf_counter() - t)
        elif op == "train":
            dt, loss = train_step()
            reply(t=dt, loss=loss)
        elif op == "quit":
            reply(bye=True)
            return


class Child:
    """The tunix process: one JSON command per line in, one MARK-prefixed JSON reply per command out."""

    def __init__(self, py: Path, spec: dict, log: Path):
        self.log = log
        self.proc = subprocess.Popen([str(py), __file__, "--child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log.open("w"), text=True)
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        self.info = self.read()

    def read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        self.proc.wait()
        raise RuntimeError(f"tunix child exited {self.proc.returncode}: "
                           f"{last_line(self.log.read_text(errors='replace'))} (log: {self.log})")

    def __call__(self, op: str, **kw) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self("quit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------
# The parent: our venv.

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=32, help="prompt tokens")
    ap.add_argument("--new", type=int, default=128, help="generated tokens per row")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="tunix's virtualenv (made if missing)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main()

    load_start = uptime()
    py, why = ensure_venv(args.venv.expanduser())
    if py is None:
        print(f"skipped: {TUNIX} could not be installed: {why}")
        return

    import jax
    import jax.numpy as jnp
    import numpy as np

    from machine import machine_rates, timed
    from sampler import request_roofline
    from train_step import make_batch, model_flops
    from zeroplay.models import ModelConfig, init_params
    from zeroplay.rl.optim import PolicyConfig
    from zeroplay.rl.train_step import create_state, make_train_step
    from zeroplay.sampling import generate

    layers, hidden, inter, heads, kv, hd, vocab, theta, eps = SHAPES[args.shape]
    cfg = ModelConfig(family="llama", vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                      num_layers=layers, num_heads=heads, num_kv_heads=kv, head_dim=hd, rope_theta=theta,
                      rms_norm_eps=eps, tie_word_embeddings=True)
    b, p, n, reps = args.batch, args.prompt, args.new, args.reps
    prompt_ids = np.random.RandomState(0).randint(1, vocab, (b, p))
    tb = make_batch(b, p + n, vocab, p)  # prompt + completion tokens, loss on the completion, advantages
    tb["tokens"] = jnp.where(tb["tokens"] == 0, 1, tb["tokens"])  # 0 is tunix's pad id here
    lr = 1e-6
    spec = {"shape": SHAPES[args.shape], "batch": b, "prompt": p, "new": n, "prompt_ids": prompt_ids.tolist(),
            "tokens": np.asarray(tb["tokens"]).tolist(), "advantages": np.asarray(tb["advantages"]).tolist(), "lr": lr}

    flops_s, bw = machine_rates()
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}; measured matmul {flops_s / 1e9:.0f} GFLOP/s (2048^2 float32), "
          f"copy bandwidth {bw / 1e9:.1f} GB/s (read + written)")
    print(f"load at start: {load_start}")
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"tunix_side_by_side.{os.getpid()}.log"
    try:
        child = Child(py, spec, log)
    except (RuntimeError, OSError) as e:
        print(f"skipped: {TUNIX} did not start on this machine: {e}")
        return
    print(f"tunix side: google-tunix {child.info['tunix']}, jax {child.info['jax']}, flax {child.info['flax']}, "
          f"optax {child.info['optax']}, {child.info['devices']} (venv {args.venv})")
    print(f"our side: jax {jax.__version__}, {jax.devices()}")
    print(f"shape {args.shape}: {layers} layers, hidden {hidden}, intermediate {inter}, heads {heads}/{kv} kv, "
          f"head dim {hd}, vocab {vocab}, tied; batch {b}, prompt {p}, new {n}; best of {reps} after a warm-up")

    kernels = ["xla", "cpu"] if jax.default_backend() == "cpu" else ["xla"]  # the fused kernel is for CPUs only
    times = {k: [] for k in ("tunix_sample", *kernels, "tunix_train", "ours_train")}
    compile_s = {}
    try:
        compile_s["tunix sampler"] = child("sample_setup")["compile_s"]
        model, params = init_params(cfg, jax.random.PRNGKey(0))
        prompts = [list(map(int, r)) for r in prompt_ids]

        def ours(kernel: str, seed: int) -> float:
            def run():
                out = generate(model, params, prompts, max_new_tokens=n, temperature=1.0,
                               rng=jax.random.PRNGKey(seed), decode_kernel=kernel)
                np.asarray(out.tokens), np.asarray(out.logprobs)
                assert int(out.lengths.min()) == n
            return timed(run)

        for k in kernels:
            compile_s[f"ours {k}"] = ours(k, 0)
        for r in range(reps):
            times["tunix_sample"].append(child("sample", seed=r + 1)["t"])
            for k in kernels:
                times[k].append(ours(k, r + 1))

        compile_s["tunix GRPO step"] = child("train_setup")["compile_s"]
        pc = PolicyConfig(lr=lr, grad_clip=1.0)
        step = make_train_step(model, pc)
        st = create_state(params, pc)
        t = time.perf_counter()
        st, m = step(st, tb)
        jax.block_until_ready(st)
        compile_s["ours GRPO step"] = time.perf_counter() - t
        losses = {"ours": float(m["loss"])}
        for _ in range(reps):
            r = child("train")
            times["tunix_train"].append(r["t"])
            losses["tunix"] = r["loss"]
            t = time.perf_counter()
            st, m = step(st, tb)
            jax.block_until_ready(st)
            times["ours_train"].append(time.perf_counter() - t)
    except (RuntimeError, BrokenPipeError, OSError) as e:
        print(f"skipped: {TUNIX} failed on this machine: {e}")
        return
    finally:
        child.close()
    log.unlink(missing_ok=True)  # kept only where the child failed
    flops_end, bw_end = machine_rates()
    load_end = uptime()

    toks, rows_toks = b * n, b * (p + n)
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    print("\n| system | sampler tok/s (best) | median | ours / tunix (best) | median |")
    print("|---|---|---|---|---|")
    for name, k in (("tunix 0.1.7 vanilla Sampler", "tunix_sample"), ("zeroplay generate, XLA path", "xla"),
                    ("zeroplay generate, CPU kernel", "cpu")):
        if k not in best:
            continue
        print(f"| {name} | {toks / best[k]:.0f} | {toks / med[k]:.0f} | {best['tunix_sample'] / best[k]:.2f}x | "
              f"{med['tunix_sample'] / med[k]:.2f}x |")
    print("\n| system | GRPO step s (best) | median | rows x tokens/s (best) | ours / tunix (best) | median |")
    print("|---|---|---|---|---|---|")
    for name, k in (("tunix 0.1.7 GRPOLearner step", "tunix_train"), ("zeroplay make_train_step", "ours_train")):
        print(f"| {name} | {best[k]:.3f} | {med[k]:.3f} | {rows_toks / best[k]:.0f} | "
              f"{best['tunix_train'] / best[k]:.2f}x | {med['tunix_train'] / med[k]:.2f}x |")
    roof = request_roofline(cfg, b, p, n, max(flops_s, flops_end), max(bw, bw_end))
    step_flops = model_flops(cfg, b, p + n)
    print(f"\nrooflines at the best machine rates of the run: sampler {roof:.0f} tok/s (prefill FLOPs, then each "
          f"decode step's weight + KV bytes or FLOPs, whichever is slower); GRPO step {step_flops / 1e9:.1f} GFLOP "
          f"(6 x params x tokens + attention) = {step_flops / max(flops_s, flops_end):.3f} s at the matmul rate, "
          f"so tunix {step_flops / best['tunix_train'] / 1e9:.0f} and ours {step_flops / best['ours_train'] / 1e9:.0f}"
          f" GFLOP/s")
    print("warm-up (first call, compilation included): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in compile_s.items()))
    print(f"losses after the last step: {', '.join(f'{k} {v:.4f}' for k, v in losses.items())} "
          "(random models, different weights: not compared)")
    xla_ratio = best["tunix_sample"] / best["xla"]
    step_ratio = best["tunix_train"] / best["ours_train"]
    print(f"\ntargets: XLA-path sampler >= 2x tunix's tokens/s: {xla_ratio:.2f}x "
          f"({'met' if xla_ratio >= 2 else 'MISSED'}); GRPO step >= 1.5x tunix's throughput: {step_ratio:.2f}x "
          f"({'met' if step_ratio >= 1.5 else 'MISSED'})"
          + (f"; CPU kernel: {best['tunix_sample'] / best['cpu']:.2f}x" if "cpu" in best else ""))
    print(f"measured again at the end: matmul {flops_end / 1e9:.0f} GFLOP/s, copy bandwidth {bw_end / 1e9:.1f} GB/s")
    print(f"load at end: {load_end} (other processes may share the cores)")


if __name__ == "__main__":
    main()
