#!/usr/bin/env bash
# More WebSocket connections than the gateway may hold: a release dev stack with its default
# configuration (the connection cap derived from the open-file limit), and ci/ws-overload.py
# offering CONNECTIONS from PROCESSES client processes. Passes when every attempt is welcomed or
# refused with 503 too_many_connections, some are refused, the health port answers all along,
# and the gateway never fails to accept (no "accept failed" in its log).
#
#   ci/ws-overload.sh [connections=20500] [processes=2]
#
# Traffic goes to 127.0.0.1 only; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
connections="${1:-20500}"
processes="${2:-2}"
source ci/lib/pinned-venv.sh
pinned_venv websockets "websockets==17.4"
cargo build --release -q -p dev-stack
results="results/ws-overload-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
source ci/lib/dev-stack.sh
start_dev_stack target/release/dev-stack "$results/dev-stack.log" RUST_LOG=info
grep -m1 'connection cap' "$results/dev-stack.log" | sed 's/\x1b\[[0-9;]*m//g' || true
status=0
"$venv/bin/python" ci/ws-overload.py --token "$token" --connections "$connections" --processes "$processes" |
  tee "$results/summary.json" || status=$?
failures=$(grep -c 'accept failed' "$results/dev-stack.log" || true)
echo "accept failures logged by the gateway: $failures (log in $results)"
[ "$failures" -eq 0 ] || status=1
exit "$status"
