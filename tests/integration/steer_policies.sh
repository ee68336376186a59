#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, each policy as specified, on 4 pre-forked workers, worker 0
# already holding 200 connections (steer_workers -W) when 400 more come,
# 50 at a time, then 400 short connections one after the other, then 50
# source ports each used twice:
#   least-loaded  none of the 400 to worker 0; workers 1-3 even (>= 120 each)
#   p2c           none to worker 0 (it is never the less loaded of two);
#                 workers 1-3 get >= 100 each
#   round-robin   exactly 100 each, worker 0 included (load is ignored);
#                 the short connections go round in a fixed order
#   hash          worker 0 still gets its share (>= 40 of 400: load is
#                 ignored); the same 4-tuple always goes to the same worker
. "$(dirname "$0")/../steer_lib.sh"

for policy in least-loaded p2c round-robin hash; do
	steer_load --policy $policy
	start_workers -P 4 -W
	run_steer "$policy" -p "$PORT" -w 4 hold:200 report:held send:release probe-others:0 hold:400 report:next \
		close short:400 report:rotation repeat:50 report:repeat
	[ "$(count_of "$policy" held 0)" = 200 ] || fail "$policy: worker 0 should hold the first 200: $(report_line "$policy" held)"
	for label in held next rotation repeat; do
		assert_no_failures "$policy" $label
	done
	assert_total "$policy" next 400
	note "$policy: $(report_line "$policy" next)"
	case $policy in
	least-loaded | p2c)
		[ "$(count_of "$policy" next 0)" = 0 ] ||
			fail "$policy: worker 0, holding 200, got $(count_of "$policy" next 0) of the next 400"
		[ $policy = p2c ] && least=100 || least=120
		for worker in 1 2 3; do
			[ "$(count_of "$policy" next $worker)" -ge $least ] ||
				fail "$policy: workers 1-3 should share the 400 evenly: $(report_line "$policy" next)"
		done
		;;
	round-robin)
		[ "$(report_field "$policy" next counts)" = 100,100,100,100 ] ||
			fail "round-robin: 400 connections should be exactly 100 on each worker: $(report_line "$policy" next)"
		[ "$(report_field "$policy" rotation cyclic)" = yes ] && [ "$(report_field "$policy" rotation counts)" = 100,100,100,100 ] ||
			fail "round-robin: short connections did not go round the workers in turn: $(report_line "$policy" rotation)"
		;;
	hash)
		[ "$(count_of "$policy" next 0)" -ge 40 ] ||
			fail "hash: worker 0 should keep its share whatever its load: $(report_line "$policy" next)"
		[ "$(report_field "$policy" repeat same)" = 50 ] && [ "$(report_field "$policy" repeat differ)" = 0 ] ||
			fail "hash: the same 4-tuple went to different workers: $(report_line "$policy" repeat)"
		;;
	esac
	# 200 held, 400 next, 400 short, 50 ports twice: 1,100 connections.
	assert_steered_traffic_carried 1100
	stop_server
done
