#!/usr/bin/env bash
# A/B throughput of two commits: `GET /api/auth/profile` with a cached token through the release
# dev stack built at BASE and at the work tree, alternated `rounds` times in one run so both see
# the same machine (these machines are shared and noisy: only ratios measured together mean
# anything). Prints each run, the medians and the median of each round's own ratio.
#
#   ci/bench-ab.sh BASE [duration_seconds=8] [connections=64] [rounds=5]
#
# BASE is built in a temporary worktree with its own target directory (target/ab-base, kept for
# the next run). Tool: wrk (installed from Debian when missing). Traffic goes only to 127.0.0.1;
# every run is bounded by its duration.
set -euo pipefail
cd "$(dirname "$0")/.."

base="${1:?usage: ci/bench-ab.sh BASE [duration_seconds] [connections] [rounds]}"
duration="${2:-8}"
connections="${3:-64}"
rounds="${4:-5}"
results="results/bench-ab-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

worktree=$(mktemp -d /tmp/bench-ab.XXXXXX)
cleanup_worktree() { git worktree remove --force "$worktree" >/dev/null 2>&1 || true; }
trap cleanup_worktree EXIT
git worktree add -q --detach "$worktree" "$base"
echo "== building dev-stack at $base and at the work tree (release)"
CARGO_TARGET_DIR="$PWD/target/ab-base" cargo build --release -q -p dev-stack --manifest-path "$worktree/Cargo.toml"
cleanup_worktree
cargo build --release -q -p dev-stack

source ci/lib/wrk-runs.sh

echo "== ${rounds} rounds of ${duration}s, ${connections} connections; label requests/s p99_ms"
for n in $(seq 1 "$rounds"); do
  wrk_run base "$n" target/ab-base/release/dev-stack
  wrk_run head "$n" target/release/dev-stack
done
print_medians base head
echo "base: $base ($(git rev-parse --short "$base")), head: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + uncommitted changes')"
echo "results in $results"
