#!/bin/bash
# SPDX-License-Identifier: MIT
#
# More sockets waiting on their peers than a lane's completion queue holds:
# every socket in event mode keeps a receive ahead in flight for as long as
# its peer is quiet, so a server with more connections per thread than the
# CQ has entries must neither wait for room that never comes nor lose a
# completion the kernel keeps aside from a full CQ.  RINGSTEER_RING_ENTRIES=8
# makes the CQ 128 entries, so 1,000 connections are far past it.  Every
# byte is checked; the shim must have carried all of it.  At the other end,
# the largest RINGSTEER_RING_ENTRIES asks for a CQ past the kernel's largest,
# which must be clamped, not turn io_uring off.
. "$(dirname "$0")/../lib.sh"

# The client and the server each hold 1,000 sockets.
raise_descriptor_limit 4096

for mode in epoll-lt epoll-et poll; do
	start_server --env RINGSTEER_RING_ENTRIES=8 event_echo -e "$mode"
	settle_socket_baseline
	CLIENT_BYTES=0
	run_client "$mode-concurrent" echo_verify -p "$PORT" -c 1000 -C 1000 -n 16K --vary \
		-s 120 -t 60
	add_client_bytes "$mode-concurrent"
	wait_for_sockets "$SERVER_PID" "$BASE_SOCKETS"
	assert_carried "$SERVER_PID" "$CLIENT_BYTES"
	stop_event_server 1
	[ "$EVENT_BYTES" -ge "$CLIENT_BYTES" ] ||
		fail "$mode: the server echoed $EVENT_BYTES bytes, the clients got $CLIENT_BYTES back"
	note "$mode: $CLIENT_BYTES bytes checked with a 128-entry CQ"
done

start_server --env RINGSTEER_RING_ENTRIES=32768 event_echo -e epoll-lt
settle_socket_baseline
CLIENT_BYTES=0
run_client "largest-ring" echo_verify -p "$PORT" -c 50 -n 16K --vary -s 121 -t 60
add_client_bytes "largest-ring"
wait_for_sockets "$SERVER_PID" "$BASE_SOCKETS"
assert_carried "$SERVER_PID" "$CLIENT_BYTES"
stop_event_server 1
note "RINGSTEER_RING_ENTRIES=32768: $CLIENT_BYTES bytes carried"
