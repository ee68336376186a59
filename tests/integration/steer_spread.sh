#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, equal connections: 1,000 connections held open over 4 workers,
# opened 50 at a time (so each burst of SYNs is placed before any of it is
# accepted), give at most 1.05 times the mean on any worker under the
# default policy (least-loaded), with the workers as pre-forked processes
# and as threads with an event loop each, and with processes on ::1.  Every connection is answered.
# `ringsteer status` must agree with what the client saw: per worker
# process, as many connections steered to its slots as it served, as many
# open while the client holds them, none pending, and nothing steered
# anywhere else.  The shim must have carried the traffic.
#
# Against the plain kernel (one shared accept queue) the spread is far
# above 1.05: the workers that wake first take most connections.
. "$(dirname "$0")/../steer_lib.sh"

steer_load

for run in -P -T -P6; do
	mode=${run%6}
	family=()
	host=127.0.0.1
	if [ "$run" = -P6 ]; then
		family=(-6)
		host=::1
	fi
	start_workers $mode 4 "${family[@]}"
	server=$SERVER_PID
	port=$PORT
	# The client holds its connections while the status is read.
	start_paused_client "equal$run" -H "$host" -p "$port" -w 4 -b 50 hold:1000 report:equal pause close
	note "$run: $(report_line equal$run equal)"
	assert_no_failures "equal$run" equal
	assert_total "equal$run" equal 1000
	assert_spread "equal$run" equal 1.05
	if [ $run != -T ]; then
		assert_status_agrees "equal$run" equal "$port" 1 "$host"
	else
		# One process: the slots of its four lanes hold the four counts.
		seen=$(report_field "equal$run" equal counts | tr , '\n' | sort -n | tr '\n' ' ')
		steered=$(group_slots "$port" | jq -r '.steered' | sort -n | tr '\n' ' ')
		[ "$seen" = "$steered" ] ||
			fail "-T: ringsteer status has connections steered per slot '$steered', the client saw '$seen' per worker"
	fi
	finish_paused_client "equal$run"
	if [ $run = -P ]; then
		assert_steered_traffic_carried 1000
	elif [ $run = -P6 ]; then
		# The earlier runs' processes are counted too, and each connection
		# sends exactly 4 bytes: the sums are exact.
		assert_steered_traffic_carried 3000
	else
		assert_steered_traffic_carried 1000 "$server"
	fi
	stop_server "$server"
done
