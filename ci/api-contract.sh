#!/usr/bin/env bash
# The API contract check: schemathesis, pinned and installed from PyPI, against the dev stack's
# /openapi.json with every check on (`--checks all`), so the document and the gateway's
# behaviour must agree: schema-valid requests accepted, schema-violating ones refused, answers
# as documented, `Allow` as the document lists the path's methods, authentication enforced.
#
#   ci/api-contract.sh [examples_per_operation=200] [seed=1]
#
# Bounded: `examples_per_operation` cases per operation and phase, the whole run under
# API_CONTRACT_TIMEOUT_S (default 600) seconds. The seed is fixed by default so a CI run is
# repeatable; pass another to explore (a failure prints its seed, and this command with that seed
# replays it). Settings and the reason for each are in ci/api-contract.toml. Exits non-zero on
# any failure. Traffic goes to 127.0.0.1 only (the dev stack binds ports 8000-8003 and the mock
# backends 9000, 10000 and 11000 there); the report stays in results/api-contract-*/.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
examples="${1:-200}"
seed="${2:-1}"
timeout_s="${API_CONTRACT_TIMEOUT_S:-600}"
results="results/api-contract-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

source ci/lib/pinned-venv.sh
pinned_venv schemathesis "schemathesis==$SCHEMATHESIS_VERSION"

echo "== building the dev stack"
cargo build -q -p dev-stack

for port in 8000 8001 8002 8003 9000 10000 11000; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is in use: stop what holds it (another dev stack?) first" >&2
    exit 1
  fi
done

RUST_LOG=warn target/debug/dev-stack >"$results/dev-stack.log" 2>&1 &
stack_pid=$!
trap 'kill "$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:8002/health/ready >/dev/null && break
  sleep 0.1
done
curl -sf http://127.0.0.1:8002/health/ready >/dev/null || {
  echo "the dev stack is not ready:" >&2
  cat "$results/dev-stack.log" >&2
  exit 1
}
token=$(sed -n 's/^  export TOKEN=//p' "$results/dev-stack.log")
[ -n "$token" ] || { echo "no token in the dev stack's banner" >&2; exit 1; }
curl -sf http://127.0.0.1:8000/openapi.json >"$results/openapi.json"

echo "== schemathesis $SCHEMATHESIS_VERSION, --checks all, $examples examples per operation, seed $seed"
started=$(date +%s)
status=0
# Run from the results directory: schemathesis keeps its cache (.schemathesis/) where it runs.
(
  cd "$results"
  timeout "$timeout_s" "../../$venv/bin/st" --config-file ../../ci/api-contract.toml run \
    http://127.0.0.1:8000/openapi.json \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "$examples" \
    --seed "$seed" \
    --workers 1 \
    --request-timeout 10 \
    --no-color \
    --report junit --report-dir .
) || status=$?
echo "== schemathesis took $(($(date +%s) - started)) s (exit $status); report in $results"
if [ "$status" -eq 124 ]; then
  echo "schemathesis did not finish within ${timeout_s}s" >&2
fi
exit "$status"
