#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, a worker that dropped root killed and not replaced: nginx (4
# workers as www-data) steered round-robin.  Its workers accept on
# listeners the root master opened ahead, so a killed worker's listener
# stays open in the master, and its slot looks alive and idle (the worker
# died in its wait).  The master is stopped (SIGSTOP), so that it does not
# start a new worker, one worker is killed, and after the sweep interval
# (1 s) and a few requests that wake the survivors, every request must be
# answered: round-robin over a slot nobody accepts on would leave every
# fourth one unanswered.  The surviving
# workers' log says the slot was retired.
. "$(dirname "$0")/../steer_lib.sh"

sysctl -q -w net.ipv4.tcp_migrate_req=1 || fail "cannot set net.ipv4.tcp_migrate_req in the test's namespace"
steer_load --policy round-robin --stall-ms 0

port=18081
start_steered_nginx dead "$port" --env RINGSTEER_BPF_DIR="$BPF_DIR" --env RINGSTEER_STATS_KEEP=1 \
	--env RINGSTEER_LOG=info

# fetch LABEL COUNT: COUNT requests, one connection each; fails unless
# every one is answered.
fetch() {
	local label=$1 count=$2 answered
	for ((i = 0; i < count; i++)); do
		curl --silent --max-time 2 "http://127.0.0.1:$port/" || echo "curl failed"
	done >"$TEST_TMP/$label.out" 2>&1
	answered=$(grep -c '^answered$' "$TEST_TMP/$label.out")
	[ "$answered" = "$count" ] ||
		fail "$label: $answered of $count requests answered: $(grep -v '^answered$' "$TEST_TMP/$label.out" | sort | uniq -c | head -n 3 | tr '\n' ' ')"
	note "$label: $count of $count requests answered"
}

# Every worker serves, so each has its slot (round-robin takes all four).
fetch before 40
note "ringsteer status before the kill: $(steer_status | tr '\n' '|')"
workers=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ' | sort -n)
victim=$(head -n 1 <<<"$workers")
kill -STOP "$SERVER_PID"
kill -KILL "$victim"
note "master $SERVER_PID stopped, worker $victim killed"
# A survivor looks for dead owners when its loop comes back to its wait,
# at most once a second: requests in the first moments after the kill may
# still be steered to the dead slot (they wait in its queue until the
# master, resumed, starts a new worker).  These wake the survivors.
for ((i = 0; i < 8; i++)); do
	curl --silent --max-time 1 "http://127.0.0.1:$port/" >/dev/null 2>&1
done
sleep 1.2
fetch after 40
kill -CONT "$SERVER_PID"
if shim_enabled; then
	# The survivors carried the 40 requests after the kill themselves.
	sockets=0
	for pid in $workers; do
		[ "$pid" = "$victim" ] && continue
		sockets=$((sockets + $(wait_for_counter 1 stats_total sockets_total "$pid")))
	done
	[ "$sockets" -ge 40 ] || fail "the surviving workers' counters show $sockets accelerated sockets for 40 requests and more"
	note "the surviving workers' counters show $sockets sockets carried"
	grep -q "steering slot [0-9]*: its process $victim is gone" "$SERVER_ERR" ||
		fail "no worker said it retired the slot of worker $victim: $(grep ringsteer "$SERVER_ERR" | tail -n 3 | tr '\n' ' ')"
fi
stop_server
