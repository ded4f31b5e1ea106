#!/usr/bin/env bash
# Stream the training log of worker 0 (or every worker, each line prefixed by gcloud).
#
#   tpu_scripts/logs.sh --name my-v5p-64 --zone us-east5-a [--worker 0|all] [--lines 100] [--no_follow] [--dry_run]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
NAME=${TPU_NAME:-} ZONE=${ZONE:-} WORKER=0 LINES=100 FOLLOW=-f
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=${2:-}; shift 2 ;;
    --zone) ZONE=${2:-}; shift 2 ;;
    --project) PROJECT=${2:-}; shift 2 ;;
    --worker) WORKER=${2:-}; shift 2 ;;
    --lines) LINES=${2:-}; shift 2 ;;
    --no_follow) FOLLOW=; shift ;;
    --dry_run) DRY_RUN=1; shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
need "$NAME" "--name (or TPU_NAME)"
need "$ZONE" "--zone (or ZONE)"
[[ "$WORKER" == all || "$WORKER" =~ ^[0-9]+$ ]] || die "--worker must be a number or all, got $WORKER"
[[ "$LINES" =~ ^[0-9]+$ ]] || die "--lines must be a number, got $LINES"
mapfile -t P < <(project_args)
run gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker="$WORKER" "${P[@]}" \
  --command "tail -n $LINES${FOLLOW:+ $FOLLOW} ~/zeroplay_train.log"
