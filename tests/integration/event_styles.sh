#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The event-loop echo server in each style (epoll level-triggered, epoll
# edge-triggered draining to EAGAIN, epoll one-shot, poll, select), one
# loop thread, non-blocking sockets, a pipe or an eventfd in the same set:
# one connection with random splits, 50 concurrent connections of random
# sizes, tiny reads and writes, half-close (some connections sending
# nothing), pipelined request bursts, resets mid-stream and resets of
# connections whose replies are stuck behind a peer that does not read,
# then clean connections again; and two edge-triggered loops over IPv6.
# Every byte is checked; the server must let go of every connection (back
# to its idle socket count), its loops must have read every tick of their
# kernel descriptors, and the shim must have carried the traffic.
. "$(dirname "$0")/../lib.sh"

ticker=pipe
for mode in epoll-lt epoll-et epoll-oneshot poll select; do
	start_server event_echo -e "$mode" -k "$ticker"
	settle_socket_baseline
	CLIENT_BYTES=0
	run_client "$mode-one" echo_verify -p "$PORT" -c 1 -n 2M -s 100
	run_client "$mode-fifty" echo_verify -p "$PORT" -c 50 -n 256K --vary -s 101
	run_client "$mode-tiny" echo_verify -p "$PORT" -c 10 -n 16K --max-write 7 --max-read 5 -s 102
	run_client "$mode-half-close" echo_verify -p "$PORT" -c 20 -n 256K --vary --half-close -s 103
	run_client "$mode-empty" echo_verify -p "$PORT" -c 5 -n 0 --half-close -s 104
	run_client "$mode-pipelined" echo_verify -p "$PORT" -c 20 -n 32K --burst 400 --max-write 40 -s 105
	for label in one fifty tiny half-close pipelined; do
		add_client_bytes "$mode-$label"
	done
	run_client "$mode-reset" echo_verify -p "$PORT" -c 20 --rst-after 128K -s 106
	run_client "$mode-reset-stuck" echo_verify -p "$PORT" -c 4 -n 16M --no-read \
		--rst-after 1 --hold 1 -s 107
	run_client "$mode-after" echo_verify -p "$PORT" -c 20 -n 512K --vary -s 108
	add_client_bytes "$mode-after"
	wait_for_sockets "$SERVER_PID" "$BASE_SOCKETS"
	assert_carried "$SERVER_PID" "$CLIENT_BYTES"
	stop_event_server 1
	[ "$EVENT_BYTES" -ge "$CLIENT_BYTES" ] ||
		fail "$mode: the server echoed $EVENT_BYTES bytes, the clients got $CLIENT_BYTES back"
	note "$mode: $CLIENT_BYTES bytes checked"
	if [ $ticker = pipe ]; then ticker=eventfd; else ticker=pipe; fi
done

# The same over IPv6 (::1), two edge-triggered loops.
start_server event_echo -6 -e epoll-et -t 2 -k eventfd
settle_socket_baseline -6
CLIENT_BYTES=0
run_client ipv6 echo_verify -6 -p "$PORT" -c 50 -n 256K --vary -s 109
run_client ipv6-half-close echo_verify -6 -p "$PORT" -c 10 -n 128K --vary --half-close -s 110
add_client_bytes ipv6
add_client_bytes ipv6-half-close
wait_for_sockets "$SERVER_PID" "$BASE_SOCKETS"
assert_carried "$SERVER_PID" "$CLIENT_BYTES"
stop_event_server 2
[ "$EVENT_BYTES" -ge "$CLIENT_BYTES" ] ||
	fail "ipv6: the server echoed $EVENT_BYTES bytes, the clients got $CLIENT_BYTES back"
