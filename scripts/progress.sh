# Sourced by the setup scripts: `say` prints a line to stderr with the seconds since the script began,
# and `with_progress WHAT CMD...` runs CMD while saying every 10 s that WHAT is still going.
# The sourcing script sets SAY_PREFIX (e.g. "quickstart") first.
_progress_started=$(date +%s)
say() { echo "${SAY_PREFIX:-rlm}: [$(( $(date +%s) - _progress_started ))s] $*" >&2; }

with_progress() {
  local what=$1; shift
  local step_started; step_started=$(date +%s)
  "$@" &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do sleep 1; kill -0 "$pid" 2>/dev/null || break; done
    if kill -0 "$pid" 2>/dev/null; then say "$what: $(( $(date +%s) - step_started ))s so far"; fi
  done
  wait "$pid"
}
