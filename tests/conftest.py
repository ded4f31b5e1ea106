"""Test setup: 8 simulated CPU devices for sharding tests, set before JAX is imported; the
`decode_kernel` fixture (each sampler test on both decode steps) and `cpu_kernel` (kernel-only tests)."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402  (after the environment above, which must precede any JAX import)


def _skip_without_cpu_kernel():
    from zeroplay.kernels import cpu_decode_available, cpu_decode_unavailable_reason

    if not cpu_decode_available():  # builds and registers the kernel on first use
        pytest.skip(f"the fused CPU decode kernel is unavailable: {cpu_decode_unavailable_reason()}")


@pytest.fixture(params=["xla", "cpu"])
def decode_kernel(request):
    """The sampler's decode step under test: "xla" (XLA operations, what GPUs and TPUs run) and
    "cpu" (the fused CPU kernel, skipped with the reason where it cannot be built)."""
    if request.param == "cpu":
        _skip_without_cpu_kernel()
    return request.param


@pytest.fixture
def cpu_kernel():
    """For tests of the fused CPU kernel alone: skipped with the reason where it cannot be built."""
    _skip_without_cpu_kernel()
