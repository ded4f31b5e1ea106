"""The fused CPU kernel's matmuls alone, on the shapes of a SmolLM2-135M decode step.

    python benchmarks/kernel_matmul.py [iterations]

Compiles benchmarks/kernel_matmul.cc (which includes zeroplay/kernels/cpu_decode.cc) with the
kernel's own flags and runs it: the FMA peak of this CPU (independent FMA chains on every
thread), then the time of the 121 matmuls of one step (30 layers of qkv, o, gate/up, down, and
the 576 x 49152 LM head; 538 MB of packed float32 weights) at batch 1, 8 and 32. Batch 1 only
streams the weights, so its read rate is the practical bandwidth ceiling for batch 8.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax.ffi

from zeroplay.kernels import _FLAGS, _compiler


def main():
    here = Path(__file__).parent
    flags = [f for f in _FLAGS if f not in ("-shared", "-fPIC")]
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "kernel_matmul")
        subprocess.run([_compiler(), *flags, f"-I{jax.ffi.include_dir()}", str(here / "kernel_matmul.cc"), "-o", exe],
                       check=True, capture_output=True)
        subprocess.run([exe, *sys.argv[1:]], check=True)


if __name__ == "__main__":
    main()
