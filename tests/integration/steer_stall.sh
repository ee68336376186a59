#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, a stalled worker: worker 2 of 4 stops returning to its event
# loop (it sleeps outside every socket call).  With the stall time at
# 100 ms, every connection placed from 300 ms to 1 s after the stall began
# goes to another worker: worker 2 receives none during its stall, and
# `ringsteer status` shows its slot, and only its, as stalled.  Once it is
# back, it takes connections again.  Workers as processes and as threads.
# Connections are counted by when their handshake completed (when they
# were placed), whenever their answer came; the stall lasts 3 s so that
# the status is read while it lasts even on a slow, noisy machine.
#
# With one shared accept queue (the plain kernel, and the shim before it
# gives each lane a listener) the stalled worker gets nothing either, but
# there is no stalled slot in the status: that assertion fails there.
. "$(dirname "$0")/../steer_lib.sh"

steer_load --stall-ms 100

for mode in -P -T; do
	start_workers $mode 4
	output=$TEST_TMP/stall$mode.out
	start_paused_client "stall$mode" -p "$PORT" -w 4 hold:100 report:before "send:stall 2 3000" \
		window:300:1000 report:during pause sleep:2500 hold:200 report:after
	stalled=$(group_slots "$PORT" | jq -s -c '[.[] | select(.stalled) | .pid]')
	finish_paused_client "stall$mode"
	note "$mode: $(grep '^send:' "$output")"
	worker2=$(sed -n 's/^send: stall 2 3000 -> stalling 2 pid=\([0-9]*\)$/\1/p' "$output")
	[ "$stalled" = "[$worker2]" ] ||
		fail "$mode: during worker 2's stall, ringsteer status shows the slots of pids $stalled as stalled, expected [$worker2]"
	assert_no_failures "stall$mode" before
	note "$mode: $(report_line "stall$mode" during)"
	assert_no_failures "stall$mode" during
	during=$(report_field "stall$mode" during connections)
	[ "$during" -ge 10 ] ||
		fail "$mode: only $during connections were placed during the stall window: too few to tell"
	[ "$(count_of "stall$mode" during 2)" = 0 ] ||
		fail "$mode: the stalled worker 2 received $(count_of "stall$mode" during 2) of $during connections placed during its stall"
	assert_no_failures "stall$mode" after
	[ "$(count_of "stall$mode" after 2)" -ge 25 ] ||
		fail "$mode: worker 2 is back from its stall but got few new connections: $(report_line "stall$mode" after)"
	if [ $mode = -P ]; then
		assert_steered_traffic_carried $((300 + during))
	else
		assert_steered_traffic_carried $((300 + during)) "$SERVER_PID"
	fi
	stop_server
done
