#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Pre-fork event-loop servers (nginx's shape): the parent listens, then
# forks workers that each run their own loops on the inherited
# non-blocking listener.  Four single-loop epoll-et workers, two workers
# with two epoll-lt loops each, and two poll workers.  Each variant: 300
# concurrent connections of random sizes, half-close, pipelined bursts and
# resets, then clean connections; every byte is checked, every worker must
# let go of its connections, read all of its ticks and exit with status 0
# on SIGTERM, and the shim must have carried the traffic of the workers
# (whose counters stay after they exit, RINGSTEER_STATS_KEEP=1) including
# every accept.
. "$(dirname "$0")/../lib.sh"

# Waits until each worker of the server holds only the listener.
wait_for_idle_workers() {
	local worker
	for worker in $(ps -o pid= --ppid "$SERVER_PID"); do
		wait_for_sockets "$worker" 1
	done
}

# variant WORKERS LOOPS SERVER-ARGS...
variant() {
	local workers=$1 loops=$2 name
	shift 2
	name=$(echo "$*" | tr -d ' -')
	STATS_DIR=$TEST_TMP/stats-$name
	mkdir -p "$STATS_DIR"
	start_server --env RINGSTEER_STATS_KEEP=1 event_echo -f "$workers" "$@"
	# The workers are forked after the listening line.
	tries=0
	until [ "$(ps -o pid= --ppid "$SERVER_PID" | wc -l)" = "$workers" ]; do
		[ $tries -ge 100 ] && fail "$*: the server does not have $workers workers after 10 s"
		sleep 0.1
		tries=$((tries + 1))
	done
	CLIENT_BYTES=0
	run_client "$name-many" echo_verify -p "$PORT" -c 300 -n 64K --vary -s 130 -t 120
	run_client "$name-half-close" echo_verify -p "$PORT" -c 20 -n 256K --vary --half-close -s 131
	run_client "$name-pipelined" echo_verify -p "$PORT" -c 30 -n 16K --burst 300 --max-write 30 -s 132
	run_client "$name-reset" echo_verify -p "$PORT" -c 10 --rst-after 64K -s 133
	run_client "$name-after" echo_verify -p "$PORT" -c 50 -n 128K --vary -s 134
	for label in many half-close pipelined after; do
		add_client_bytes "$name-$label"
	done
	wait_for_idle_workers
	stop_event_server $((workers * loops)) "$workers"
	[ "$EVENT_BYTES" -ge "$CLIENT_BYTES" ] ||
		fail "$*: the workers echoed $EVENT_BYTES bytes, the clients got $CLIENT_BYTES back"
	# Non-blocking listeners: the kernel accepts, the shim carries each socket.
	assert_carried_all "$CLIENT_BYTES" 0 410
	note "$*: $CLIENT_BYTES bytes checked"
}

variant 4 1 -e epoll-et
variant 2 2 -e epoll-lt -t 2 -k eventfd
variant 2 1 -e poll
