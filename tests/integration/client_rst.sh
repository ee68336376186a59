#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Clients that reset their connections mid-stream (SO_LINGER {1, 0} and
# close): 20 connections reset after 256 KiB while the server is still
# echoing, then 4 connections that never read and reset while the server's
# writer is blocked on them.  The server must survive (a reset costs it one
# connection, never the process), keep serving the next clients correctly,
# and let go of every reset connection.  Against the threaded server and the
# single-threaded one.
. "$(dirname "$0")/../lib.sh"

for server in echo_threaded echo_single; do
	start_server "$server"
	settle_baseline
	run_client "$server-reset" echo_verify -p "$PORT" -c 20 --rst-after 256K -s 40
	run_client "$server-reset-blocked" echo_verify -p "$PORT" -c 4 -n 64M --no-read \
		--rst-after 1 --hold 1 -s 41
	run_client "$server-after" echo_verify -p "$PORT" -c 20 -n 512K --vary -s 42
	bytes=$(sed -n 's/^ok connections=20 bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/$server-after.out")
	[ -n "$bytes" ] || fail "no byte count from the last client"
	wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"
	# The reset connections add an unknown amount; the last client's bytes
	# are a lower bound.
	assert_carried "$SERVER_PID" "$bytes"
	stop_server
done
