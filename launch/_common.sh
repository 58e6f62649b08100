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
