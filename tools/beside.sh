#!/usr/bin/env bash
# tools/beside.sh LOG "SIDE COMMAND" MAIN COMMAND...
# Runs MAIN in the foreground and SIDE beside it, SIDE's output going to LOG, which is printed
# once both have ended; exits non-zero when either failed, naming which.
# Why: on two cores the integration tests leave about a third of the CPU idle (they wait for
# units to start and stop, for restarts and timeouts); the checks that need no lab, and molecule
# on hosts of its own, fill it instead of adding their minutes after the integration tests.
set -uo pipefail
log=$1 side=$2
shift 2
mkdir -p "$(dirname "$log")"
start=$(date +%s)
( bash -c "$side" >"$log" 2>&1; echo $? >"$log.rc" ) &
side_pid=$!
echo "beside.sh: '$side' runs beside '$*', its output in $log"
"$@"
main_rc=$?
main_s=$(( $(date +%s) - start ))
wait "$side_pid"
side_rc=$(cat "$log.rc" 2>/dev/null || echo 1)
echo "===== beside '$*': '$side' (output of $log) ====="
cat "$log"
echo "beside.sh: '$*' rc $main_rc after ${main_s} s; '$side' rc $side_rc; both ended after $(( $(date +%s) - start )) s"
[ "$main_rc" -eq 0 ] || { echo "beside.sh: FAILED: $*" >&2; exit "$main_rc"; }
[ "$side_rc" -eq 0 ] || { echo "beside.sh: FAILED: $side" >&2; exit "$side_rc"; }
