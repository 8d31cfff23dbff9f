#!/usr/bin/env bash
# The gateway's Prometheus rules (ops/prometheus/rules.yml; runbook: docs/operations.md#alerts).
#
#   ci/prometheus.sh check   promtool check rules, then promtool test rules (ops/prometheus/
#                            tests.yml): every alert fires on the input that should page and stays
#                            quiet on its near miss. A CI step (.ci/run); a few seconds.
#   ci/prometheus.sh demo    starts the dev stack and a real Prometheus scraping it with these
#                            rules, sends a few requests, then shows from Prometheus's API a
#                            recording rule's value and every alert's state. Bounded (~1 min).
#
# Both use Debian's `prometheus` package (promtool comes with it), installed when missing. The
# demo's Prometheus listens on 127.0.0.1:9090 and keeps its data in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/lib/wait.sh

ensure_prometheus() {
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "prometheus/promtool are missing; install Debian's package as root: apt-get install -y prometheus" >&2
    return 1
  fi
  echo "installing Debian's prometheus package (promtool with it)" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/tmp/prometheus-apt.log 2>&1; then
    apt-get update >>/tmp/prometheus-apt.log 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >>/tmp/prometheus-apt.log 2>&1 ||
      { echo "apt-get install prometheus failed; see /tmp/prometheus-apt.log" >&2; return 1; }
  fi
}

check() {
  ensure_prometheus
  promtool check rules ops/prometheus/rules.yml
  (cd ops/prometheus && promtool test rules tests.yml)
}

# The demo's processes and files, for the exit trap.
prom_pid=""
work=""

stop_demo() {
  if [ -n "$prom_pid" ]; then
    kill "$prom_pid" 2>/dev/null || true
    wait "$prom_pid" 2>/dev/null || true
  fi
  stop_dev_stack
  [ -n "$work" ] && rm -rf "$work"
}

demo() {
  ensure_prometheus
  source ci/lib/dev-stack.sh
  trap stop_demo EXIT
  work=$(mktemp -d /tmp/prometheus-demo.XXXXXX)
  echo "== building and starting the dev stack"
  cargo build --quiet -p dev-stack
  start_dev_stack target/debug/dev-stack "$work/dev-stack.log"
  cp ops/prometheus/rules.yml "$work/"
  cat >"$work/prometheus.yml" <<'YAML'
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files: [rules.yml]
scrape_configs:
  - job_name: gateway
    static_configs: [{targets: ["127.0.0.1:8003"]}]
YAML
  echo "== starting Prometheus on 127.0.0.1:9090"
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address=127.0.0.1:9090 >"$work/prometheus.log" 2>&1 &
  prom_pid=$!
  wait_until 30 "Prometheus to be ready" curl -sf http://127.0.0.1:9090/-/ready
  query() { curl -sfG http://127.0.0.1:9090/api/v1/query --data-urlencode "query=$1"; }
  has_value() { query "$1" | grep -q '"value"'; }
  wait_until 30 "the first scrape of the gateway" has_value 'up{job="gateway"} == 1'
  # A rate needs two scrapes that saw the counters move: requests keep coming until the
  # recording rule has a value above zero (bounded: 60 rounds of 20 requests, a second apart).
  echo "== sending requests (one in ten to a path no route has) until the rule records them"
  local round
  for round in $(seq 1 60); do
    for i in $(seq 1 20); do
      if [ "$i" -eq 20 ]; then path=/api/nowhere; else path=/api/auth/profile; fi
      curl -s -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:8000$path"
    done
    has_value 'gateway:http_requests:rate5m > 0' && break
    sleep 1
  done
  has_value 'gateway:http_requests:rate5m > 0' ||
    { echo "gateway:http_requests:rate5m was not recorded; Prometheus log: $work/prometheus.log" >&2; cat "$work/prometheus.log" >&2; return 1; }
  echo "== gateway:http_requests:rate5m, a recording rule evaluated by Prometheus (after $round rounds)"
  query 'gateway:http_requests:rate5m'
  echo
  echo "== gateway:http_error_ratio:rate5m (0: the 404s are client errors, not the gateway's)"
  query 'gateway:http_error_ratio:rate5m'
  echo
  echo "== gateway:connections:usage_ratio and gateway_ready"
  query 'gateway:connections:usage_ratio'
  echo
  query 'gateway_ready'
  echo
  echo "== every alert rule and its state (all inactive on a healthy stack)"
  curl -sf 'http://127.0.0.1:9090/api/v1/rules?type=alert' |
    python3 -c 'import json, sys
for group in json.load(sys.stdin)["data"]["groups"]:
    for rule in group["rules"]:
        print("  %s: %s (health %s)" % (rule["name"], rule["state"], rule["health"]))'
}

case "${1:-check}" in
  check) check ;;
  demo) demo ;;
  *) echo "usage: ci/prometheus.sh [check|demo]" >&2; exit 2 ;;
esac
