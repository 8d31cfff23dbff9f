#!/usr/bin/env bash
# A long simulation campaign: generated fault schedules over many seeds, with progress and a
# summary. Not a CI step (it runs for as long as you ask); `cargo test -p sim` runs the CI set.
#
#   ci/sim-campaign.sh [seeds=1000] [first_seed=100000]
#
# Scale and shape come from the environment, as for the tests (docs/simulation.md):
# SIM_GATEWAYS, SIM_SUBSCRIBERS, SIM_COLLABORATORS, SIM_THREADS (seeds run at once, default 2) and
# SIM_DURATION_S (here 20 s by default; CI's set runs 14 s). The whole campaign is bounded by
# SIM_CAMPAIGN_TIMEOUT (default 6h). Exit status: 0 when every seed kept every invariant.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-1000}"
first="${2:-100000}"
log="${SIM_CAMPAIGN_LOG:-target/sim-campaign-$first-$seeds.log}"
mkdir -p "$(dirname "$log")"
export SIM_DURATION_S="${SIM_DURATION_S:-20}"
echo "sim campaign: $seeds seeds from $first, ${SIM_THREADS:-2} at a time; gateways ${SIM_GATEWAYS:-2}, subscribers ${SIM_SUBSCRIBERS:-8}, collaborators ${SIM_COLLABORATORS:-4}, $SIM_DURATION_S s each; log $log"
cargo test --release -q -p sim --test scenarios --no-run
started=$(date +%s)
set +e
SIM_SEED="$first" SIM_SEEDS="$seeds" timeout "${SIM_CAMPAIGN_TIMEOUT:-6h}" \
  cargo test --release -q -p sim --test scenarios generated_fault_schedules_keep_every_invariant -- --nocapture 2>&1 |
  tee "$log" |
  awk -v total="$seeds" '
     /^scenario "generated"/ && !seen[$4]++ { n++; bad_run = ($0 !~ /: ok$/); if (bad_run) bad++; else ok++;
       printf "[%d/%d] ok %d, failed %d  (%s %s)\n", n, total, ok, bad, $3, $4; fflush() }
     /^  replay:/ && bad_run { print "      " $0; fflush() }'
status=${PIPESTATUS[0]}
set -e
elapsed=$(( $(date +%s) - started ))
# The test repeats failed runs' lines in its final message: count each seed once.
runs=$({ grep '^scenario "generated"' "$log" || true; } | awk '{print $4}' | sort -u | wc -l)
failed=$({ grep '^scenario "generated"' "$log" | grep -v ': ok$' || true; } | awk '{print $4}' | sort -u | wc -l)
echo "== summary: $runs of $seeds seeds run in ${elapsed} s; $((runs - failed)) kept every invariant, $failed failed"
if [ "$failed" -gt 0 ]; then
  echo "failed seeds (each with its violations, faults and the command that replays it):"
  awk '/^scenario "generated"/ { block = $0; failed = ($0 !~ /: ok$/) && !shown[$4]++; next }
       block != "" { block = block "\n" $0 }
       /^  replay:/ { if (failed) print block; block = "" }' "$log"
fi
[ "$runs" -eq "$seeds" ] || echo "the campaign stopped early (status $status)"
exit "$status"
