#!/usr/bin/env bash
# Trains bert_jax on a GKE TPU cluster as an xpk workload (one pod per TPU VM host).
#
#   launch/xpk.sh [--dry_run] [--OPTION=VALUE ...] [-- EXTRA_ARGS...]
#
# Options (or the environment variables in capitals): --cluster (CLUSTER), --workload (WORKLOAD),
# --tpu_type (TPU_TYPE, e.g. v5p-128), --num_slices (NUM_SLICES), --project (PROJECT), --zone
# (ZONE), --config (CONFIG), --workdir (WORKDIR, a gs:// path), --docker_image (DOCKER_IMAGE: a
# prebuilt image with bert_jax installed; without it xpk builds one from BASE_IMAGE and this
# checkout, --base_image). EXTRA_ARGS go to bert_jax.main.
#
#   launch/xpk.sh --cluster=my-v5p --tpu_type=v5p-128 --workload=bert-base \
#     --config=configs/pretrain.py:model=base --workdir=gs://my-bucket/bert_base \
#     -- --config.data.data_dir=gs://my-bucket/wiki_books
#
# The cluster comes first: `xpk cluster create --cluster=... --tpu-type=... --num-slices=...`.
# --dry_run (or DRY_RUN=1) prints the command without running it.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$REPO/launch/_common.sh"

CLUSTER=${CLUSTER:-}
WORKLOAD=${WORKLOAD:-bert-jax-$(date +%m%d-%H%M)}
TPU_TYPE=${TPU_TYPE:-v5p-128}
NUM_SLICES=${NUM_SLICES:-1}
PROJECT=${PROJECT:-}
ZONE=${ZONE:-}
CONFIG=${CONFIG:-configs/pretrain.py:model=base}
WORKDIR=${WORKDIR:-}
DOCKER_IMAGE=${DOCKER_IMAGE:-}
BASE_IMAGE=${BASE_IMAGE:-python:3.11}
EXTRA=()
while (($#)); do
  case "$1" in
    --dry_run) DRY_RUN=1 ;;
    --cluster=*) CLUSTER=${1#*=} ;;
    --workload=*) WORKLOAD=${1#*=} ;;
    --tpu_type=*) TPU_TYPE=${1#*=} ;;
    --num_slices=*) NUM_SLICES=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --config=*) CONFIG=${1#*=} ;;
    --workdir=*) WORKDIR=${1#*=} ;;
    --docker_image=*) DOCKER_IMAGE=${1#*=} ;;
    --base_image=*) BASE_IMAGE=${1#*=} ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown argument $1 (see the usage at the top of $0)" ;;
  esac
  shift
done
[[ -n "$CLUSTER" ]] || die "set --cluster=NAME (a cluster made by 'xpk cluster create')"
# Every host writes checkpoints and reads data: the workdir must be shared.
[[ "$WORKDIR" == gs://* ]] || die "--workdir must be a gs:// path, got '$WORKDIR'"

# bert_jax reads and writes files: the pods see each bucket at /gcs/BUCKET, mounted by the GCS FUSE
# CSI driver (`xpk storage attach NAME --type=gcsfuse --bucket=BUCKET --mount-point=/gcs/BUCKET`).
mounted --workdir="$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"}
TRAIN=$(quote python3 -m bert_jax.main --config="$CONFIG" "${MOUNTED[@]}")
FLAGS=(--cluster="$CLUSTER" --workload="$WORKLOAD" --tpu-type="$TPU_TYPE"
  --num-slices="$NUM_SLICES")
[[ -n "$PROJECT" ]] && FLAGS+=(--project="$PROJECT")
[[ -n "$ZONE" ]] && FLAGS+=(--zone="$ZONE")
if [[ -n "$DOCKER_IMAGE" ]]; then
  FLAGS+=(--docker-image="$DOCKER_IMAGE" --command="$TRAIN")
else
  # xpk copies --script-dir into an image built on the base image; install it there first.
  FLAGS+=(--base-docker-image="$BASE_IMAGE" --script-dir="$REPO"
    --command="python3 -m pip install -q -e . 'jax[tpu]==0.10.2' && $TRAIN")
fi
run xpk workload create "${FLAGS[@]}"
