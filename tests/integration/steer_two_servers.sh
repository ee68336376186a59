#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, two servers on two ports at once, each with 4 pre-forked
# workers, steered independently:
#   least-loaded: server A's worker 0 holds 200 connections (-W); then 400
#   connections alternate between A and B: A's 200 avoid its worker 0, B's
#   200 spread evenly over all four of B's workers (max/mean <= 1.05): A's
#   load does not leak into B's choice;
#   round-robin: 800 short connections alternating between A and B: each
#   server's 400 go round its own workers in turn, 100 each (one shared
#   rotation would skip every other worker).
. "$(dirname "$0")/../steer_lib.sh"

steer_load
start_workers -P 4 -W
server_a=$SERVER_PID
port_a=$PORT
start_workers -P 4
server_b=$SERVER_PID
port_b=$PORT

run_steer loaded -p "$port_a" -q "$port_b" -w 4 hold:200 report:held send:release probe-others:0 \
	alternate hold:400 report:both
[ "$(count_of loaded held 0 "$port_a")" = 200 ] || fail "A's worker 0 should hold 200: $(report_line loaded held "$port_a")"
note "A: $(report_line loaded both "$port_a")"
note "B: $(report_line loaded both "$port_b")"
assert_no_failures loaded both "$port_a"
assert_no_failures loaded both "$port_b"
assert_total loaded both 200 "$port_a"
assert_total loaded both 200 "$port_b"
[ "$(count_of loaded both 0 "$port_a")" = 0 ] ||
	fail "A's worker 0 holds 200 and still got $(count_of loaded both 0 "$port_a") new connections"
assert_spread loaded both 1.05 "$port_b"

steer_load --policy round-robin
run_steer rotation -p "$port_a" -q "$port_b" -w 4 alternate short:800 report:rotation
for port in "$port_a" "$port_b"; do
	assert_no_failures rotation rotation "$port"
	[ "$(report_field rotation rotation cyclic "$port")" = yes ] &&
		[ "$(report_field rotation rotation counts "$port")" = 100,100,100,100 ] ||
		fail "round-robin on port $port did not go round its own workers: $(report_line rotation rotation "$port")"
done
assert_steered_traffic_carried 1201
stop_server "$server_a"
stop_server "$server_b"
