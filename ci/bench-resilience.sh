#!/usr/bin/env bash
# What the resilience mechanisms cost: `GET /api/auth/profile` through the dev stack with them on
# (the defaults: channel pools, circuit breakers, retry budgets), with them on but one channel per
# backend instance ("one-channel", which separates the pool's share), and off (one channel, no
# breaker, no retries: the foundation's call path), alternated `rounds` times in one run so all
# see the same machine. Prints each run, the medians and their ratios to "off".
#
#   ci/bench-resilience.sh [duration_seconds=10] [connections=64] [rounds=3]
#
# Tool: wrk (installed from Debian when missing). Traffic goes only to 127.0.0.1; every run is
# bounded by its duration.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-10}"
connections="${2:-64}"
rounds="${3:-3}"
results="results/bench-resilience-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p dev-stack

# Environment for each mode, for each backend.
on_env=(RUST_LOG=warn)
one_channel_env=(RUST_LOG=warn)
off_env=(RUST_LOG=warn)
for backend in AUTH PROJECT SIMULATION; do
  pool=("GATEWAY_BACKENDS__${backend}__POOL__MIN_CHANNELS=1"
        "GATEWAY_BACKENDS__${backend}__POOL__MAX_CHANNELS=1")
  one_channel_env+=("${pool[@]}")
  off_env+=("${pool[@]}"
            "GATEWAY_BACKENDS__${backend}__BREAKER__ENABLED=false"
            "GATEWAY_BACKENDS__${backend}__RETRY__MAX_ATTEMPTS=1")
done

stack_pid=""
stop_stack() {
  if [ -n "$stack_pid" ]; then
    kill "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
    stack_pid=""
  fi
}
trap stop_stack EXIT

# run MODE N: one dev stack, one wrk run; appends "MODE requests_per_second p99_ms" to summary.
run() {
  local mode="$1" n="$2" log="$results/dev-stack-$1-$2.log"
  case "$mode" in
    on) env "${on_env[@]}" target/release/dev-stack >"$log" 2>&1 & ;;
    one-channel) env "${one_channel_env[@]}" target/release/dev-stack >"$log" 2>&1 & ;;
    off) env "${off_env[@]}" target/release/dev-stack >"$log" 2>&1 & ;;
  esac
  stack_pid=$!
  for _ in $(seq 1 100); do
    curl -sf http://127.0.0.1:8002/health/ready >/dev/null && break
    sleep 0.1
  done
  local token
  token=$(sed -n 's/^  export TOKEN=//p' "$log")
  [ -n "$token" ] || { echo "no token in the dev stack banner"; cat "$log"; exit 1; }
  curl -sf http://127.0.0.1:8000/api/auth/profile -H "Authorization: Bearer $token" >/dev/null
  wrk -t 1 -c "$connections" -d "${duration}s" --latency \
    -H "Authorization: Bearer $token" http://127.0.0.1:8000/api/auth/profile >"$results/wrk-$mode-$n.txt"
  stop_stack
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$results/wrk-$mode-$n.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$results/wrk-$mode-$n.txt")
  echo "$mode $rps $p99" | tee -a "$results/summary.txt"
}

echo "== ${rounds} rounds of ${duration}s, ${connections} connections; mode requests/s p99_ms"
for n in $(seq 1 "$rounds"); do
  run on "$n"
  run one-channel "$n"
  run off "$n"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
off_rps=$(awk '$1 == "off" {print $2}' "$results/summary.txt" | median)
for mode in on one-channel off; do
  rps=$(awk -v m="$mode" '$1 == m {print $2}' "$results/summary.txt" | median)
  p99=$(awk -v m="$mode" '$1 == m {print $3}' "$results/summary.txt" | median)
  echo "== median ${mode}: ${rps} req/s, p99 ${p99} ms, throughput vs off $(echo "scale=3; $rps / $off_rps" | bc)"
done
# Paired: each round's ratio to the "off" run of the same round, so drift between rounds cancels.
for mode in on one-channel; do
  paired=$(awk -v m="$mode" '$1 == m {r[++i] = $2} $1 == "off" {o[++j] = $2}
    END {for (k = 1; k <= i; k++) printf "%.3f\n", r[k] / o[k]}' "$results/summary.txt" | median)
  echo "== ${mode} / off, median of each round's own ratio: ${paired}"
done
echo "results in $results"
