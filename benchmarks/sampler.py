"""Rollout sampler against transformers `generate` (torch CPU), side by side in one run.

    python benchmarks/sampler.py                 # all parts
    python benchmarks/sampler.py --parts a --reps 5
    python benchmarks/sampler.py --parts p       # the prefill alone: CPU kernel against XLA

(a) the peer shape: random Qwen2, vocab 32000, hidden 256, 4 layers, 4 heads, FFN 1024, tied
    embeddings; batch 8, prompt 32, 128 new tokens, temperature 1 (target >= 4x HF).
(b) SmolLM2-135M-Instruct (embedded) at batch 8 and 32, prompt 32, 128 new tokens, temperature 1
    (target >= 3x HF).
(c) group fan-out: one 2048-token prompt, G=8, the (a) model: prefill once and copy the cache to
    8 rows, against a naive prefill of the prompt repeated 8 times (target ~1/8 of the time).
No eos in (a)/(b): every row generates all 128 tokens in both systems. Our timings include
prefill, decode and the copy of the results to the host, after one warm-up call (compilation).
Runs of the two systems are interleaved; the table shows the best run of each (and the median).
"zeroplay" calls generate again on the same params (the CPU kernel's packed weights are reused);
"fresh params" passes new param arrays each time, as after a train step, so the packing is timed.
(p) the prefill alone on SmolLM2 (no HF side): the CPU kernel's prefill (all prompt tokens in
    one fused call) against the decoder's XLA prefill, with the FLOP rate of each.
--with-xla adds the XLA decode step (decode_kernel="xla"), the path of GPUs, TPUs and meshes.
Rooflines: per decode step, bytes read (every weight once, plus the live KV cache) over the
memory bandwidth, and FLOPs over the matmul rate, both measured at the start of this run; the
request roofline adds the prefill FLOPs, since the timings include the prefill.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from machine import machine_rates, timed
from zeroplay.models import embedded_dir, load_pretrained
from zeroplay.sampling import generate, prefill

PEER = dict(vocab_size=32000, hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, tie_word_embeddings=True, max_position_embeddings=4096)


def decode_roofline(cfg, batch: int, prompt: int, new: int, flops_s: float, bw: float) -> dict:
    """Best decode tokens/s allowed by bandwidth and by matmul rate (average over the steps)."""
    d, nh, nkv, layers = cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads, cfg.num_layers
    h, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    matmul_params = layers * (h * d * (nh + 2 * nkv) + nh * d * h + 3 * h * f) + h * v
    weight_bytes = 4 * matmul_params  # float32; the embedding row gather is negligible
    ctx = prompt + new / 2  # average live context per step
    cache_bytes = 4 * 2 * layers * batch * ctx * nkv * d
    step_bytes = weight_bytes + cache_bytes
    step_flops = 2 * batch * matmul_params + 4 * batch * layers * ctx * nh * d
    t_bw, t_fl = step_bytes / bw, step_flops / flops_s
    return {"bytes": step_bytes, "flops": step_flops, "t_bw": t_bw, "t_flops": t_fl,
            "tok_s": batch / max(t_bw, t_fl), "bound": "bandwidth" if t_bw > t_fl else "compute"}


def hf_generate(model, ids: np.ndarray, new: int) -> float:
    x = torch.tensor(ids)
    with torch.inference_mode():
        t = time.perf_counter()
        model.generate(x, attention_mask=torch.ones_like(x), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                       max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
        return time.perf_counter() - t


def request_roofline(cfg, batch: int, prompt: int, new: int, flops_s: float, bw: float) -> float:
    """Best tokens/s for the whole request as timed: prefill FLOPs at the matmul rate, then the decode steps."""
    d, nh, nkv, layers = cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads, cfg.num_layers
    h, f = cfg.hidden_size, cfg.intermediate_size
    layer_params = layers * (h * d * (nh + 2 * nkv) + nh * d * h + 3 * h * f)
    prefill_flops = 2 * batch * prompt * layer_params + 2 * batch * layers * prompt * prompt * nh * d
    step = decode_roofline(cfg, batch, prompt, new, flops_s, bw)
    return batch * new / (prefill_flops / flops_s + (new - 1) * max(step["t_bw"], step["t_flops"]))


def ours_generate(model, params, ids: np.ndarray, new: int, seed: int, decode_kernel: str = "auto") -> float:
    t = time.perf_counter()
    out = generate(model, params, [list(r) for r in ids], max_new_tokens=new, temperature=1.0,
                   rng=jax.random.PRNGKey(seed), decode_kernel=decode_kernel)
    assert int(out.lengths.min()) == new
    return time.perf_counter() - t


def compare(name, hf_model, model, params, batch, prompt, new, reps, flops_s, bw, with_xla: bool) -> dict:
    """Interleaved runs: HF; ours (params unchanged since the last call: decode weights reused);
    ours on fresh param arrays (as after a train step: the CPU kernel's weight packing is timed);
    optionally ours with the XLA decode step instead of the fused CPU kernel."""
    ids = np.random.RandomState(0).randint(0, model.cfg.vocab_size, (batch, prompt)).astype(np.int64)
    ours_generate(model, params, ids, new, 0)  # compile
    if with_xla:
        ours_generate(model, params, ids, new, 0, "xla")
    hf_generate(hf_model, ids[:, :4], 2)  # warm-up
    hf_t, our_t, fresh_t, xla_t = [], [], [], []
    for r in range(reps):
        hf_t.append(hf_generate(hf_model, ids, new))
        our_t.append(ours_generate(model, params, ids, new, r + 1))
        fresh = jax.block_until_ready(jax.tree.map(jnp.copy, params))
        fresh_t.append(ours_generate(model, fresh, ids, new, r + 1))
        del fresh
        if with_xla:
            xla_t.append(ours_generate(model, params, ids, new, r + 1, "xla"))
    toks = batch * new
    roof = decode_roofline(model.cfg, batch, prompt, new, flops_s, bw)
    row = {"name": name, "hf": toks / min(hf_t), "ours": toks / min(our_t), "hf_med": toks / statistics.median(hf_t),
           "ours_med": toks / statistics.median(our_t), "fresh": toks / min(fresh_t),
           "xla": toks / min(xla_t) if xla_t else None, "roof": roof,
           "req_roof": request_roofline(model.cfg, batch, prompt, new, flops_s, bw)}
    row["ratio"] = row["ours"] / row["hf"]
    row["ratio_med"] = row["ours_med"] / row["hf_med"]
    return row


def peer_models(tmp: str):
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(transformers.Qwen2Config(**PEER)).float().eval()
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp)
    model, params = load_pretrained(tmp)
    return hf, model, params


def fanout(model, params, prompt_len: int, g: int, reps: int) -> dict:
    prompt = list(np.random.RandomState(1).randint(0, model.cfg.vocab_size, prompt_len))

    def run(prompts, samples):
        state, _ = prefill(model, params, prompts, max_new_tokens=16, num_samples=samples, temperature=1.0)
        jax.block_until_ready(state)

    run([prompt], g)
    run([prompt] * g, 1)
    once, naive = [], []
    for _ in range(reps):
        once.append(timed(lambda: run([prompt], g)))
        naive.append(timed(lambda: run([prompt] * g, 1)))
    return {"once": min(once), "naive": min(naive)}


def prefill_rates(model, params, shapes, reps: int, flops_s: float) -> list[dict]:
    """The prefill (and fan-out copy) alone, through the CPU kernel and through XLA, interleaved."""
    cfg = model.cfg
    d, nh, nkv, layers = cfg.dim_per_head, cfg.num_heads, cfg.num_kv_heads, cfg.num_layers
    h, f = cfg.hidden_size, cfg.intermediate_size
    layer_params = layers * (h * d * (nh + 2 * nkv) + nh * d * h + 3 * h * f)
    out = []
    for batch, plen in shapes:
        ids = np.random.RandomState(2).randint(0, cfg.vocab_size, (batch, plen))
        prompts = [list(r) for r in ids]

        def run(kernel):
            state, _ = prefill(model, params, prompts, max_new_tokens=128, temperature=1.0, decode_kernel=kernel)
            jax.block_until_ready(state)

        times = {"cpu": [], "xla": []}
        for k in times:
            run(k)  # compile
        for _ in range(reps):
            for k in times:
                times[k].append(timed(lambda: run(k)))
        flops = 2 * batch * plen * layer_params + 2 * batch * layers * plen * plen * nh * d
        out.append({"batch": batch, "plen": plen, "flops": flops, "roof": flops / flops_s,
                    **{k: min(v) for k, v in times.items()}})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="a,b,c")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--with-xla", action="store_true", help="also time the XLA decode step (no CPU kernel)")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(os.cpu_count() or 1)
    flops_s, bw = machine_rates()
    print(f"machine: {os.cpu_count()} CPU cores, jax {jax.__version__}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    print(f"measured: matmul {flops_s / 1e9:.0f} GFLOP/s (2048^2 float32), copy bandwidth {bw / 1e9:.1f} GB/s "
          f"(read + written); load average at start {os.getloadavg()[0]:.1f} (other processes share the cores)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        hf, model, params = peer_models(tmp)
        if "a" in parts:
            rows.append(compare("(a) peer Qwen2 b8 p32 n128", hf, model, params, 8, 32, 128, args.reps, flops_s, bw,
                                args.with_xla))
        if "c" in parts:
            fo = fanout(model, params, 2048, 8, args.reps)
        del hf
    if "b" in parts:
        hf = transformers.AutoModelForCausalLM.from_pretrained(embedded_dir()).float().eval()
        hf.generation_config.eos_token_id = None
        model, params = load_pretrained("smollm2-135m-instruct")
        for b in (8, 32):
            rows.append(compare(f"(b) SmolLM2-135M b{b} p32 n128", hf, model, params, b, 32, 128,
                                max(1, args.reps - 1), flops_s, bw, args.with_xla))
    if "p" in parts:
        model, params = load_pretrained("smollm2-135m-instruct")
        pre = prefill_rates(model, params, [(32, 32), (8, 512), (1, 2048)], args.reps, flops_s)
        print("\n| prefill, SmolLM2 | GFLOP | XLA | CPU kernel | speed-up | kernel GFLOP/s | kernel / matmul rate |")
        print("|---|---|---|---|---|---|---|")
        for r in pre:
            print(f"| b{r['batch']} p{r['plen']} | {r['flops'] / 1e9:.0f} | {r['xla'] * 1e3:.0f} ms | "
                  f"{r['cpu'] * 1e3:.0f} ms | {r['xla'] / r['cpu']:.2f}x | {r['flops'] / r['cpu'] / 1e9:.0f} | "
                  f"{r['roof'] / r['cpu']:.0%} |")
    if rows:
        print()
        print("| case | HF tok/s | zeroplay tok/s | ratio (best) | ratio (median) | fresh params: tok/s, ratio "
              "| XLA decode step: tok/s, ratio | decode roofline tok/s | request roofline tok/s "
              "| zeroplay / request roofline |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            rf = r["roof"]
            xla = f"{r['xla']:.0f}, {r['xla'] / r['hf']:.2f}x" if r["xla"] else "not run"
            print(f"| {r['name']} | {r['hf']:.0f} | {r['ours']:.0f} | {r['ratio']:.2f}x | {r['ratio_med']:.2f}x | "
                  f"{r['fresh']:.0f}, {r['fresh'] / r['hf']:.2f}x | {xla} | "
                  f"{rf['tok_s']:.0f} ({rf['bound']}: {rf['bytes'] / 1e6:.0f} MB, {rf['flops'] / 1e9:.2f} GFLOP "
                  f"per step) | {r['req_roof']:.0f} | {r['ours'] / r['req_roof']:.0%} |")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    if "c" in parts:
        print()
        print(f"(c) fan-out, 2048-token prompt, G=8 (peer model): prefill once + copy {fo['once'] * 1e3:.0f} ms, "
              f"naive 8-fold prefill {fo['naive'] * 1e3:.0f} ms, ratio {fo['once'] / fo['naive']:.3f} "
              f"(ideal 0.125)")


if __name__ == "__main__":
    main()
