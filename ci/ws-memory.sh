#!/usr/bin/env bash
# Gateway memory per idle WebSocket connection, through a release dev stack on 127.0.0.1.
#
#   ci/ws-memory.sh [connections=10000]
#
# The dev stack runs the mock backends in the same process; they do not grow with WebSocket
# connections, so the RSS delta divided by the connection count is the gateway's cost per idle
# connection (hub queue, WebSocket state, buffers, tasks). Bounded: every wait has a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
connections="${1:-10000}"
python3 -c 'import websockets' 2>/dev/null || python3 -m pip install -q websockets
cargo build --release -q -p dev-stack
log=$(mktemp)
RUST_LOG=warn target/release/dev-stack >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:8002/health/ready >/dev/null && break
  sleep 0.1
done
token=$(sed -n 's/^  export TOKEN=//p' "$log")
[ -n "$token" ] || { echo "no token in the dev stack banner"; cat "$log"; exit 1; }
python3 ci/ws-memory.py --pid "$pid" --token "$token" --connections "$connections"
