#!/usr/bin/env bash
# Create a TPU VM or pod slice (every worker gets the same software version).
#
#   tpu_scripts/create.sh --name my-v5p-64 --zone us-east5-a --accelerator v5p-64 \
#       --version v2-alpha-tpuv5 [--spot] [--queued] [--project P] [--dry_run]
#
# --spot: a preemptible Spot slice; --queued: ask through queued resources (waits for capacity;
# `gcloud compute tpus queued-resources list` shows its state). Flags or env: TPU_NAME, ZONE,
# ACCELERATOR_TYPE, TPU_VERSION, PROJECT.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
NAME=${TPU_NAME:-} ZONE=${ZONE:-} ACCEL=${ACCELERATOR_TYPE:-} VERSION=${TPU_VERSION:-} SPOT=0 QUEUED=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=${2:-}; shift 2 ;;
    --zone) ZONE=${2:-}; shift 2 ;;
    --accelerator) ACCEL=${2:-}; shift 2 ;;
    --version) VERSION=${2:-}; shift 2 ;;
    --project) PROJECT=${2:-}; shift 2 ;;
    --spot) SPOT=1; shift ;;
    --queued) QUEUED=1; shift ;;
    --dry_run) DRY_RUN=1; shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
need "$NAME" "--name (or TPU_NAME)"
need "$ZONE" "--zone (or ZONE)"
need "$ACCEL" "--accelerator (or ACCELERATOR_TYPE), e.g. v5p-64"
need "$VERSION" "--version (or TPU_VERSION), the TPU software version, e.g. v2-alpha-tpuv5"
mapfile -t P < <(project_args)
extra=()
if [[ "$SPOT" == 1 ]]; then extra=(--spot); fi
if [[ "$QUEUED" == 1 ]]; then
  run gcloud compute tpus queued-resources create "$NAME" --node-id="$NAME" --zone="$ZONE" \
    --accelerator-type="$ACCEL" --runtime-version="$VERSION" "${extra[@]}" "${P[@]}"
else
  run gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" --accelerator-type="$ACCEL" \
    --version="$VERSION" "${extra[@]}" "${P[@]}"
fi
