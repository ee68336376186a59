#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering, a worker killed with connections in its accept queue: worker 1
# of 4 pre-forked processes stalls (stall detection off, round-robin, so it
# is still given exactly its quarter), 200 connections ask and wait; the
# three others answer theirs, worker 1's wait in its lane's queue.  Then
# worker 1 is killed (SIGKILL): its listener closes, and every connection
# that waited for it must move to another worker and be answered: none
# reset, none refused, none lost.  net.ipv4.tcp_migrate_req is set to 1 (in
# this test's own network namespace), as the shim's migration expects.
#
# Against the kernel's own SO_REUSEPORT hashing, the queued connections
# are reset; with a shared listener nothing would be queued per worker.
. "$(dirname "$0")/../steer_lib.sh"

sysctl -q -w net.ipv4.tcp_migrate_req=1 || fail "cannot set net.ipv4.tcp_migrate_req in the test's namespace"
steer_load --policy round-robin --stall-ms 0

start_workers -P 4
run_steer kill -p "$PORT" -w 4 -t 30000 "send:stall 1 60000" inflight:200 settle:1000 report:before \
	kill:1 collect:20000 report:after
queued=$(sed -n 's/^killed worker 1 pid [0-9]* with \([0-9]*\) connections unanswered$/\1/p' "$TEST_TMP/kill.out")
note "$(grep '^killed' "$TEST_TMP/kill.out")"
note "$(report_line kill after)"
assert_no_failures kill before
[ "$(count_of kill before 1)" = 0 ] || fail "the stalled worker 1 answered: $(report_line kill before)"
[ -n "$queued" ] && [ "$queued" -ge 25 ] ||
	fail "only ${queued:-no} connections waited for worker 1 when it was killed (round-robin should give it 50): nothing to check"
assert_no_failures kill after
assert_total kill after "$queued"
[ "$(count_of kill after 1)" = 0 ] || fail "a dead worker answered: $(report_line kill after)"
assert_steered_traffic_carried 200
stop_server
