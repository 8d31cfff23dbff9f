#!/usr/bin/env bash
# The gateway beside a hand-written peer (bench-peer/, which exists only for this measurement):
# the mock backends, one gateway and the peer as separate release processes; on each route of the
# load mix, runs through the gateway and through the peer alternated (ABBA over the rounds, so
# drift falls on both alike), with wrk (HTTP/1.1, 1 thread x 64 connections) and h2load (HTTP/2
# cleartext with prior knowledge, 1 thread x 64 connections x 8 streams). Prints, per route and
# protocol, the median req/s of each, their ratio (gateway / peer, and the median of each round's
# own ratio), the median p99, and the CPU each process spent per answered request (user + system
# time from /proc, in microseconds: the gateway's or the peer's own, and the mock backends' in the
# same runs). Every answer must be 2xx, or the run fails: its figures would measure errors.
#
#   ci/bench-peer.sh [SECONDS=8] [ROUNDS=3]
#
# Tools: wrk and h2load (Debian's wrk and nghttp2-client, installed when missing). Everything
# listens on 127.0.0.1, on ports away from the dev stack's (18000-18010, 19000-19002); every wait
# is bounded; everything started is stopped on exit. Results: results/bench-peer-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-8}" rounds="${2:-3}"
[[ "$seconds" =~ ^[1-9][0-9]*$ && "$rounds" =~ ^[1-9][0-9]*$ ]] ||
  { echo "usage: ci/bench-peer.sh [SECONDS>=1] [ROUNDS>=1]" >&2; exit 2; }
for tool in wrk h2load; do
  if ! command -v "$tool" >/dev/null; then
    echo "installing $tool"
    apt-get update -qq && apt-get install -y -qq wrk nghttp2-client >/dev/null
  fi
done
source ci/lib/wrk-answers.sh
echo "== building gateway, mock-backends and bench-peer (release)"
cargo build --release -q -p gateway -p mock-backends -p bench-peer
bin=target/release
results="results/bench-peer-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$results"

auth=127.0.0.1:19000 project=127.0.0.1:19001 simulation=127.0.0.1:19002
api=127.0.0.1:18000 websocket=127.0.0.1:18001 health=127.0.0.1:18002 metrics=127.0.0.1:18003
peer=127.0.0.1:18010
for address in $auth $project $simulation $api $websocket $health $metrics $peer; do
  if (exec 3<>"/dev/tcp/${address%:*}/${address##*:}") 2>/dev/null; then
    echo "$address is already in use; stop what listens there first" >&2
    exit 1
  fi
done

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

source ci/lib/wait.sh

# The projects POST creates stay in the mocks: room for every run, whatever the throughput.
MOCK_BACKENDS_AUTH__TOKEN_TTL_SECONDS=3600 MOCK_BACKENDS_PROJECT__PROJECTS_MAX=50000000 \
  MOCK_BACKENDS_AUTH__PERMISSIONS_MAX=100000000 RUST_LOG=warn \
  "$bin/mock-backends" --auth-addr "$auth" --project-addr "$project" \
  --simulation-addr "$simulation" >"$results/mocks.log" 2>&1 &
mocks_pid=$!
pids+=($mocks_pid)
RUST_LOG=warn GATEWAY_LISTEN__API="$api" GATEWAY_LISTEN__WEBSOCKET="$websocket" \
  GATEWAY_LISTEN__HEALTH="$health" GATEWAY_LISTEN__METRICS="$metrics" \
  GATEWAY_BACKENDS__AUTH__ADDRESS="$auth" GATEWAY_BACKENDS__PROJECT__ADDRESS="$project" \
  GATEWAY_BACKENDS__SIMULATION__ADDRESS="$simulation" \
  "$bin/gateway" >"$results/gateway.log" 2>&1 &
gateway_pid=$!
pids+=($gateway_pid)
"$bin/bench-peer" --listen "$peer" --auth "http://$auth" --project "http://$project" \
  --simulation "http://$simulation" >"$results/peer.log" 2>&1 &
peer_pid=$!
pids+=($peer_pid)

wait_until 20 "the gateway to be ready (logs in $results)" curl -sf "http://$health/health/ready"
token=$(curl -sf "http://$api/api/auth/login" -H 'content-type: application/json' \
  -d '{"username":"alice","password":"demo-password"}' | sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "login through the gateway failed" >&2; exit 1; }
wait_until 20 "the peer to answer (logs in $results)" \
  curl -sf "http://$peer/api/auth/profile" -H "authorization: Bearer $token"

# The mix's routes (loadgen/src/http_mix.rs), by name: method and path, and the body of POST.
routes=(profile projects simulation create)
declare -A method=([profile]=GET [projects]=GET [simulation]=GET [create]=POST)
declare -A path=([profile]=/api/auth/profile [projects]="/api/projects?pageSize=20"
  [simulation]=/api/simulations/s-1 [create]=/api/projects)
body='{"name":"load","description":"","templateId":"t-fluid"}'
printf '%s' "$body" >"$results/create.json"
# wrk sends a body only from a script: this one loads the answer counter and adds the body.
cat >"$results/create.lua" <<EOF
dofile("$PWD/ci/lib/wrk-answers.lua")
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
EOF

# The p99 of h2load's per-request log (third column: microseconds), in milliseconds.
h2load_p99_ms() {
  awk '{print $3}' "$1" | sort -n | awk '{a[NR] = $1} END {
    if (NR == 0) {print "-"; exit}
    i = int(NR * 0.99); if (i < NR * 0.99) i++; printf "%.2f\n", a[i] / 1000 }'
}

source ci/lib/cpu.sh
# us_per_request TICKS REQUESTS: CPU ticks spread over the requests, in microseconds each.
us_per_request() { awk -v t="$1" -v n="$2" -v hz="$clock_ticks" 'BEGIN {printf "%.1f\n", t * 1e6 / hz / n}'; }

# address TARGET: where the gateway's or the peer's API listens.
address() { if [ "$1" = gateway ]; then echo "$api"; else echo "$peer"; fi; }

# warm_up ROUTE TARGET: one request (it fills the token cache and opens the backend channels).
warm_up() {
  local request=(-sf -X "${method[$1]}" -H "authorization: Bearer $token")
  if [ "${method[$1]}" = POST ]; then request+=(-H 'content-type: application/json' -d "$body"); fi
  curl "${request[@]}" "http://$(address "$2")${path[$1]}" >/dev/null ||
    { echo "warm-up of $1 through the $2 failed" >&2; return 1; }
}

# run ROUTE PROTOCOL TARGET ROUND: one run; appends "route protocol target round req/s p99_ms
# target_us/request mocks_us/request" to runs.txt. Fails when an answer was not 2xx.
run() {
  local route="$1" protocol="$2" target="$3" round="$4" rps p99 requests
  local url="http://$(address "$target")${path[$route]}"
  local out="$results/$protocol-$route-$target-$round.txt"
  local target_pid="$gateway_pid"
  if [ "$target" = peer ]; then target_pid="$peer_pid"; fi
  local target_before mocks_before
  target_before=$(cpu_ticks "$target_pid") mocks_before=$(cpu_ticks "$mocks_pid")
  if [ "$protocol" = http1 ]; then
    local script=("${wrk_answers[@]}")
    if [ "${method[$route]}" = POST ]; then script=(-s "$results/create.lua"); fi
    wrk -t 1 -c 64 -d "${seconds}s" --latency "${script[@]}" \
      -H "authorization: Bearer $token" "$url" >"$out"
    require_2xx "$out"
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    requests=$(awk '/ requests in / {print $1}' "$out")
    p99=$(awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us/, "", v); v /= 1000}
      else if (v ~ /ms$/) {sub(/ms/, "", v)} else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000}
      printf "%.2f\n", v}' "$out")
  else
    local data=()
    if [ "${method[$route]}" = POST ]; then
      data=(-d "$results/create.json" -H 'content-type: application/json')
    fi
    h2load -t 1 -c 64 -m 8 -D "$seconds" --log-file="$out.log" "${data[@]}" \
      -H "authorization: Bearer $token" "$url" >"$out"
    require_2xx_h2load "$out"
    rps=$(awk '/^finished in/ {gsub(",", ""); print $4}' "$out")
    requests=$(awk '/^requests:/ {gsub(",", ""); print $8}' "$out")
    p99=$(h2load_p99_ms "$out.log")
    rm -f "$out.log"
  fi
  local target_us mocks_us
  target_us=$(us_per_request $(($(cpu_ticks "$target_pid") - target_before)) "$requests")
  mocks_us=$(us_per_request $(($(cpu_ticks "$mocks_pid") - mocks_before)) "$requests")
  echo "$route $protocol $target $round $rps $p99 $target_us $mocks_us" | tee -a "$results/runs.txt"
}

echo "== ${rounds} rounds of ${seconds}s per route, protocol and target"
echo "route protocol target round req/s p99_ms target_us/request mocks_us/request"
for route in "${routes[@]}"; do
  warm_up "$route" gateway
  warm_up "$route" peer
  for round in $(seq 1 "$rounds"); do
    order=(gateway peer)
    if (( round % 2 == 0 )); then order=(peer gateway); fi
    for protocol in http1 h2c; do
      for target in "${order[@]}"; do
        run "$route" "$protocol" "$target" "$round"
        # The runs' last requests are cancelled when the tool stops (h2load resets hundreds of
        # streams, which the backends' HTTP/2 servers may answer by closing a connection): let
        # that settle before the next run.
        sleep 1
      done
    done
  done
done

# The median of the numbers on standard input.
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# column ROUTE PROTOCOL TARGET N: field N of those runs, one a line.
column() { awk -v r="$1" -v p="$2" -v t="$3" -v n="$4" '$1 == r && $2 == p && $3 == t {print $n}' "$results/runs.txt"; }

{
  echo "== medians over ${rounds} rounds of ${seconds}s (paired: the median of each round's own gateway/peer ratio;"
  echo "   us/req: CPU microseconds per request of the gateway, the peer, and the mocks under each)"
  printf '%-28s %-6s %12s %12s %13s %7s %15s %12s %14s %11s %14s %9s\n' route proto gateway_req/s \
    peer_req/s gateway/peer paired gateway_p99_ms peer_p99_ms gateway_us/req peer_us/req \
    mocks_us/req@g mocks@peer
  for route in "${routes[@]}"; do
    for protocol in http1 h2c; do
      gateway_rps=$(column "$route" "$protocol" gateway 5 | median)
      peer_rps=$(column "$route" "$protocol" peer 5 | median)
      paired=$(paste <(column "$route" "$protocol" gateway 5) <(column "$route" "$protocol" peer 5) |
        awk '{printf "%.3f\n", $1 / $2}' | median)
      printf '%-28s %-6s %12.0f %12.0f %13.3f %7.3f %15s %12s %14s %11s %14s %9s\n' \
        "${method[$route]} ${path[$route]%%\?*}" "$protocol" "$gateway_rps" "$peer_rps" \
        "$(awk -v a="$gateway_rps" -v b="$peer_rps" 'BEGIN {print a / b}')" "$paired" \
        "$(column "$route" "$protocol" gateway 6 | median)" "$(column "$route" "$protocol" peer 6 | median)" \
        "$(column "$route" "$protocol" gateway 7 | median)" "$(column "$route" "$protocol" peer 7 | median)" \
        "$(column "$route" "$protocol" gateway 8 | median)" "$(column "$route" "$protocol" peer 8 | median)"
    done
  done
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + uncommitted changes'); results in $results"
} | tee "$results/medians.txt"
