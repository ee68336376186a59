#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, held load diverts new connections: with 200 long-lived
# connections already held by worker 0 of 4, the next 200 go to the other
# workers (none to worker 0, and spread over all three), under the default
# policy (least-loaded), with the workers as processes and as threads.
#
# steer_workers -W lets only worker 0 accept until the client sends
# `release`; the client then waits until each other worker has served a
# connection (they all accept) before it counts.  Against the plain kernel
# (a shared accept queue) worker 0 keeps taking its share of new
# connections.
. "$(dirname "$0")/../steer_lib.sh"

steer_load

for mode in -P -T; do
	start_workers $mode 4 -W
	run_steer "held$mode" -p "$PORT" -w 4 hold:200 report:held send:release probe-others:0 \
		hold:200 report:next
	assert_no_failures "held$mode" held
	[ "$(count_of "held$mode" held 0)" = 200 ] ||
		fail "$mode: worker 0 should hold all 200 first connections: $(report_line "held$mode" held)"
	note "$mode: $(report_line "held$mode" next)"
	assert_no_failures "held$mode" next
	assert_total "held$mode" next 200
	[ "$(count_of "held$mode" next 0)" = 0 ] ||
		fail "$mode: worker 0 already holds 200 connections and still got $(count_of "held$mode" next 0) of the next 200: $(report_line "held$mode" next)"
	for worker in 1 2 3; do
		# least-loaded evens them out: 66 or 67 each.
		[ "$(count_of "held$mode" next $worker)" -ge 60 ] ||
			fail "$mode: the next 200 connections were not spread over workers 1-3: $(report_line "held$mode" next)"
	done
	if [ $mode = -P ]; then
		assert_steered_traffic_carried 400
	else
		assert_steered_traffic_carried 400 "$SERVER_PID"
	fi
	stop_server
done
