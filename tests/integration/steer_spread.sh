#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, equal connections: 1,000 connections held open over 4 workers,
# opened 50 at a time (so each burst of SYNs is placed before any of it is
# accepted), give at most 1.05 times the mean on any worker under the
# default policy (least-loaded), with the workers as pre-forked processes
# and as threads with an event loop each.  Every connection is answered.
# `ringsteer status` must agree with what the client saw: per worker
# process, as many connections steered to its slots as it served, as many
# open while the client holds them, none pending, and nothing steered
# anywhere else.  The shim must have carried the traffic.
#
# Against the plain kernel (one shared accept queue) the spread is far
# above 1.05: the workers that wake first take most connections.
. "$(dirname "$0")/../steer_lib.sh"

steer_load

for mode in -P -T; do
	start_workers $mode 4
	server=$SERVER_PID
	port=$PORT
	mkfifo "$TEST_TMP/gate$mode"
	# The client holds its connections while the status is read.
	timeout -k 5 120 "$CLIENTS/steer_client" -p "$port" -w 4 -b 50 hold:1000 report:equal pause close \
		<"$TEST_TMP/gate$mode" >"$TEST_TMP/equal$mode.out" 2>&1 &
	client=$!
	BACKGROUND_PIDS+=("$client")
	exec 9>"$TEST_TMP/gate$mode"
	tries=0
	until grep -q '^paused$' "$TEST_TMP/equal$mode.out"; do
		process_alive "$client" || fail "steer_client ended early: $(tail -n 5 "$TEST_TMP/equal$mode.out" | tr '\n' ' ')"
		[ $tries -lt 1200 ] || fail "steer_client did not open its 1000 connections within 120 s"
		sleep 0.1
		tries=$((tries + 1))
	done
	note "$mode: $(report_line equal$mode equal)"
	assert_no_failures "equal$mode" equal
	assert_total "equal$mode" equal 1000
	assert_spread "equal$mode" equal 1.05
	if [ $mode = -P ]; then
		assert_status_agrees "equal$mode" equal "$port" 1
	else
		# One process: the slots of its four lanes hold the four counts.
		seen=$(report_field "equal$mode" equal counts | tr , '\n' | sort -n | tr '\n' ' ')
		steered=$(group_slots "$port" | jq -r '.steered' | sort -n | tr '\n' ' ')
		[ "$seen" = "$steered" ] ||
			fail "-T: ringsteer status has connections steered per slot '$steered', the client saw '$seen' per worker"
	fi
	echo >&9
	exec 9>&-
	wait "$client" || fail "steer_client failed: $(tail -n 5 "$TEST_TMP/equal$mode.out" | tr '\n' ' ')"
	if [ $mode = -P ]; then
		assert_steered_traffic_carried 1000
	else
		assert_steered_traffic_carried 1000 "$server"
	fi
	stop_server "$server"
done
