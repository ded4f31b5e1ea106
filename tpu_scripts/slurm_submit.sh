#!/usr/bin/env bash
# Submit tpu_scripts/slurm_gpu.sbatch: one srun task per node, jax.distributed from SLURM's env.
#
#   tpu_scripts/slurm_submit.sh --config configs/co_rewarding_ii.py:qwen3-8b-base-gpu4 \
#       --workdir /shared/runs/crii --nodes 1 --gpus_per_node 4 [--partition P] [--time 48:00:00] \
#       [--dry_run] [-- --config.steps=100 ...]
# --dry_run prints the sbatch command and the batch script and submits nothing.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
CONFIG=${CONFIG:-} WORKDIR=${WORKDIR:-} NODES=1 GPUS=8 PARTITION=${PARTITION:-} TIME=''
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) CONFIG=${2:-}; shift 2 ;;
    --workdir) WORKDIR=${2:-}; shift 2 ;;
    --nodes) NODES=${2:-}; shift 2 ;;
    --gpus_per_node) GPUS=${2:-}; shift 2 ;;
    --partition) PARTITION=${2:-}; shift 2 ;;
    --time) TIME=${2:-}; shift 2 ;;
    --dry_run) DRY_RUN=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
need "$CONFIG" "--config (or CONFIG), e.g. configs/co_rewarding_ii.py:qwen3-8b-base-gpu4"
need "$WORKDIR" "--workdir (or WORKDIR), a path every node sees"
[[ "$NODES" =~ ^[0-9]+$ && "$GPUS" =~ ^[0-9]+$ ]] || die "--nodes and --gpus_per_node must be numbers"
SCRIPT="$(dirname "$0")/slurm_gpu.sbatch"
opts=(--nodes="$NODES" --gpus-per-node="$GPUS" "--export=ALL,CONFIG=$CONFIG,WORKDIR=$WORKDIR")
if [[ -n "$PARTITION" ]]; then opts+=(--partition="$PARTITION"); fi
if [[ -n "$TIME" ]]; then opts+=(--time="$TIME"); fi
if [[ "$DRY_RUN" == 1 ]]; then
  echo "# $SCRIPT:"
  sed 's/^/# | /' "$SCRIPT"
fi
run sbatch "${opts[@]}" "$SCRIPT" "${EXTRA[@]}"
