#!/usr/bin/env bash
# Launch a config on every worker of a slice, in the background (nohup), one log per worker
# (~/zeroplay_train.log on each). The workdir must be a bucket path every host reaches
# (gs://...): Orbax writes each checkpoint collectively from all hosts.
#
#   tpu_scripts/launch.sh --name my-v5p-64 --zone us-east5-a \
#       --config configs/azr.py:qwen2.5-7b-coder-tpu --workdir gs://my-bucket/azr7b [--dry_run] \
#       [-- --config.steps=100 ...]
# Arguments after -- go to zeroplay.train. Env: TPU_NAME, ZONE, PROJECT, CONFIG, WORKDIR,
# ZEROPLAY_MODELS (where the workers read models; default ~/models).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
NAME=${TPU_NAME:-} ZONE=${ZONE:-} CONFIG=${CONFIG:-} WORKDIR=${WORKDIR:-} LOCAL_OK=0
MODELS=${ZEROPLAY_MODELS:-\$HOME/models}
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=${2:-}; shift 2 ;;
    --zone) ZONE=${2:-}; shift 2 ;;
    --project) PROJECT=${2:-}; shift 2 ;;
    --config) CONFIG=${2:-}; shift 2 ;;
    --workdir) WORKDIR=${2:-}; shift 2 ;;
    --allow_local_workdir) LOCAL_OK=1; shift ;;
    --dry_run) DRY_RUN=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
need "$NAME" "--name (or TPU_NAME)"
need "$ZONE" "--zone (or ZONE)"
need "$CONFIG" "--config (or CONFIG), e.g. configs/azr.py:qwen2.5-7b-coder-tpu"
need "$WORKDIR" "--workdir (or WORKDIR), a bucket path such as gs://bucket/run"
if [[ "$WORKDIR" != gs://* && "$LOCAL_OK" != 1 ]]; then
  die "--workdir $WORKDIR is not a gs:// path; Orbax checkpoints need one path all workers share (or --allow_local_workdir for one host)"
fi
mapfile -t P < <(project_args)
printf -v TRAIN '%q ' python -m zeroplay.train --config "$CONFIG" --workdir "$WORKDIR" "${EXTRA[@]}"
REMOTE="cd ~/zeroplay && ZEROPLAY_MODELS=$MODELS nohup ${TRAIN% } > ~/zeroplay_train.log 2>&1 < /dev/null &"
run gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all "${P[@]}" --command "$REMOTE"
