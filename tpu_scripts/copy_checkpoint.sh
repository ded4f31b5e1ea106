#!/usr/bin/env bash
# Copy a run's checkpoints (or one step of them) out of its bucket workdir, or, for a run on one
# host with a local workdir, from worker 0 with tpu-vm scp.
#
#   tpu_scripts/copy_checkpoint.sh --workdir gs://my-bucket/azr7b --dest ./azr7b [--step 100] [--dry_run]
#   tpu_scripts/copy_checkpoint.sh --name my-v5e-8 --zone us-west4-a --workdir runs/tiny --dest ./tiny   # scp
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
NAME=${TPU_NAME:-} ZONE=${ZONE:-} WORKDIR=${WORKDIR:-} DEST='' STEP=''
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=${2:-}; shift 2 ;;
    --zone) ZONE=${2:-}; shift 2 ;;
    --project) PROJECT=${2:-}; shift 2 ;;
    --workdir) WORKDIR=${2:-}; shift 2 ;;
    --dest) DEST=${2:-}; shift 2 ;;
    --step) STEP=${2:-}; shift 2 ;;
    --dry_run) DRY_RUN=1; shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
need "$WORKDIR" "--workdir (or WORKDIR): the run's gs:// path (or its path on worker 0)"
need "$DEST" "--dest, the local folder to copy into"
SRC="${WORKDIR%/}/checkpoints"
[[ -z "$STEP" ]] || SRC="$SRC/$STEP"
mapfile -t P < <(project_args)
run mkdir -p "$DEST"
if [[ "$WORKDIR" == gs://* ]]; then
  run gcloud storage cp -r "$SRC" "$WORKDIR/config.json" "$WORKDIR/metrics.jsonl" "$DEST/" "${P[@]}"
else
  need "$NAME" "--name (or TPU_NAME): a local workdir is copied from worker 0"
  need "$ZONE" "--zone (or ZONE)"
  run gcloud compute tpus tpu-vm scp --recurse "$NAME:zeroplay/$SRC" "$DEST/" --zone="$ZONE" --worker=0 "${P[@]}"
fi
