#!/usr/bin/env bash
# Stop a run on every worker: SIGTERM makes zeroplay.train finish its step, save and exit (rerun
# launch.sh with the same workdir to resume). With --delete, then delete the slice.
#
#   tpu_scripts/stop.sh --name my-v5p-64 --zone us-east5-a [--delete] [--queued] [--dry_run]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
NAME=${TPU_NAME:-} ZONE=${ZONE:-} DELETE=0 QUEUED=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=${2:-}; shift 2 ;;
    --zone) ZONE=${2:-}; shift 2 ;;
    --project) PROJECT=${2:-}; shift 2 ;;
    --delete) DELETE=1; shift ;;
    --queued) QUEUED=1; shift ;;
    --dry_run) DRY_RUN=1; shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
need "$NAME" "--name (or TPU_NAME)"
need "$ZONE" "--zone (or ZONE)"
mapfile -t P < <(project_args)
run gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all "${P[@]}" \
  --command 'pkill -TERM -f "python -m zeroplay.train" || true'
if [[ "$DELETE" == 1 ]]; then
  if [[ "$QUEUED" == 1 ]]; then
    run gcloud compute tpus queued-resources delete "$NAME" --zone="$ZONE" --force --quiet "${P[@]}"
  else
    run gcloud compute tpus tpu-vm delete "$NAME" --zone="$ZONE" --quiet "${P[@]}"
  fi
fi
