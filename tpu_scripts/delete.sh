#!/usr/bin/env bash
# Delete a slice (created with create.sh; --queued for one made through queued resources).
#
#   tpu_scripts/delete.sh --name my-v5p-64 --zone us-east5-a [--queued] [--dry_run]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
NAME=${TPU_NAME:-} ZONE=${ZONE:-} QUEUED=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=${2:-}; shift 2 ;;
    --zone) ZONE=${2:-}; shift 2 ;;
    --project) PROJECT=${2:-}; shift 2 ;;
    --queued) QUEUED=1; shift ;;
    --dry_run) DRY_RUN=1; shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
need "$NAME" "--name (or TPU_NAME)"
need "$ZONE" "--zone (or ZONE)"
mapfile -t P < <(project_args)
if [[ "$QUEUED" == 1 ]]; then
  run gcloud compute tpus queued-resources delete "$NAME" --zone="$ZONE" --force --quiet "${P[@]}"
else
  run gcloud compute tpus tpu-vm delete "$NAME" --zone="$ZONE" --quiet "${P[@]}"
fi
