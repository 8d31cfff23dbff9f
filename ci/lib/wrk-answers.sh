# Shared by the wrk scripts: every answer of a benchmark must be 2xx, or its figures measure
# errors. Source it, pass "${wrk_answers[@]}" to wrk, then call require_2xx on wrk's output.

wrk_answers=(-s "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/wrk-answers.lua")

# require_2xx FILE: fails, saying how many, when wrk's output FILE shows answers that were not
# 2xx or requests that got no answer (socket errors: connect, read, write, timeout).
require_2xx() {
  local file="$1" non_2xx errors
  non_2xx=$(awk '/^non-2xx answers:/ {print $3}' "$file")
  [ -n "$non_2xx" ] || { echo "no answer count in $file (wrk ran without ci/lib/wrk-answers.lua?)" >&2; return 1; }
  errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$file")
  if [ "$non_2xx" -gt 0 ] || [ "${errors:-0}" -gt 0 ]; then
    echo "$file: $non_2xx answers were not 2xx and ${errors:-0} requests got no answer; the figures are void" >&2
    return 1
  fi
}

# require_2xx_h2load FILE: the same for h2load's output ("status codes: N 2xx, N 3xx, N 4xx, N 5xx"
# and its failed/errored request counts).
require_2xx_h2load() {
  local file="$1" line
  line=$(awk '/^status codes:/ {gsub(",", ""); print $5 + $7 + $9}' "$file")
  [ -n "$line" ] || { echo "no status codes in $file" >&2; return 1; }
  local failed
  failed=$(awk '/^requests:/ {gsub(",", ""); for (i = 1; i < NF; i++) if ($(i+1) == "failed" || $(i+1) == "errored" || $(i+1) == "timeout") n += $i} END {print n + 0}' "$file")
  if [ "$line" -gt 0 ] || [ "$failed" -gt 0 ]; then
    echo "$file: $line answers were not 2xx and $failed requests failed; the figures are void" >&2
    return 1
  fi
}
