#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The thread-per-connection echo server under the shim with 500 concurrent
# connections (500 threads, each with its own lane), random sizes up to
# 64 KiB each; then 500 more opened while earlier ones are still finishing
# (at most 100 open at a time), so descriptor numbers are reused under
# load.  Every byte is checked, the shim must have carried all of it, and
# the server must return to idle.
. "$(dirname "$0")/../lib.sh"

start_server echo_threaded
settle_baseline
run_client concurrent echo_verify -p "$PORT" -c 500 -n 64K --vary -s 500 -t 120
run_client reuse echo_verify -p "$PORT" -c 500 -C 100 -n 16K --vary -s 501 -t 120
total=0
for label in concurrent reuse; do
	bytes=$(sed -n 's/^ok connections=500 bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/$label.out")
	[ -n "$bytes" ] || fail "no byte count from the $label client"
	total=$((total + bytes))
done
wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"
assert_carried "$SERVER_PID" "$total"
stop_server
