#!/usr/bin/env bash
# Short fuzz runs (libFuzzer through cargo-fuzz, nightly) of the code that reads untrusted input:
# route lookup, JSON/query transcoding, answers written as JSON (beside prost-reflect), WebSocket
# client frames. Not a CI step: each target runs
# for `seconds` (the same entry points run as proptest properties in every CI run, in
# gateway/tests/properties.rs). Seeds live in fuzz/corpus (kept small); what a run finds goes to
# target/fuzz-corpus, crashes to fuzz/artifacts. Exit status: non-zero when a target crashes.
#
#   ci/fuzz.sh [seconds_per_target=60] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(path_match transcode answer ws_frame)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || { echo "fuzz: a nightly toolchain is needed (rustup toolchain install nightly)"; exit 1; }
for target in "${targets[@]}"; do
  corpus="target/fuzz-corpus/$target"
  log="target/fuzz-$target.log"
  mkdir -p "$corpus"
  echo "== fuzz $target for ${seconds}s (seeds: fuzz/corpus/$target; log: $log)"
  set +e
  (cd fuzz && cargo +nightly fuzz run "$target" "../$corpus" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1) >"$log" 2>&1
  status=$?
  set -e
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::new_units_added|SUMMARY|Test unit written)' "$log" || true
  [ "$status" -eq 0 ] || { tail -30 "$log"; echo "fuzz: $target failed (status $status); see fuzz/artifacts/$target"; exit "$status"; }
done
echo "fuzz: every target ran ${seconds}s without a crash"
