"""Cold and cached load time of the embedded SmolLM2-135M-Instruct.

    python benchmarks/load.py

Cold: GGUF dequantization + Q/K un-permutation + safetensors/tokenizer cache write + load, in a
fresh cache directory. Cached: memory-mapped safetensors -> device arrays. Each in a fresh process,
so JAX start-up and compilation are excluded only where stated.
"""
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
t0 = time.perf_counter()
import jax, jax.numpy as jnp
from zeroplay.models import load_pretrained, load_tokenizer
t1 = time.perf_counter()
model, params = load_pretrained("smollm2-135m-instruct")
jax.block_until_ready(params)
t2 = time.perf_counter()
tok = load_tokenizer("smollm2-135m-instruct")
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "tokenizer_s": t3 - t2,
                  "params": sum(x.size for x in jax.tree.leaves(params))}))
"""


def run(cache: str) -> dict:
    env = dict(os.environ, ZEROPLAY_CACHE=cache, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    with tempfile.TemporaryDirectory() as cache:
        cold = run(cache)
        warm = [run(cache) for _ in range(3)]
    best = min(warm, key=lambda r: r["load_s"])
    print(f"params: {cold['params']:,}")
    print(f"{'':10s} {'load_pretrained (s)':>20s} {'load_tokenizer (s)':>20s}")
    print(f"{'cold':10s} {cold['load_s']:20.2f} {cold['tokenizer_s']:20.2f}")
    print(f"{'cached':10s} {best['load_s']:20.2f} {best['tokenizer_s']:20.2f}")
    print(f"(jax + zeroplay import: {best['import_s']:.2f} s, not included)")


if __name__ == "__main__":
    main()
