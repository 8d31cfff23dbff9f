# Shared by the scripts that measure a dev stack: start one, wait (bounded) until it is ready,
# read the demo token from its banner, and stop it on exit. Source it; traffic stays on
# 127.0.0.1 (the dev stack's default listeners).

stack_pid=""
token=""

# stop_dev_stack: stops the dev stack started last, if it runs.
stop_dev_stack() {
  if [ -n "$stack_pid" ]; then
    kill "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
    stack_pid=""
  fi
}
trap stop_dev_stack EXIT

# start_dev_stack BINARY LOG [NAME=VALUE...]: starts BINARY with those variables, logging to LOG;
# waits up to 10 s for readiness; sets $stack_pid and $token (alice's, from the banner).
start_dev_stack() {
  local binary="$1" log="$2"
  shift 2
  env "$@" "$binary" >"$log" 2>&1 &
  stack_pid=$!
  for _ in $(seq 1 100); do
    curl -sf http://127.0.0.1:8002/health/ready >/dev/null && break
    sleep 0.1
  done
  curl -sf http://127.0.0.1:8002/health/ready >/dev/null || { echo "dev stack not ready" >&2; cat "$log" >&2; return 1; }
  token=$(sed -n 's/^  export TOKEN=//p' "$log")
  [ -n "$token" ] || { echo "no token in the dev stack banner" >&2; cat "$log" >&2; return 1; }
}
