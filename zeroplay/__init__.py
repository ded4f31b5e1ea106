"""zeroplay: zero-data self-play RL for reasoning language models in JAX/Flax.

Subpackages: `models` (Flax decoder, Hugging Face and GGUF import/export), `sampling` (jitted
KV-cache sampler), `rl` (losses, advantages, train step), `verifiers` (math, vote, sandboxed code),
`parallel` (mesh and logical-axis sharding), `checkpoint` (Orbax, exact resume).
"""

__version__ = "0.1.0"
