#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Half-close: each client shuts down its sending side after its payload and
# must still get the whole echo back, then end of file (the server's
# close after it read end of file; queued echo data must go out before the
# FIN).  Run against the threaded server (20 concurrent connections, some
# of them sending nothing at all) and the single-threaded one.
. "$(dirname "$0")/../lib.sh"

start_server echo_threaded
settle_baseline
run_client threaded echo_verify -p "$PORT" -c 20 -n 512K --vary --half-close -s 20
run_client threaded-empty echo_verify -p "$PORT" -c 5 -n 0 --half-close -s 21
bytes=$(sed -n 's/^ok connections=20 bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/threaded.out")
[ -n "$bytes" ] || fail "no byte count from the threaded client"
wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"
assert_carried "$SERVER_PID" "$bytes"
stop_server

start_server echo_single
run_client single echo_verify -p "$PORT" -c 12 -n 256K --vary --half-close -s 22
bytes=$(sed -n 's/^ok connections=12 bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/single.out")
[ -n "$bytes" ] || fail "no byte count from the single client"
assert_carried "$SERVER_PID" "$bytes"
stop_server
