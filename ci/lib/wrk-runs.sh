# Shared by the wrk A/B scripts (bench-resilience.sh, bench-ab.sh): start a dev stack, run wrk
# against `GET /api/auth/profile` with its token, stop it, and take medians. Source it after
# setting `results`, `duration` and `connections`. Traffic goes only to 127.0.0.1.

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
source "$(dirname "${BASH_SOURCE[0]}")/wrk-answers.sh"

source "$(dirname "${BASH_SOURCE[0]}")/dev-stack.sh"

# wrk_run LABEL N BINARY [ENV...]: one dev stack (BINARY, with ENV), one wrk run; appends
# "LABEL requests_per_second p99_ms" to $results/summary.txt.
wrk_run() {
  local label="$1" n="$2" binary="$3"
  shift 3
  start_dev_stack "$binary" "$results/dev-stack-$label-$n.log" RUST_LOG=warn "$@" || exit 1
  curl -sf http://127.0.0.1:8000/api/auth/profile -H "Authorization: Bearer $token" >/dev/null
  wrk -t 1 -c "$connections" -d "${duration}s" --latency "${wrk_answers[@]}" \
    -H "Authorization: Bearer $token" http://127.0.0.1:8000/api/auth/profile >"$results/wrk-$label-$n.txt"
  stop_dev_stack
  require_2xx "$results/wrk-$label-$n.txt" || exit 1
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$results/wrk-$label-$n.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$results/wrk-$label-$n.txt")
  echo "$label $rps $p99" | tee -a "$results/summary.txt"
}

# The median of the numbers on standard input.
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# print_medians BASE LABEL...: each label's median throughput and p99, its throughput over
# BASE's median, and the median of each round's own ratio to BASE (drift between rounds cancels).
print_medians() {
  local base="$1"
  shift
  local base_rps
  base_rps=$(awk -v m="$base" '$1 == m {print $2}' "$results/summary.txt" | median)
  for label in "$@" "$base"; do
    local rps p99
    rps=$(awk -v m="$label" '$1 == m {print $2}' "$results/summary.txt" | median)
    p99=$(awk -v m="$label" '$1 == m {print $3}' "$results/summary.txt" | median)
    echo "== median ${label}: ${rps} req/s, p99 ${p99} ms, throughput vs ${base} $(awk -v a="$rps" -v b="$base_rps" 'BEGIN {printf "%.3f", a / b}')"
  done
  for label in "$@"; do
    local paired
    paired=$(awk -v m="$label" -v b="$base" '$1 == m {r[++i] = $2} $1 == b {o[++j] = $2}
      END {for (k = 1; k <= i; k++) printf "%.3f\n", r[k] / o[k]}' "$results/summary.txt" | median)
    echo "== ${label} / ${base}, median of each round's own ratio: ${paired}"
  done
}
