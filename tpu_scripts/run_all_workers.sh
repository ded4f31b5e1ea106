#!/usr/bin/env bash
# Run one command on every worker of a TPU VM pod slice (plain multi-controller JAX: every host
# runs the same program and jax.distributed finds its peers from the TPU metadata; no Pathways).
#
#   TPU_NAME=my-v5e-16 ZONE=us-west4-a tpu_scripts/run_all_workers.sh \
#       "cd zeroplay && python -m zeroplay.train --config configs/default.py --workdir gs://bucket/run1"
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
CMD=${1:?usage: run_all_workers.sh "command"}
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$CMD"
