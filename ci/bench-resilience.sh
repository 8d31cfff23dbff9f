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
cargo build --release -q -p dev-stack

# Environment for each mode, for each backend.
on_env=()
one_channel_env=()
off_env=()
for backend in AUTH PROJECT SIMULATION; do
  pool=("GATEWAY_BACKENDS__${backend}__POOL__MIN_CHANNELS=1"
        "GATEWAY_BACKENDS__${backend}__POOL__MAX_CHANNELS=1")
  one_channel_env+=("${pool[@]}")
  off_env+=("${pool[@]}"
            "GATEWAY_BACKENDS__${backend}__BREAKER__ENABLED=false"
            "GATEWAY_BACKENDS__${backend}__RETRY__MAX_ATTEMPTS=1")
done

source ci/lib/wrk-runs.sh

echo "== ${rounds} rounds of ${duration}s, ${connections} connections; mode requests/s p99_ms"
for n in $(seq 1 "$rounds"); do
  wrk_run on "$n" target/release/dev-stack "${on_env[@]}"
  wrk_run one-channel "$n" target/release/dev-stack "${one_channel_env[@]}"
  wrk_run off "$n" target/release/dev-stack "${off_env[@]}"
done
print_medians off on one-channel
echo "results in $results"
