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
source ci/lib/pinned-venv.sh
pinned_venv websockets "websockets==17.4"
cargo build --release -q -p dev-stack
source ci/lib/dev-stack.sh
results="results/ws-memory-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"
start_dev_stack target/release/dev-stack "$results/dev-stack.log" RUST_LOG=warn
"$venv/bin/python" ci/ws-memory.py --pid "$stack_pid" --token "$token" --connections "$connections"
