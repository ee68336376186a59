#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The single-threaded blocking echo server under the shim: 30 sequential
# connections (every call family with every read size), then 10 opened at
# once, which wait in the listen backlog while the one thread serves them
# in turn.  Every byte is checked and the shim must have carried it all.
. "$(dirname "$0")/../lib.sh"

start_server echo_single
settle_baseline
run_client sequential echo_verify -p "$PORT" -c 30 --sequential -n 256K --vary -s 30
run_client backlog echo_verify -p "$PORT" -c 10 -n 128K -s 31
sequential=$(sed -n 's/^ok connections=30 bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/sequential.out")
[ -n "$sequential" ] || fail "no byte count from the sequential client"
wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"
assert_carried "$SERVER_PID" $((sequential + 10 * 128 * 1024))
stop_server
