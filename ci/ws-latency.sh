#!/usr/bin/env bash
# Publish-to-client latency and Redis-to-hub handoff, through a release dev stack on a real Redis.
#
#   ci/ws-latency.sh [subscribers=1000] [rate=100] [seconds=20]
#
# Starts Redis (a container from the local image, ci/redis-image.sh), the dev stack on it
# (`dev-stack --redis`: gateway plus mock backends in one process, the mocks publishing through
# their own Redis bus), then `ws-latency` (loadgen): N WebSocket subscribers on alice's
# notification channel, an open-loop publisher at the given rate through the publishing step.
# Prints the client-side latency, then the gateway's own handoff histogram
# (gateway_event_handoff_seconds: bus receipt to every local queue) for the run.
# Everything runs on 127.0.0.1; every wait is bounded; everything started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers="${1:-1000}"
rate="${2:-100}"
seconds="${3:-20}"
port="${WS_LATENCY_REDIS_PORT:-6391}"
# WS_LATENCY_PIN=1: the gateway on CPU 0, Redis and the clients on CPU 1 (taskset), so the
# clients' own work does not preempt the gateway mid fan-out on a 2-CPU machine.
pin_gateway="" pin_clients=""
if [ "${WS_LATENCY_PIN:-0}" = 1 ]; then
  pin_gateway="taskset -c 0" pin_clients="taskset -c 1"
fi

bash ci/docker-engine.sh
bash ci/redis-image.sh
image="${REDIS_IMAGE:-redis}:${REDIS_TAG:-7-local}"
cargo build --release -q -p dev-stack -p loadgen

name="ws-latency-redis-$$"
log=$(mktemp)
pid=""
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -f "$log"
}
trap cleanup EXIT
docker run -d --rm --name "$name" ${pin_clients:+--cpuset-cpus 1} -p "127.0.0.1:$port:6379" "$image" >/dev/null
RUST_LOG=warn $pin_gateway target/release/dev-stack --redis "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:8002/health/ready >/dev/null && break
  sleep 0.1
done
curl -sf http://127.0.0.1:8002/health/ready >/dev/null || { echo "dev stack not ready"; cat "$log"; exit 1; }
token=$(sed -n 's/^  export TOKEN=//p' "$log")
[ -n "$token" ] || { echo "no token in the dev stack banner"; cat "$log"; exit 1; }

handoff_buckets() {
  curl -sf http://127.0.0.1:8003/metrics | grep '^gateway_event_handoff_seconds_bucket' || true
}
before=$(handoff_buckets)
echo "== ws-latency: $subscribers subscribers, $rate events/s, $seconds s (commit $(git rev-parse --short HEAD))"
$pin_clients target/release/ws-latency \
  --url "ws://127.0.0.1:8001/ws/notifications?access_token=$token" \
  --channel user:u-1 --redis "127.0.0.1:$port" \
  --subscribers "$subscribers" --rate "$rate" --seconds "$seconds"
after=$(handoff_buckets)
echo "== gateway handoff (gateway_event_handoff_seconds, this run only)"
python3 - "$before" "$after" <<'PY'
import re, sys
def parse(text):
    buckets = {}
    for line in text.splitlines():
        m = re.match(r'gateway_event_handoff_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            buckets[m.group(1)] = int(m.group(2))
    return buckets
before, after = parse(sys.argv[1]), parse(sys.argv[2])
bounds = sorted((float(le) if le != "+Inf" else float("inf"), le) for le in after)
cumulative = [(b, after[le] - before.get(le, 0)) for b, le in bounds]
total = cumulative[-1][1] if cumulative else 0
if total == 0:
    sys.exit("no handoffs recorded: the gateway saw no events")
def bound(q):
    for b, count in cumulative:
        if count >= q * total:
            return b
for name, q in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)]:
    print(f"handoff {name} <= {bound(q) * 1000:.3f} ms  (histogram bucket bound)")
print(f"handoffs observed: {total}")
PY
