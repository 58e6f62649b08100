#!/usr/bin/env bash
# Trains bert_jax on a Cloud TPU VM pod slice: the same command on every worker.
#
#   launch/tpu_vm.sh [--dry_run] STEPS [--OPTION=VALUE ...] [-- EXTRA_ARGS...]
#
# STEPS, comma-separated, in order: create (the TPU VM), setup (copy this checkout to every worker
# and install it), mount (gcsfuse-mount every bucket that a gs:// path names at /gcs/BUCKET on every
# worker: bert_jax reads and writes files), train (python -m bert_jax.main on all workers, gs://
# paths given as their /gcs mounts), collect (copy the workdir from GCS to --collect_to), delete
# (the TPU VM); `all` = create,setup,mount,train,collect.
# Options (or the environment variables in capitals): --tpu_name (TPU_NAME), --zone (ZONE),
# --accelerator_type (ACCELERATOR_TYPE), --runtime_version (RUNTIME_VERSION), --project (PROJECT),
# --bucket (BUCKET), --config (CONFIG), --workdir (WORKDIR, a gs:// path; default
# gs://BUCKET/bert_jax/TPU_NAME), --collect_to (COLLECT_TO). EXTRA_ARGS go to bert_jax.main.
#
#   launch/tpu_vm.sh all --tpu_name=bert-v4 --zone=us-central2-b --accelerator_type=v4-32 \
#     --bucket=my-bucket --config=configs/pretrain.py:model=base \
#     -- --config.data.data_dir=gs://my-bucket/wiki_books
#
# --dry_run (or DRY_RUN=1) prints the commands without running them.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$REPO/launch/_common.sh"

TPU_NAME=${TPU_NAME:-bert-jax}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-32}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
PROJECT=${PROJECT:-}
BUCKET=${BUCKET:-}
CONFIG=${CONFIG:-configs/pretrain.py:model=base}
WORKDIR=${WORKDIR:-}
COLLECT_TO=${COLLECT_TO:-}
STEPS=""
EXTRA=()
while (($#)); do
  case "$1" in
    --dry_run) DRY_RUN=1 ;;
    --tpu_name=*) TPU_NAME=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --accelerator_type=*) ACCELERATOR_TYPE=${1#*=} ;;
    --runtime_version=*) RUNTIME_VERSION=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --bucket=*) BUCKET=${1#*=} ;;
    --config=*) CONFIG=${1#*=} ;;
    --workdir=*) WORKDIR=${1#*=} ;;
    --collect_to=*) COLLECT_TO=${1#*=} ;;
    --) shift; EXTRA=("$@"); break ;;
    -*) die "unknown option $1 (see the usage at the top of $0)" ;;
    *) [[ -z "$STEPS" ]] || die "one STEPS argument, comma-separated: got '$STEPS' and '$1'"
       STEPS=$1 ;;
  esac
  shift
done
[[ -n "$STEPS" ]] || die "no STEPS given: create, setup, train, collect, delete or all"
[[ "$STEPS" == all ]] && STEPS=create,setup,mount,train,collect
# Check every step before running any: a typo must not leave a half-done launch behind.
for step in ${STEPS//,/ }; do
  [[ "$step" =~ ^(create|setup|mount|train|collect|delete)$ ]] ||
    die "unknown step '$step': create, setup, mount, train, collect, delete or all"
done
if [[ -z "$WORKDIR" ]]; then
  [[ -n "$BUCKET" ]] || die "set --workdir=gs://... or --bucket=BUCKET"
  WORKDIR=gs://$BUCKET/bert_jax/$TPU_NAME
fi
# Every worker of a pod slice writes checkpoints and reads data: the workdir must be shared.
[[ "$WORKDIR" == gs://* ]] || die "--workdir must be a gs:// path, got '$WORKDIR'"
COLLECT_TO=${COLLECT_TO:-runs/$(basename "$WORKDIR")}

GCLOUD_FLAGS=(--zone="$ZONE")
[[ -n "$PROJECT" ]] && GCLOUD_FLAGS+=(--project="$PROJECT")
TARBALL=/tmp/bert_jax_src.tar.gz

for step in ${STEPS//,/ }; do
  case "$step" in
    create)
      run gcloud compute tpus tpu-vm create "$TPU_NAME" "${GCLOUD_FLAGS[@]}" \
        --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" ;;
    setup)
      run tar -czf "$TARBALL" -C "$REPO" --exclude=.git --exclude=.venv --exclude=__pycache__ .
      run gcloud compute tpus tpu-vm scp "$TARBALL" "$TPU_NAME:bert_jax_src.tar.gz" \
        --worker=all "${GCLOUD_FLAGS[@]}"
      run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${GCLOUD_FLAGS[@]}" \
        --command="mkdir -p ~/bert_jax && tar -xzf ~/bert_jax_src.tar.gz -C ~/bert_jax && \
python3 -m pip install -q -e ~/bert_jax 'jax[tpu]==0.10.2'" ;;
    mount)
      # bert_jax reads and writes files: every worker mounts the buckets it uses at /gcs/BUCKET.
      # shellcheck disable=SC2046
      run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${GCLOUD_FLAGS[@]}" \
        --command="$(mount_command $(buckets "$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"}))" ;;
    train)
      # jax.distributed finds the other workers of the slice by itself (bert_jax.main).
      mounted --workdir="$WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"}
      run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${GCLOUD_FLAGS[@]}" \
        --command="cd ~/bert_jax && $(quote python3 -m bert_jax.main --config="$CONFIG" \
"${MOUNTED[@]}")" ;;
    collect)
      run mkdir -p "$COLLECT_TO"
      run gcloud storage rsync --recursive "$WORKDIR" "$COLLECT_TO" ;;
    delete)
      run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --quiet ;;
  esac
done
