# Shared by the launch scripts (sourced, not run): dry runs, quoting, option parsing.
#
# `run CMD ARGS...` prints the command, quoted so it can be pasted into a shell, and runs it
# unless DRY_RUN=1 (set by --dry_run); then it only prints it.

DRY_RUN=${DRY_RUN:-0}

# Quotes each argument that a shell would otherwise split or expand.
quote() {
  local arg out=()
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    quote "$@"
  else
    echo "+ $(quote "$@")" >&2
    "$@"
  fi
}

die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# bert_jax reads and writes plain files (array_record reads local files), so on cloud hosts every
# bucket is mounted with gcsfuse at /gcs/BUCKET and gs:// paths become paths under /gcs.
# `mounted ARGS...` sets the array MOUNTED to ARGS with gs://BUCKET/ turned into /gcs/BUCKET/.
mounted() {
  local arg
  MOUNTED=()
  for arg in "$@"; do MOUNTED+=("${arg//gs:\/\//\/gcs\/}"); done
}

# The buckets that gs:// paths in the arguments name, space-separated.
buckets() {
  printf '%s\n' "$@" | grep -o 'gs://[^/ ]*' | sed 's|gs://||' | sort -u | tr '\n' ' '
}

# A remote shell command that installs gcsfuse (Ubuntu) and mounts each bucket at /gcs/BUCKET.
mount_command() {
  local bucket cmd="(command -v gcsfuse >/dev/null || { \
echo 'deb https://packages.cloud.google.com/apt gcsfuse-jammy main' | \
sudo tee /etc/apt/sources.list.d/gcsfuse.list && \
curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add - && \
sudo apt-get update -q && sudo apt-get install -q -y gcsfuse; })"
  for bucket in "$@"; do
    cmd+=" && sudo mkdir -p /gcs/$bucket && sudo chown \$USER /gcs/$bucket && \
(mountpoint -q /gcs/$bucket || gcsfuse --implicit-dirs $bucket /gcs/$bucket)"
  done
  echo "$cmd"
}
