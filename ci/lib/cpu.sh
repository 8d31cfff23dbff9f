# Sourced by the ci/ scripts that measure CPU per process: user + system time from /proc.

# Clock ticks per second, the unit of cpu_ticks.
clock_ticks=$(getconf CLK_TCK)

# cpu_ticks PID...: the clock ticks those processes have used (a gone process counts 0).
cpu_ticks() {
  local total=0 pid ticks
  for pid in "$@"; do
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || ticks=0
    total=$(( total + ${ticks:-0} ))
  done
  echo "$total"
}
