#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Multi-threaded event loops.  Shared listener: several threads, each with
# its own epoll set (or poll or select loop) holding the same non-blocking
# listener, so accepts race and losers get EAGAIN; epoll-lt and epoll-et
# also with EPOLLEXCLUSIVE.  Dispatcher (memcached's shape): one thread
# accepts and hands each socket to a worker thread through that worker's
# pipe, so a socket accepted on one thread is used only on another.  Each
# variant: 300 concurrent connections of random sizes, half-close,
# pipelined bursts, resets, and clean connections after them.  Every byte
# is checked, every loop must have read all of its ticks, the server must
# let go of every connection, and the shim must have carried the traffic.
. "$(dirname "$0")/../lib.sh"

# variant LOOPS SERVER-ARGS...: LOOPS is the number of loop reports expected.
variant() {
	local loops=$1 name
	shift
	name=$(echo "$*" | tr -d ' -')
	start_server event_echo "$@"
	settle_socket_baseline
	CLIENT_BYTES=0
	run_client "$name-many" echo_verify -p "$PORT" -c 300 -n 64K --vary -s 120 -t 120
	run_client "$name-half-close" echo_verify -p "$PORT" -c 20 -n 256K --vary --half-close -s 121
	run_client "$name-pipelined" echo_verify -p "$PORT" -c 30 -n 16K --burst 300 --max-write 30 -s 122
	run_client "$name-reset" echo_verify -p "$PORT" -c 10 --rst-after 64K -s 123
	run_client "$name-after" echo_verify -p "$PORT" -c 50 -n 128K --vary -s 124
	for label in many half-close pipelined after; do
		add_client_bytes "$name-$label"
	done
	wait_for_sockets "$SERVER_PID" "$BASE_SOCKETS"
	assert_carried "$SERVER_PID" "$CLIENT_BYTES"
	stop_event_server "$loops"
	[ "$EVENT_BYTES" -ge "$CLIENT_BYTES" ] ||
		fail "$*: the server echoed $EVENT_BYTES bytes, the clients got $CLIENT_BYTES back"
	note "$*: $CLIENT_BYTES bytes checked"
}

variant 4 -e epoll-lt -t 4
variant 3 -e epoll-lt -t 3 -x -k eventfd
variant 4 -e epoll-et -t 4 -x
variant 3 -e epoll-oneshot -t 3 -k eventfd
variant 2 -e poll -t 2
variant 2 -e select -t 2 -k eventfd
# Dispatcher: one more loop (the dispatcher's) than workers.
variant 5 -D -e epoll-lt -t 4
variant 4 -D -e epoll-et -t 3 -k eventfd
variant 3 -D -e epoll-oneshot -t 2
variant 3 -D -e poll -t 2 -k eventfd
