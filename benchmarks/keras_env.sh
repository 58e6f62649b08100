#!/usr/bin/env bash
# KerasHub's own environment for the benchmarks' keras_hub peer: keras-hub needs tensorflow-text
# 2.20, which conflicts with bert_jax's tensorflow-cpu 2.21. Same jax as bert_jax.
#   bash benchmarks/keras_env.sh [.venv-keras]
set -euo pipefail
env_dir="${1:-.venv-keras}"
python3 -m venv "$env_dir"
"$env_dir/bin/pip" install "keras-hub==0.32.0" "jax==0.10.2" "jaxlib==0.10.2" "tensorflow-text==2.20.*"
echo "KerasHub environment ready: --keras_python=$env_dir/bin/python"
