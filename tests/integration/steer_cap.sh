#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, the per-lane cap: with `--max-conns-per-lane 50` and the hash
# policy (which ignores load, so only the cap can even the lanes out), 200
# connections held over 4 workers give exactly 50 to each: a lane at the
# cap is skipped.  20 more, with every lane at the cap, are still accepted
# and answered (the cap skips, it never refuses).  Workers as processes and
# as threads; connections one at a time, so each placement sees the last.
#
# Against the plain kernel the counts are anything but 50 each.
. "$(dirname "$0")/../steer_lib.sh"

steer_load --policy hash --max-conns-per-lane 50

for mode in -P -T; do
	start_workers $mode 4
	run_steer "cap$mode" -p "$PORT" -w 4 -b 1 hold:200 report:full hold:20 report:over
	note "$mode: $(report_line "cap$mode" full)"
	assert_no_failures "cap$mode" full
	[ "$(report_field "cap$mode" full counts)" = 50,50,50,50 ] ||
		fail "$mode: with a cap of 50 per lane, 200 held connections should be 50 on each worker: $(report_line "cap$mode" full)"
	assert_no_failures "cap$mode" over
	assert_total "cap$mode" over 20
	if [ $mode = -P ]; then
		assert_steered_traffic_carried 220
	else
		assert_steered_traffic_carried 220 "$SERVER_PID"
	fi
	stop_server
done
