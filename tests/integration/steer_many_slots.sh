#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering past 64 lanes: a server of 72 threads, each with its own event
# loop (so 72 lanes, one slot each, more than the 64 of earlier versions),
# holds 720 equal connections, opened 40 at a time.  Every worker takes its
# 10 (max/mean 1.00: least-loaded counts what it steered before any lane
# accepted), the slots above 63 included, and `ringsteer status` lists 72
# slots whose steered counts are the client's per-worker counts.  Then 80
# servers on 80 ports at once (more than the 64 groups of earlier versions):
# each address gets a group of its own, and each one's connection is
# steered there.
. "$(dirname "$0")/../steer_lib.sh"

WORKERS=72
steer_load

start_workers -T $WORKERS
server=$SERVER_PID
port=$PORT
start_paused_client equal -p "$port" -w $WORKERS -b 40 hold:720 report:equal pause close
note "$(report_line equal equal)"
assert_no_failures equal equal
assert_total equal equal 720
assert_spread equal equal 1.00
slots=$(group_slots "$port" | jq -s 'length')
[ "$slots" = $WORKERS ] || fail "ringsteer status lists $slots slots for port $port, expected $WORKERS"
highest=$(group_slots "$port" | jq -s 'map(.slot) | max')
[ "$highest" -ge 64 ] || fail "the highest slot in use is $highest: the test did not go past 64"
seen=$(report_field equal equal counts | tr , '\n' | sort -n | tr '\n' ' ')
steered=$(group_slots "$port" | jq -r '.steered' | sort -n | tr '\n' ' ')
[ "$seen" = "$steered" ] ||
	fail "ringsteer status has connections steered per slot '$steered', the client saw '$seen' per worker"
note "72 slots (highest $highest), 10 connections steered to each"
finish_paused_client equal
assert_steered_traffic_carried 720 "$server"
stop_server "$server"

# ---- more than 64 addresses at once -----------------------------------------
ADDRESSES=80
ports=()
for ((i = 0; i < ADDRESSES; i++)); do
	start_workers -T 1 >/dev/null
	ports+=("$PORT")
done
for port in "${ports[@]}"; do
	run_steer "one.$port" -p "$port" -w 1 short:1 report:one >/dev/null
	assert_total "one.$port" one 1
done
status=$(steer_status) || fail "ringsteer status failed"
for port in "${ports[@]}"; do
	steered=$(jq --arg address "127.0.0.1:$port" \
		'[.groups[] | select(.address == $address) | .slots[].steered] | add // 0' <<<"$status")
	[ "$steered" = 1 ] || fail "port $port: $steered connections steered in its group, the client made 1"
done
groups=$(jq '.groups | length' <<<"$status")
[ "$groups" -ge $ADDRESSES ] || fail "ringsteer status lists $groups groups, fewer than the $ADDRESSES addresses"
note "$ADDRESSES addresses at once: a group each, each connection steered to its own listener"
