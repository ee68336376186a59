#!/bin/bash
# SPDX-License-Identifier: MIT
#
# 1,000 concurrent connections on one event loop, in each style, with
# random sizes, then 1,000 more opened while earlier ones finish (at most
# 200 open at a time), so descriptor numbers are reused while registered
# sets change.  select can only wait for descriptors below FD_SETSIZE
# (1024): its run keeps at most 900 connections open at once, leaving room
# for the server's own descriptors and the shim's.  Every byte is checked;
# the shim must have carried all of it.
. "$(dirname "$0")/../lib.sh"

# The client and the server each hold 1,000 sockets.
raise_descriptor_limit 4096

for mode in epoll-lt epoll-et epoll-oneshot poll select; do
	open_limit=1000
	[ $mode = select ] && open_limit=900
	start_server event_echo -e "$mode"
	settle_socket_baseline
	CLIENT_BYTES=0
	run_client "$mode-concurrent" echo_verify -p "$PORT" -c 1000 -C $open_limit -n 32K --vary \
		-s 110 -t 120
	run_client "$mode-reuse" echo_verify -p "$PORT" -c 1000 -C 200 -n 8K --vary -s 111 -t 120
	add_client_bytes "$mode-concurrent"
	add_client_bytes "$mode-reuse"
	wait_for_sockets "$SERVER_PID" "$BASE_SOCKETS"
	assert_carried "$SERVER_PID" "$CLIENT_BYTES"
	stop_event_server 1
	[ "$EVENT_BYTES" -ge "$CLIENT_BYTES" ] ||
		fail "$mode: the server echoed $EVENT_BYTES bytes, the clients got $CLIENT_BYTES back"
	note "$mode: $CLIENT_BYTES bytes checked"
done
