#!/usr/bin/env bash
# stop_ministack.sh WORKDIR — stop what start_ministack.sh started (PIDs in WORKDIR/pids):
# SIGTERM, up to 5 s grace, then SIGKILL. Leaves the log for inspection.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 WORKDIR" >&2; exit 2; }
PIDS=$1/pids
[ -f "$PIDS" ] || exit 0
mapfile -t pids < <(grep -E '^[0-9]+$' "$PIDS" || true)
# A zombie (exited, not yet reaped) counts as gone.
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for _ in $(seq 50); do
  left=(); for p in "${pids[@]}"; do alive "$p" && left+=("$p"); done
  [ ${#left[@]} -eq 0 ] && break
  sleep 0.1
done
for p in "${pids[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
rm -f "$PIDS"
