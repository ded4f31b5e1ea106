#!/usr/bin/env bash
# Run one command on every worker of a TPU VM pod slice (plain multi-controller JAX: every host
# runs the same program and jax.distributed finds its peers from the TPU metadata; no Pathways).
#
#   TPU_NAME=my-v5e-16 ZONE=us-west4-a tpu_scripts/run_all_workers.sh [--dry_run] \
#       "cd zeroplay && python -m zeroplay.train --config configs/default.py --workdir gs://bucket/run1"
#   (also --name, --zone, --project flags)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
NAME=${TPU_NAME:-} ZONE=${ZONE:-} CMD=''
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=${2:-}; shift 2 ;;
    --zone) ZONE=${2:-}; shift 2 ;;
    --project) PROJECT=${2:-}; shift 2 ;;
    --dry_run) DRY_RUN=1; shift ;;
    -*) die "unknown argument $1 (see the header of $0)" ;;
    *) CMD=$1; shift ;;
  esac
done
need "$NAME" "--name (or TPU_NAME)"
need "$ZONE" "--zone (or ZONE)"
need "$CMD" "the command to run (usage: run_all_workers.sh \"command\")"
mapfile -t P < <(project_args)
run gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all "${P[@]}" --command "$CMD"
