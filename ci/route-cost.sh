#!/usr/bin/env bash
# What each GET route of the load campaign's HTTP mix costs (creating a project, 1 in 11 of the
# mix, needs a body wrk does not send): the mock backends and one gateway as
# separate processes, wrk on one route at a time, and each process's CPU (user + system, from
# /proc/<pid>/stat) over the middle of the run divided by the requests answered.
#
#   ci/route-cost.sh [SECONDS] [ROUNDS]     (default 10 s, 3 rounds; prints each run and medians)
#
# Traffic goes only to 127.0.0.1; every run is bounded by SECONDS; everything started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}" rounds="${2:-3}"
(( seconds >= 6 )) || { echo "SECONDS must be at least 6" >&2; exit 2; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
source ci/lib/wrk-answers.sh
cargo build --release -q -p gateway -p mock-backends
bin=target/release
results="results/route-cost-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
MOCK_BACKENDS_AUTH__TOKEN_TTL_SECONDS=3600 RUST_LOG=warn "$bin/mock-backends" >"$results/mocks.log" 2>&1 &
mocks=$!
pids+=($mocks)
RUST_LOG=warn "$bin/gateway" >"$results/gateway.log" 2>&1 &
gateway=$!
pids+=($gateway)
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:8002/health/ready >/dev/null && break; sleep 0.2; done
token=$(curl -sf http://127.0.0.1:8000/api/auth/login -H 'content-type: application/json' \
  -d '{"username":"alice","password":"demo-password"}' | sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "login through the gateway failed" >&2; exit 1; }

source ci/lib/cpu.sh
echo "route req/s gateway_us_per_request mocks_us_per_request" | tee "$results/runs.txt"
for round in $(seq 1 "$rounds"); do
  for route in /api/auth/profile "/api/projects?pageSize=20" /api/simulations/s-1; do
    wrk -t1 -c32 -d"${seconds}s" "${wrk_answers[@]}" -H "authorization: Bearer $token" \
      "http://127.0.0.1:8000$route" >"$results/wrk-$round-${route//[\/?=]/_}.txt" &
    wrk_pid=$!
    sleep 2
    g0=$(cpu_ticks "$gateway") m0=$(cpu_ticks "$mocks") t0=$EPOCHREALTIME
    sleep $(( seconds - 4 ))
    g1=$(cpu_ticks "$gateway") m1=$(cpu_ticks "$mocks") t1=$EPOCHREALTIME
    wait "$wrk_pid"
    require_2xx "$results/wrk-$round-${route//[\/?=]/_}.txt"
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$results/wrk-$round-${route//[\/?=]/_}.txt")
    awk -v r="$route" -v rps="$rps" -v g="$((g1 - g0))" -v m="$((m1 - m0))" -v hz="$clock_ticks" \
      -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" \
      'BEGIN {printf "%s %.0f %.0f %.0f\n", r, rps, g / hz / s * 1e6 / rps, m / hz / s * 1e6 / rps}' |
      tee -a "$results/runs.txt"
  done
done
echo "== medians over $rounds rounds (route, req/s, gateway µs per request, mocks µs per request)"
for route in /api/auth/profile "/api/projects?pageSize=20" /api/simulations/s-1; do
  line="$route"
  for column in 2 3 4; do
    line+=" $(awk -v r="$route" -v c="$column" '$1 == r {print $c}' "$results/runs.txt" | sort -n |
      awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')"
  done
  echo "$line"
done | tee "$results/medians.txt"
