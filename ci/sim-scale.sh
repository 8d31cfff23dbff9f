#!/usr/bin/env bash
# How simulation scales with connections: one generated scenario per scale, release build, with
# wall time, simulated seconds per wall second and peak memory.
#
#   ci/sim-scale.sh [scales="1000 10000"] [seed=7] [simulated_seconds=20]
#
# Each run is the `generated_fault_schedules_keep_every_invariant` test with SIM_SEEDS=1 and
# SIM_SUBSCRIBERS set to the scale (WebSocket subscribers, spread over 500 per client host and
# over 2 gateways). Bounded: each run by SIM_SCALE_TIMEOUT (default 2h).
#
# Needs GNU time for the peak memory (Debian's `time`, installed here when missing: as root, as
# the other ci scripts install their Debian packages); arithmetic is awk's.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
scales="${1:-1000 10000}"
seed="${2:-7}"
seconds="${3:-20}"
binary=$(cargo test --release -p sim --test scenarios --no-run 2>&1 | sed -n 's/.*Executable tests\/scenarios.rs (\(.*\))/\1/p' | tail -1)
[ -x "$binary" ] || { echo "could not find the scenarios test binary"; exit 1; }
printf '%-12s %-6s %-8s %-10s %-16s %-12s %s\n' connections seed sim_s wall_s sim_s_per_wall_s peak_rss_mb verdict
for scale in $scales; do
  out=$(mktemp)
  start=$(date +%s.%N)
  set +e
  SIM_SEED="$seed" SIM_SEEDS=1 SIM_SUBSCRIBERS="$scale" SIM_DURATION_S="$seconds" \
    /usr/bin/time -f 'peak_rss_kb %M' timeout "${SIM_SCALE_TIMEOUT:-2h}" \
    "$binary" --exact generated_fault_schedules_keep_every_invariant --nocapture \
    >"$out" 2>&1
  status=$?
  set -e
  end=$(date +%s.%N)
  wall=$(awk -v start="$start" -v end="$end" 'BEGIN { printf "%.1f", end - start }')
  simulated=$(grep -o 'over [0-9.]*s simulated' "$out" | grep -o '[0-9.]*' | head -1)
  rss=$(grep -o 'peak_rss_kb [0-9]*' "$out" | grep -o '[0-9]*$' | tail -1)
  verdict=$(grep -q '^scenario "generated".*: ok$' "$out" && echo ok || echo "FAILED (status $status)")
  ratio=$(awk -v simulated="${simulated:-0}" -v wall="$wall" 'BEGIN { printf "%.4f", (wall > 0 ? simulated / wall : 0) }')
  printf '%-12s %-6s %-8s %-10.1f %-16s %-12s %s\n' "$scale" "$seed" "${simulated:-?}" "$wall" "$ratio" "$(( ${rss:-0} / 1024 ))" "$verdict"
  [ "$status" -eq 0 ] || { echo "--- output of the failed run:"; tail -40 "$out"; }
  rm -f "$out"
done
