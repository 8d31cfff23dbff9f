#!/usr/bin/env bash
# Load campaign: several gateway processes sharing the API and WebSocket ports (SO_REUSEPORT) on
# one Redis and the mock backends, driven by goose processes (loadgen) spread over the loopback
# addresses 127.0.0.1–127.0.0.8, then merged and checked against ci/load-thresholds.toml.
#
#   ci/load.sh [smoke|full]       (default smoke; `full` runs for about ten minutes)
#
# Phases, one after another so they do not share the two cores: (1) WebSocket subscribers
# connect and hold while the open-loop publisher delivers stamped events to them; (2) the HTTP
# mix through one gateway process per core; (3) the same calls straight to the mock backends
# over gRPC (the baseline the gateway's throughput is a ratio of). Each goose process writes its
# own HTML and JSON reports and checks its share of the thresholds (goose rules); `loadgen
# report` merges their histograms, adds what the script measured (the gateways' connections,
# memory and handoff latency, CPU by process group), checks the thresholds, prints the summary
# and writes summary.json and summary.html, all under results/load-<profile>-<time>/.
#
# Open files are capped at 20,000 per process here: each gateway process holds at most
# ~16,000 WebSocket connections and each goose process opens at most 15,000, so the script
# starts as many of each as the profile's connection count needs, and says so. Everything runs
# on loopback; every wait and run is bounded; everything started is stopped on exit. Exit status:
# non-zero when a threshold failed or a step did not complete.
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-smoke}"
# Per profile: connections, gateway and goose processes (each process's share must divide by
# the channel count, so every channel has as many subscribers), channels, publish rate, hold,
# HTTP users per process and seconds. Open files are capped at 20,000 per process: a gateway
# holds at most ~16,000 WebSocket connections (the rest for backends, Redis and HTTP), a goose
# process at most 15,000.
case "$profile" in
  smoke)
    ws_connections=2000 gateways=2 ws_procs=2 channels=100 publish_rate=200 hold_s=40
    http_users=16 http_s=30 ;;
  full)
    ws_connections=100000 gateways=7 ws_procs=10 channels=1000 publish_rate=100 hold_s=300
    http_users=16 http_s=60 ;;
  *) echo "usage: ci/load.sh [smoke|full]" >&2; exit 2 ;;
esac
(( ws_connections / gateways <= 16000 && ws_connections / ws_procs <= 15000 )) ||
  { echo "profile $profile: too many connections per process for 20,000 open files" >&2; exit 2; }
(( ws_connections % ws_procs == 0 && (ws_connections / ws_procs) % channels == 0 )) ||
  { echo "profile $profile: each goose process's share must divide by the channels" >&2; exit 2; }
http_procs=2
redis_port="${LOAD_REDIS_PORT:-6393}"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="results/load-$profile-$stamp"
mkdir -p "$results"
echo "== load campaign '$profile': $ws_connections WebSocket connections on $gateways gateway processes ($(( ws_connections / gateways )) each: open files are capped at 20,000), from $ws_procs goose processes ($(( ws_connections / ws_procs )) each) over 127.0.0.1-8; $channels channels at $publish_rate events/s for ${hold_s}s; HTTP $http_users users x $http_procs processes for ${http_s}s; results in $results"

bash ci/docker-engine.sh
bash ci/redis-image.sh
image="${REDIS_IMAGE:-redis}:${REDIS_TAG:-7-local}"
cargo build --release -q -p gateway -p mock-backends -p loadgen
bin=target/release

pids=()
redis_name="load-redis-$$"
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  docker rm -f "$redis_name" >/dev/null 2>&1 || true
}
trap cleanup EXIT

source ci/lib/wait.sh

# PING over a bash socket (the local image has redis-server only).
redis_ping() {
  exec 3<>"/dev/tcp/127.0.0.1/$redis_port" || return 1
  printf 'PING\r\n' >&3
  local line=""
  read -r -t 2 line <&3 || true
  exec 3>&-
  [[ "$line" == +PONG* ]]
}
docker run -d --rm --name "$redis_name" -p "127.0.0.1:$redis_port:6379" "$image" >/dev/null
wait_until 30 "Redis" redis_ping

# CPU by process group: each phase's steady state is a window over which every group's user and
# system time (from /proc) is divided by the wall time, and the machine's busy time likewise
# (from /proc/stat), so the results say who used the two cores. Rows go to cpu.tsv.
source ci/lib/cpu.sh
declare -A group_pids=() cpu_before=()
group_pids[redis]=$(docker inspect -f '{{.State.Pid}}' "$redis_name")
# machine_ticks: every CPU's busy clock ticks (all but idle and iowait).
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# cpu_mark GROUP...: opens a window over those groups (and the machine).
cpu_mark() {
  cpu_groups=("$@") cpu_started=$EPOCHREALTIME
  local group
  for group in "$@"; do cpu_before[$group]=$(cpu_ticks ${group_pids[$group]}); done
  cpu_before[machine]=$(machine_ticks)
}
# cpu_record PHASE: closes the window, one row per group: phase, group, processes, cores.
cpu_record() {
  local phase="$1" group seconds
  seconds=$(awk -v a="$cpu_started" -v b="$EPOCHREALTIME" 'BEGIN {print b - a}')
  row() { awk -v p="$phase" -v g="$1" -v n="$2" -v t="$3" -v s="$seconds" -v hz="$clock_ticks" \
    'BEGIN {printf "%s\t%s\t%d\t%.3f\n", p, g, n, t / hz / s}' >>"$results/cpu.tsv"; }
  for group in "${cpu_groups[@]}"; do
    row "$group" "$(wc -w <<<"${group_pids[$group]}")" \
      $(( $(cpu_ticks ${group_pids[$group]}) - ${cpu_before[$group]} ))
  done
  row machine 1 $(( $(machine_ticks) - ${cpu_before[machine]} ))
}

MOCK_BACKENDS_AUTH__TOKEN_TTL_SECONDS=3600 RUST_LOG=warn "$bin/mock-backends" >"$results/mock-backends.log" 2>&1 &
pids+=($!)
group_pids[mock backends]=$!

# Redis commands get 5 s instead of 1 s: every process of the campaign shares two cores (load
# average ~20 while 100,000 connections ramp up), and with 1 s the gateways took their event bus
# for broken mid-ramp and refused joins (first full run, 2026-11-26).
for i in $(seq 1 "$gateways"); do
  env RUST_LOG=warn \
    GATEWAY_LISTEN__API=0.0.0.0:8000 GATEWAY_LISTEN__WEBSOCKET=0.0.0.0:8001 \
    GATEWAY_LISTEN__HEALTH="127.0.0.1:$((9100 + i))" GATEWAY_LISTEN__METRICS="127.0.0.1:$((9200 + i))" \
    GATEWAY_LISTEN__REUSE_PORT=true \
    GATEWAY_EVENT_BUS__KIND=redis GATEWAY_EVENT_BUS__REDIS__ADDRESS="127.0.0.1:$redis_port" \
    GATEWAY_EVENT_BUS__REDIS__COMMAND_TIMEOUT_MS=5000 \
    "$bin/gateway" >"$results/gateway-$i.log" 2>&1 &
  pids+=($!)
done
for i in $(seq 1 "$gateways"); do
  wait_until 60 "gateway $i ready" curl -sf "http://127.0.0.1:$((9100 + i))/health/ready"
done

token=$(curl -sf http://127.0.0.1:8000/api/auth/login -H 'content-type: application/json' \
  -d '{"username":"alice","password":"demo-password"}' | sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "login through the gateway failed" >&2; exit 1; }

# gateway_metrics: every running gateway's metrics text (the first $http_gateways once the
# HTTP phases have stopped the others); a gateway that does not answer adds nothing. Then the
# gateways' summed metric NAME (gateway_sum), their answered HTTP requests and their summed
# resident memory in KB.
gateway_metrics() {
  local i
  for i in $(seq 1 "${http_gateways:-$gateways}"); do
    curl -sf "http://127.0.0.1:$((9200 + i))/metrics" || true
  done
}
gateway_sum() { gateway_metrics | awk -v m="$1" '$1 == m {sum += $NF} END {printf "%d\n", sum}'; }
gateway_requests() {
  gateway_metrics | awk 'index($1, "gateway_http_requests_total{") == 1 {sum += $NF} END {printf "%d", sum}'
}
gateway_rss_kb() {
  local total=0
  for pid in "${gateway_pids[@]}"; do
    total=$(( total + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") ))
  done
  echo "$total"
}
gateway_pids=("${pids[@]:1:$gateways}")
group_pids[gateways]="${gateway_pids[*]}"
# Each goose process also checks its own share against the thresholds (goose --threshold).
rules=(--thresholds ci/load-thresholds.toml --profile "$profile")
declare -i goose_failures=0
rss_before=$(gateway_rss_kb)

echo "== phase 1: $ws_connections WebSocket subscribers"
per_proc=$(( ws_connections / ws_procs ))
# About 1,000 new connections a second in all: each is a token check and a channel join, and
# the two cores are shared by every process here.
ramp_s=$(( ws_connections / 1000 + 5 ))
ws_pids=()
for k in $(seq 1 "$ws_procs"); do
  users=$per_proc
  address="127.0.0.$(( (k - 1) % 8 + 1 ))"
  LOADGEN_TOKEN="$token" "$bin/loadgen" ws --report "$results/ws-$k" \
    "${rules[@]}" --processes "$ws_procs" --base-url "ws://$address:8001" --channels "$channels" -- \
    --users "$users" --increase-rate "$(( users / ramp_s + 1 ))" \
    --run-time "$(( hold_s + 3 * ramp_s + 120 ))s" --no-transaction-metrics --quiet \
    >"$results/ws-$k.log" 2>&1 &
  ws_pids+=($!)
  pids+=($!)
done
group_pids[ws goose]="${ws_pids[*]}"
connected() { [ "$(gateway_sum gateway_websocket_connections)" -ge "$ws_connections" ]; }
deadline=$(( SECONDS + ramp_s * 3 + 60 ))
until connected; do
  (( SECONDS < deadline )) || { echo "only $(gateway_sum gateway_websocket_connections) of $ws_connections connected" >&2; exit 1; }
  echo "   connected: $(gateway_sum gateway_websocket_connections) of $ws_connections"
  sleep 5
done
echo "   all $ws_connections connected (gateway metric); publishing $publish_rate events/s for ${hold_s}s"
"$bin/loadgen" publish --redis "127.0.0.1:$redis_port" --channels "$channels" \
  --rate "$publish_rate" --seconds "$hold_s" --out "$results/publisher.json" >"$results/publisher.log" 2>&1 &
publisher=$!
pids+=($publisher)
group_pids[publisher]=$publisher
# The CPU window: from 2 s into the publishing to 5 s before its end (the publisher still runs).
sleep 2
cpu_mark gateways redis "mock backends" "ws goose" publisher
hold_end=$(( SECONDS + hold_s - 7 ))
peak_connections=0 peak_rss=0
while (( SECONDS < hold_end )) && kill -0 "$publisher" 2>/dev/null; do
  now=$(gateway_sum gateway_websocket_connections) rss=$(gateway_rss_kb)
  (( now > peak_connections )) && peak_connections=$now
  (( rss > peak_rss )) && peak_rss=$rss
  echo "   holding: $now connections, gateways ${rss} KB resident"
  left=$(( hold_end - SECONDS ))
  if (( left > 0 )); then sleep $(( left < 10 ? left : 10 )); fi
done
cpu_record ws
wait "$publisher" || { echo "the publisher failed:" >&2; cat "$results/publisher.log" >&2; exit 1; }
cat "$results/publisher.log"
# The hold ends with the publishing: let the last events arrive, take the gateways' own handoff
# histogram (bus to queued for every local subscriber: the gateway's part of the delivery
# latency), then stop the subscribers the way Ctrl-C does (goose stops its users between
# transactions and writes its reports).
sleep 5
handoff_json=$(gateway_metrics | awk '
  /^gateway_event_handoff_seconds_bucket/ {
    match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
    if (!(le in count)) order[n++] = le
    count[le] += $2 }
  END { for (i = 0; i < n; i++) printf "%s[%s, %d]", (i ? ", " : ""), (order[i] == "+Inf" ? "null" : order[i]), count[order[i]] }')
for pid in "${ws_pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
for pid in "${ws_pids[@]}"; do
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && { echo "a WebSocket goose process did not stop within 60 s" >&2; exit 1; }
  wait "$pid" || { echo "a WebSocket goose process failed its thresholds or stopped in error (see its log)"; goose_failures+=1; }
done
published=$(sed -n 's/.*"published": *\([0-9]*\).*/\1/p' "$results/publisher.json")

# run_goose_group ROLE: $http_procs `loadgen ROLE` processes with the HTTP phases' users and
# time (http through the gateways on 127.0.0.k with their share of the thresholds as goose
# rules, grpc straight to the mock backends); the CPU window is the run less 3 s at each end.
run_goose_group() {
  local role="$1" k pid started=() options=()
  [ "$role" = http ] && options=("${rules[@]}" --processes "$http_procs")
  for k in $(seq 1 "$http_procs"); do
    local target=()
    [ "$role" = http ] && target=(--host "http://127.0.0.$k:8000")
    "$bin/loadgen" "$role" --report "$results/$role-$k" "${options[@]}" -- "${target[@]}" \
      --users "$http_users" --increase-rate "$http_users" --run-time "${http_s}s" --quiet \
      >"$results/$role-$k.log" 2>&1 &
    started+=($!)
    pids+=($!)
  done
  group_pids[$role goose]="${started[*]}"
  local waited=3 step
  sleep 3
  cpu_mark gateways redis "mock backends" "$role goose"
  while (( waited < http_s - 3 )); do
    step=$(( http_s - 3 - waited < 10 ? http_s - 3 - waited : 10 ))
    sleep "$step"
    waited=$(( waited + step ))
    if [ "$role" = http ]; then
      echo "   ${waited}s of ${http_s}s: the gateways have answered $(gateway_requests) HTTP requests"
    else
      echo "   ${waited}s of ${http_s}s"
    fi
  done
  cpu_record "$role"
  for pid in "${started[@]}"; do
    wait "$pid" || { echo "a $role goose process failed its thresholds or stopped in error (see its log)"; goose_failures+=1; }
  done
}

# The HTTP phases run on one gateway process per core: the WebSocket phase needed more only for
# the open-file cap, and seven processes sharing two cores cost the gateways nearly twice the
# CPU per request of two (389 vs 235 µs, full profile, 2026-11-26). The rest stop here.
http_gateways=$(( $(nproc) < gateways ? $(nproc) : gateways ))
for pid in "${gateway_pids[@]:$http_gateways}"; do kill "$pid"; wait "$pid" || true; done
gateway_pids=("${gateway_pids[@]:0:$http_gateways}")
group_pids[gateways]="${gateway_pids[*]}"
echo "== phase 2: HTTP mix on $http_gateways gateway processes (one per core), $http_procs goose processes x $http_users users for ${http_s}s"
run_goose_group http
echo "== phase 3: the same calls straight to the mock backends (gRPC baseline)"
run_goose_group grpc

# What the script measured itself, for the report: the gateways' connection count and memory,
# the publisher's count, the CPU table and the gateways' handoff histogram.
cpu_json=$(awk -F '\t' '{printf "%s{\"phase\": \"%s\", \"group\": \"%s\", \"processes\": %s, \"cores\": %s}", (NR > 1 ? ", " : ""), $1, $2, $3, $4}' "$results/cpu.tsv")
printf '{"gateway_ws_connections_max": %s, "gateway_ws_memory_kb": %s, "published_events": %s, "publish_seconds": %s, "subscribers_per_channel": %s, "cpu": [%s], "gateway_handoff_buckets": [%s]}\n' \
  "$peak_connections" "$(( peak_rss - rss_before ))" "$published" "$hold_s" "$(( ws_connections / channels ))" "$cpu_json" "$handoff_json" >"$results/facts.json"

echo "== summary ($profile)"
folders=("$results"/ws-[0-9]* "$results"/http-[0-9]* "$results"/grpc-[0-9]*)
folders=("${folders[@]%.log}")
mapfile -t folders < <(printf '%s\n' "${folders[@]}" | sort -u)
"$bin/loadgen" report --thresholds ci/load-thresholds.toml --profile "$profile" \
  --facts "$results/facts.json" --out "$results" "${folders[@]}"
(( goose_failures == 0 )) ||
  { echo "$goose_failures goose process(es) failed their own thresholds or stopped in error" >&2; exit 1; }
