#!/usr/bin/env bash
# The whole accelerator measurement in one command (under ten minutes on one H100/H200):
#   1. BERT-base, seq 128, bf16: bert_jax against transformers' PyTorch (bf16 autocast), XLA
#      attention and then cuDNN's fused attention; MFU against the datasheet peak, the step
#      against the chip's own bf16 matmul rate, memory;
#   2. BERT-large, seq 512, bf16, cuDNN attention: the same figures at the paper's longest length;
#   3. fine-tuning throughput (bert_jax padded and length-bucketed, transformers with dynamic
#      padding) on the Rotten Tomatoes length distribution (synthetic ids: no download there).
# Each benchmark appends its row to benchmarks/RESULTS.md; with OUT set (the device tool) the
# updated RESULTS.md is copied there. On the device tool, in one call (carry .whl):
#   set -o pipefail; bash benchmarks/gpu.sh 2>&1 | tee $OUT/gpu.log
#
# The GPU image has jax, flax, optax, orbax, torch and transformers but not ml_collections or
# grain: `bash benchmarks/gpu.sh --wheels` (here, with network) puts them into .whl/, which the
# run installs when present (carry .whl). transformers there is v5 (no Flax): no hf_flax peer.
# KerasHub needs tensorflow-text, too large to carry: its figures come from the CPU runs.
#
#   bash benchmarks/gpu.sh --wheels     # here, once: download the missing wheels into .whl/
#   bash benchmarks/gpu.sh              # on the GPU machine
#   bash benchmarks/gpu.sh --smoke      # every step at tiny sizes on any machine, no results
#   bash benchmarks/gpu.sh --dry_run    # print the commands only
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"

if [[ "${1:-}" == "--wheels" ]]; then
  # Versions pinned as in pyproject.toml; Python 3.12 and manylinux x86-64 as on the GPU image.
  for wheel in ml-collections==1.1.0 grain==0.2.18 array-record==0.8.6 dm-tree==0.1.10 \
    portpicker==1.6.0 importlib-resources==7.1.0; do
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$wheel"
  done
  ls .whl
  exit 0
fi

smoke=0 dry_run=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
[[ "${1:-}" == "--dry_run" ]] && dry_run=1

if [[ -d .whl ]] && ls .whl/*.whl > /dev/null 2>&1 && [[ $smoke == 0 && $dry_run == 0 ]]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1

if [[ $smoke == 1 ]]; then
  # Tiny sizes, XLA attention (cuDNN's needs a GPU), nothing written to RESULTS.md.
  base=(--model=tiny --seq=32 --batch=4 --steps=1 --warmup=1 --dtype=float32)
  large=(--model=tiny --seq=64 --batch=2 --steps=1 --warmup=1 --dtype=float32)
  cudnn=xla
  finetune=(--model=tiny --examples=64 --batch=16 --rounds=1 --max_seq_length=64)
  extra=(--no_results_file)
else
  [[ $dry_run == 1 ]] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  base=(--model=base --seq=128 --batch=64 --steps=10 --warmup=3 --dtype=bfloat16)
  large=(--model=large --seq=512 --batch=16 --steps=5 --warmup=2 --dtype=bfloat16)
  cudnn=cudnn
  finetune=(--model=base --examples=4096 --batch=32 --rounds=2)
  extra=()
fi

run() {
  echo "+ python -m $* ${extra[*]}"
  [[ $dry_run == 1 ]] || "$python" -m "$@" "${extra[@]}"
}

run benchmarks.train_step "${base[@]}" --peers=hf_torch --attention_impl=xla
run benchmarks.train_step "${base[@]}" --peers=hf_torch --attention_impl="$cudnn"
run benchmarks.train_step "${large[@]}" --peers=hf_torch --attention_impl="$cudnn"
run benchmarks.finetune "${finetune[@]}" --data=synthetic --peers=hf_torch

if [[ -n "${OUT:-}" && $smoke == 0 && $dry_run == 0 ]]; then
  cp benchmarks/RESULTS.md "$OUT/RESULTS.md"
fi
