"""Which models the fused CPU decode kernel takes: `cpu_decode.kernel_supports(cfg)`, the one check
of the config, refuses every model feature the kernel does not implement (with the reason), and
the sampler's choice (`use_cpu_kernel`) then runs XLA under "auto" and refuses "cpu"."""
import dataclasses

import jax.numpy as jnp
import pytest

import zeroplay.kernels as kernels
from zeroplay.models import ModelConfig
from zeroplay.sampling import cpu_decode

BASE = ModelConfig(family="llama", vocab_size=97, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4,
                   num_kv_heads=2)
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32}


@dataclasses.dataclass(frozen=True)
class _FutureConfig(ModelConfig):
    """A config with a model feature added after the kernel (as a new family would add one)."""
    sliding_window: int | None = None
    attn_logit_softcapping: float | None = None


SUPPORTED = {
    "llama": BASE,
    "llama-tied": BASE.replace(tie_word_embeddings=True),
    "llama3-rope-scaling": BASE.replace(rope_scaling=LLAMA3_ROPE),
    "linear-rope-scaling": BASE.replace(rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "qwen2-biases": BASE.replace(family="qwen2", attention_bias=True, num_kv_heads=4),
    "qwen3-qk-norm": BASE.replace(family="qwen3", qk_norm=True, head_dim=32),
    "bf16-params-f32-compute": BASE.replace(param_dtype=jnp.bfloat16),
    "unscanned-remat": BASE.replace(scan_layers=False, remat="full"),
    "future-feature-off": _FutureConfig(**{f.name: getattr(BASE, f.name) for f in dataclasses.fields(BASE)}),
}

UNSUPPORTED = {  # name: (config, a piece of the reason)
    "bf16-compute": (BASE.replace(dtype=jnp.bfloat16), "bfloat16"),
    "family": (BASE.replace(family="gemma"), "family 'gemma'"),
    "kv-width": (BASE.replace(num_heads=3, num_kv_heads=1, hidden_size=72), "multiple of 16"),
    "head-dim-8": (BASE.replace(head_dim=20, num_kv_heads=4), "multiples of 8"),
    "mlp-width-8": (BASE.replace(intermediate_size=100), "multiples of 8"),
    "head-dim-max": (BASE.replace(head_dim=2048), "1024"),
    "gqa-groups": (BASE.replace(num_heads=6, num_kv_heads=4), "multiple of num_kv_heads"),
    "sliding-window": (_FutureConfig(**{**{f.name: getattr(BASE, f.name) for f in dataclasses.fields(BASE)},
                                        "sliding_window": 4096}), "sliding_window=4096"),
    "softcap": (_FutureConfig(**{**{f.name: getattr(BASE, f.name) for f in dataclasses.fields(BASE)},
                                 "attn_logit_softcapping": 30.0}), "attn_logit_softcapping"),
}


@pytest.fixture
def kernel_built(monkeypatch):
    """The kernel as if built here, so the choice depends on the model alone."""
    monkeypatch.setitem(kernels._STATE, "ok", True)
    monkeypatch.setitem(kernels._STATE, "why", "")


@pytest.mark.parametrize("name", sorted(SUPPORTED))
def test_supported_model_takes_the_kernel(name, kernel_built):
    cfg = SUPPORTED[name]
    assert cpu_decode.kernel_supports(cfg) == ""
    assert cpu_decode.use_cpu_kernel("auto", cfg, None)
    assert cpu_decode.use_cpu_kernel("cpu", cfg, None)


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_feature_runs_xla(name, kernel_built):
    cfg, reason = UNSUPPORTED[name]
    why = cpu_decode.kernel_supports(cfg)
    assert reason in why
    assert not cpu_decode.use_cpu_kernel("auto", cfg, None)
    assert not cpu_decode.use_cpu_kernel("xla", cfg, None)
    with pytest.raises(ValueError, match="decode_kernel='cpu' is not available") as e:
        cpu_decode.use_cpu_kernel("cpu", cfg, None)
    assert reason in str(e.value)


def test_every_config_field_is_known_to_the_check():
    """A field of ModelConfig the kernel check does not list is refused unless at its default:
    a new model feature must be declared supported explicitly (in cpu_decode._FEATURES)."""
    assert {f.name for f in dataclasses.fields(ModelConfig)} <= set(cpu_decode._FEATURES)
