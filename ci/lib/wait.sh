# Sourced by the ci/ scripts that start processes: a bounded wait for something to happen.

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every 0.1 s until it succeeds; after SECONDS,
# says what it was waiting for and fails.
wait_until() {
  local seconds="$1" what="$2"
  shift 2
  for _ in $(seq 1 $((seconds * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "timed out after ${seconds}s waiting for $what" >&2
  return 1
}
