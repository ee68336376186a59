#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Counters files of processes killed by a signal do not pile up in the stats
# directory (tmpfs keeps each one, 33 KB, until reboot).  Two servers under
# the shim carry a client each and are killed with SIGKILL, the first with
# RINGSTEER_STATS_KEEP=1; both files are still there.  Then a third server carries a client: its first lane removes
# the dead server's file and leaves the kept one, its own, a live process's
# file, and files whose names or contents are not a dead process's counters.
. "$(dirname "$0")/../lib.sh"

need_program "$TOOL"

# Starts a server, has it carry a client, kills it with SIGKILL; prints its pid.
carry_and_kill() {
	start_server "$@" echo_threaded >&2
	run_client "dead.$SERVER_PID" echo_verify -p "$PORT" -c 2 -n 64K -s 3 >&2
	kill -KILL "$SERVER_PID"
	wait "$SERVER_PID" 2>/dev/null
	echo "$SERVER_PID"
}

# The kept one first: the other's first lane sweeps.
kept=$(carry_and_kill --env RINGSTEER_STATS_KEEP=1)
dead=$(carry_and_kill)
[ -f "$STATS_DIR/ringsteer.$dead.stats" ] || fail "the killed server left no file to sweep"
[ -f "$STATS_DIR/ringsteer.$kept.stats" ] || fail "the killed kept server left no file"

# A live process's file, and names and contents that are not a dead
# process's counters: none may go.
sleep 300 &
live=$!
BACKGROUND_PIDS+=("$live")
cp "$STATS_DIR/ringsteer.$dead.stats" "$STATS_DIR/ringsteer.$live.stats"
printf 'not counters' >"$STATS_DIR/ringsteer.999999999.stats"
cp "$STATS_DIR/ringsteer.$dead.stats" "$STATS_DIR/ringsteer.x$dead.stats"
touch "$STATS_DIR/unrelated"

# A process that never makes a lane does not sweep.
env RINGSTEER_STATS_DIR="$STATS_DIR" LD_PRELOAD="$SHIM" true
[ -f "$STATS_DIR/ringsteer.$dead.stats" ] || fail "a process without a lane swept the directory"

start_server echo_threaded
run_client live echo_verify -p "$PORT" -c 2 -n 64K -s 4
[ ! -e "$STATS_DIR/ringsteer.$dead.stats" ] || fail "the dead server's file is still there"
for name in "ringsteer.$kept.stats" "ringsteer.$SERVER_PID.stats" "ringsteer.$live.stats" \
	ringsteer.999999999.stats "ringsteer.x$dead.stats" unrelated; do
	[ -f "$STATS_DIR/$name" ] || fail "$name was removed"
done
# The kept process still shows as exited, its counters intact.
json=$(stats_json --all) || fail "stats --json --all failed"
jq -e ".processes[] | select(.pid == $kept) | .exited and .total.bytes_received == 131072" \
	<<<"$json" >/dev/null || fail "the kept process's counters: $(jq -c ".processes[] | select(.pid == $kept)" <<<"$json")"
note "swept the file of pid $dead (killed), kept pid $kept's (RINGSTEER_STATS_KEEP=1) and 5 others"
stop_server
