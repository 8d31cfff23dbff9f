#!/usr/bin/env bash
# glibc's allocator beside mimalloc (the binaries' default `mimalloc` feature), in one run, on both
# figures that decide: HTTP throughput of a release gateway (separate mock backends; wrk 1 thread
# x 64 connections on GET /api/auth/profile and GET /api/projects?pageSize=20, the two
# allocators alternated ABBA over the rounds) and memory per idle WebSocket connection
# (ci/ws-memory.py against a release dev stack built each way). Prints medians and ratios; every
# HTTP answer must be 2xx.
#
#   ci/bench-alloc.sh [SECONDS=8] [ROUNDS=3] [CONNECTIONS=5000]
#
# Everything listens on 127.0.0.1 (18000-18003 and 19000-19002 for the HTTP runs, the dev
# stack's ports for the memory runs); every wait is bounded; results in results/bench-alloc-*/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}" rounds="${2:-3}" connections="${3:-5000}"
source ci/lib/wrk-answers.sh
source ci/lib/pinned-venv.sh
pinned_venv websockets "websockets==17.4"
results="results/bench-alloc-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results" target/alloc

echo "== building the gateway and the dev stack with each allocator (release)"
cargo build --release -q -p mock-backends
cargo build --release -q -p gateway -p dev-stack --no-default-features
cp target/release/gateway target/alloc/gateway-glibc
cp target/release/dev-stack target/alloc/dev-stack-glibc
cargo build --release -q -p gateway -p dev-stack
cp target/release/gateway target/alloc/gateway-mimalloc
cp target/release/dev-stack target/alloc/dev-stack-mimalloc

pids=()
gateway_pid=""
stop_all() {
  [ -z "$gateway_pid" ] || kill "$gateway_pid" 2>/dev/null || true
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all EXIT

source ci/lib/wait.sh

RUST_LOG=warn MOCK_BACKENDS_AUTH__TOKEN_TTL_SECONDS=3600 target/release/mock-backends \
  --auth-addr 127.0.0.1:19000 --project-addr 127.0.0.1:19001 \
  --simulation-addr 127.0.0.1:19002 >"$results/mocks.log" 2>&1 &
pids+=($!)

# http_round ALLOCATOR ROUND: starts that gateway, runs wrk on each route, stops it.
http_round() {
  local allocator="$1" round="$2"
  RUST_LOG=warn GATEWAY_LISTEN__API=127.0.0.1:18000 GATEWAY_LISTEN__WEBSOCKET=127.0.0.1:18001 \
    GATEWAY_LISTEN__HEALTH=127.0.0.1:18002 GATEWAY_LISTEN__METRICS=127.0.0.1:18003 \
    GATEWAY_BACKENDS__AUTH__ADDRESS=127.0.0.1:19000 \
    GATEWAY_BACKENDS__PROJECT__ADDRESS=127.0.0.1:19001 \
    GATEWAY_BACKENDS__SIMULATION__ADDRESS=127.0.0.1:19002 \
    "target/alloc/gateway-$allocator" >"$results/gateway-$allocator-$round.log" 2>&1 &
  gateway_pid=$!
  wait_until 20 "the $allocator gateway to be ready (logs in $results)" \
    curl -sf http://127.0.0.1:18002/health/ready
  local token
  token=$(curl -sf http://127.0.0.1:18000/api/auth/login -H 'content-type: application/json' \
    -d '{"username":"alice","password":"demo-password"}' |
    sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
  [ -n "$token" ] || { echo "login through the $allocator gateway failed" >&2; return 1; }
  local route path out
  for route in profile projects; do
    path=/api/auth/profile
    [ "$route" = projects ] && path="/api/projects?pageSize=20"
    curl -sf "http://127.0.0.1:18000$path" -H "authorization: Bearer $token" >/dev/null
    out="$results/$route-$allocator-$round.txt"
    wrk -t 1 -c 64 -d "${seconds}s" "${wrk_answers[@]}" -H "authorization: Bearer $token" \
      "http://127.0.0.1:18000$path" >"$out"
    require_2xx "$out"
    echo "$route $allocator $round $(awk '/^Requests\/sec:/ {print $2}' "$out")" >>"$results/http.txt"
  done
  kill "$gateway_pid"
  wait "$gateway_pid" 2>/dev/null || true
  gateway_pid=""
}

echo "== HTTP: $rounds rounds of ${seconds}s per route and allocator"
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order="glibc mimalloc"; else order="mimalloc glibc"; fi
  for allocator in $order; do http_round "$allocator" "$round"; done
done

echo "== memory per idle WebSocket: $connections connections, each allocator"
source ci/lib/dev-stack.sh
trap 'stop_dev_stack; stop_all' EXIT
for allocator in glibc mimalloc; do
  start_dev_stack "target/alloc/dev-stack-$allocator" "$results/dev-stack-$allocator.log" RUST_LOG=warn
  "$venv/bin/python" ci/ws-memory.py --pid "$stack_pid" --token "$token" \
    --connections "$connections" | tee "$results/memory-$allocator.txt"
  bytes=$(sed -n 's/^memory per idle connection: \([0-9]*\) bytes/\1/p' "$results/memory-$allocator.txt")
  echo "memory $allocator 1 $bytes" >>"$results/http.txt"
  stop_dev_stack
done

echo "== summary (medians; mimalloc / glibc)"
awk '
  { v[$1 " " $2] = v[$1 " " $2] " " $4 }
  function median(list,   a, n, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    printf "%-10s %14s %14s %10s\n", "figure", "glibc", "mimalloc", "ratio"
    split("profile projects memory", figures, " ")
    for (f = 1; f <= 3; f++) {
      g = median(v[figures[f] " glibc"]); m = median(v[figures[f] " mimalloc"])
      printf "%-10s %14.0f %14.0f %10.3f\n", figures[f] (f < 3 ? " req/s" : " B/conn"), g, m, (g > 0 ? m / g : 0)
    }
  }' "$results/http.txt" | tee "$results/summary.txt"
echo "results in $results"
