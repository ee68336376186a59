#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The thread-per-connection echo server under the shim with 50 concurrent
# connections: random sizes up to 1 MiB per connection in random splits up
# to 64 KiB, then 50 connections of tiny writes (1 to 64 bytes), which
# stress the shim's send batching.  Every byte is checked, the shim must
# have carried all of it, and the server must return to idle.
. "$(dirname "$0")/../lib.sh"

start_server echo_threaded
settle_baseline
run_client large echo_verify -p "$PORT" -c 50 -n 1M --vary -s 50
run_client tiny-writes echo_verify -p "$PORT" -c 50 -n 32K --max-write 64 --max-read 512 -s 51
large=$(sed -n 's/^ok connections=50 bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/large.out")
[ -n "$large" ] || fail "no byte count from the first client"
wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"
assert_carried "$SERVER_PID" $((large + 50 * 32 * 1024))
stop_server
