# Shared helpers for recipe run.sh scripts (sourced, never copied). Dispatch only: option parsing
# and logging; all work happens in `python -m speechkit.bin.<stage>`.

# parse_options "$@": for every variable already defined in the caller, `--name value` or
# `--name=value` (dashes become underscores) sets it. Anything after `--` is kept in
# `extra_args` (passed to the stages as config overrides). `--help` prints the variables.
parse_options() {
  extra_args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --) shift; extra_args=("$@"); break ;;
      --help|-h) echo "usage: $0 [--stage N] [--stop-stage M] [--config FILE] [--nj N] [-- key=value ...]"; exit 0 ;;
      --*=*) name=${1%%=*}; value=${1#*=}; shift ;;
      --*) name=$1; [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 2; }; value=$2; shift 2 ;;
      *) echo "$0: unexpected argument '$1' (config overrides go after --)" >&2; exit 2 ;;
    esac
    name=${name#--}; name=${name//-/_}
    if ! declare -p "$name" >/dev/null 2>&1; then
      echo "$0: unknown option --${name//_/-}" >&2; exit 2
    fi
    printf -v "$name" '%s' "$value"
  done
}

# overrides_as_flags: turn extra_args (key=value) into repeated --override flags.
overrides_as_flags() {
  override_flags=()
  for kv in "${extra_args[@]+"${extra_args[@]}"}"; do override_flags+=(--override "$kv"); done
}

# run_logged LOG CMD...: run CMD, teeing its output into LOG; fail with the log's name.
run_logged() {
  local logfile=$1; shift
  mkdir -p "$(dirname "$logfile")"
  echo "$(date +%T) running: $*" | tee -a "$logfile" >&2
  if ! "$@" 2>&1 | tee -a "$logfile"; then
    echo "$(date +%T) FAILED (see $logfile): $*" >&2
    return 1
  fi
}
