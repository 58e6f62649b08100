#!/usr/bin/env bash
# Submits launch/slurm.sbatch: one bert_jax process per node, GPUs of each node shared by it.
#
#   launch/slurm.sh [--dry_run] --config=CONFIG --workdir=DIR [--nodes=N] [--gpus_per_node=G] \
#     [--partition=P] [--time=HH:MM:SS] [--job_name=NAME] [-- EXTRA_ARGS...]
#
#   launch/slurm.sh --nodes=2 --config=configs/pretrain.py:model=large \
#     --workdir=/shared/runs/bert_large -- --config.data.data_dir=/shared/wiki_books
#
# --dry_run (or DRY_RUN=1) prints the sbatch command without submitting it.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$REPO/launch/_common.sh"

NODES=${NODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
PARTITION=${PARTITION:-}
TIME=${TIME:-24:00:00}
JOB_NAME=${JOB_NAME:-bert_jax}
CONFIG=${CONFIG:-}
WORKDIR=${WORKDIR:-}
EXTRA=()
while (($#)); do
  case "$1" in
    --dry_run) DRY_RUN=1 ;;
    --nodes=*) NODES=${1#*=} ;;
    --gpus_per_node=*) GPUS_PER_NODE=${1#*=} ;;
    --partition=*) PARTITION=${1#*=} ;;
    --time=*) TIME=${1#*=} ;;
    --job_name=*) JOB_NAME=${1#*=} ;;
    --config=*) CONFIG=${1#*=} ;;
    --workdir=*) WORKDIR=${1#*=} ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument $1 (see the usage at the top of $0)" ;;
  esac
  shift
done
[[ -n "$CONFIG" && -n "$WORKDIR" ]] || die "set --config=CONFIG and --workdir=DIR"

FLAGS=(--nodes="$NODES" --gpus-per-node="$GPUS_PER_NODE" --time="$TIME" --job-name="$JOB_NAME")
[[ -n "$PARTITION" ]] && FLAGS+=(--partition="$PARTITION")
cd "$REPO"  # the job starts in the submission directory: the repository
run sbatch "${FLAGS[@]}" launch/slurm.sbatch "$CONFIG" "$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"}
