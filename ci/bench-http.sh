#!/usr/bin/env bash
# Throughput and latency of `GET /api/auth/profile` with a valid, cached token through the dev
# stack, beside a direct gRPC call of the same method on the mock Auth service.
#
#   ci/bench-http.sh [duration_seconds=15] [connections=64]
#
# Tools: wrk (HTTP/1.1 with latency percentiles) and h2load (the same tool against both the
# gateway and the mock backend over h2c gRPC). Both come from Debian (apt-get install wrk
# nghttp2-client); the script installs them when missing. All traffic goes to 127.0.0.1 and every
# run is bounded by its duration. Access logs are off (RUST_LOG=warn): per-request log lines
# to a terminal would measure the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-15}"
connections="${2:-64}"
results="results/bench-http-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

for tool in wrk h2load; do
  if ! command -v "$tool" >/dev/null; then
    echo "installing $tool"
    apt-get update -qq && apt-get install -y -qq wrk nghttp2-client >/dev/null
  fi
done

source ci/lib/wrk-answers.sh

source ci/lib/dev-stack.sh

cargo build --release -q -p dev-stack
start_dev_stack target/release/dev-stack "$results/dev-stack.log" RUST_LOG=warn

echo "== warm-up (fills the token cache)"
curl -sf http://127.0.0.1:8000/api/auth/profile -H "Authorization: Bearer $token" && echo

echo "== wrk: gateway, HTTP/1.1, GET /api/auth/profile, ${connections} connections, ${duration}s"
wrk -t 1 -c "$connections" -d "${duration}s" --latency "${wrk_answers[@]}" \
  -H "Authorization: Bearer $token" http://127.0.0.1:8000/api/auth/profile | tee "$results/wrk-gateway.txt"
require_2xx "$results/wrk-gateway.txt"

echo "== h2load: gateway, HTTP/1.1, same request"
h2load --h1 -t 1 -c "$connections" -D "$duration" \
  -H "Authorization: Bearer $token" http://127.0.0.1:8000/api/auth/profile | tee "$results/h2load-gateway.txt"
require_2xx_h2load "$results/h2load-gateway.txt"

# A gRPC frame of an empty GetProfileRequest: no compression flag, zero length.
printf '\x00\x00\x00\x00\x00' >"$results/get-profile.grpc"
echo "== h2load: mock Auth directly, h2c gRPC, auth.v1.AuthService/GetProfile"
h2load -t 1 -c "$connections" -m 1 -D "$duration" -d "$results/get-profile.grpc" \
  -H 'content-type: application/grpc' -H 'te: trailers' -H 'x-user-id: u-1' \
  http://127.0.0.1:9000/auth.v1.AuthService/GetProfile | tee "$results/h2load-direct.txt"
# gRPC answers are HTTP 200 whatever their status, which travels in trailers h2load does not read.
require_2xx_h2load "$results/h2load-direct.txt"

echo "results in $results"
