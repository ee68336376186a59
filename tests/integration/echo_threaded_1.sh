#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The thread-per-connection echo server under the shim, one connection at a
# time: six connections, one per call family (read, recv, recvfrom,
# recvmsg, readv, the fortified calls), each 4 MiB in writes of random
# sizes, every byte checked; then the same over IPv6.  The shim must have
# carried every byte through its rings, and each connection must leave
# nothing behind (threads, descriptors).
. "$(dirname "$0")/../lib.sh"

start_server echo_threaded
settle_baseline
total=0
for run in 0 1 2 3 4 5; do
	run_client "run-$run" echo_verify -p "$PORT" -c 1 -n 4M -s $((100 + run))
	total=$((total + 4 * 1024 * 1024))
done
wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"
assert_carried "$SERVER_PID" "$total"
stop_server

if [ -e /proc/net/if_inet6 ] && grep -q '^0\{31\}1 ' /proc/net/if_inet6; then
	start_server echo_threaded -6
	run_client ipv6 echo_verify -6 -p "$PORT" -c 1 -n 4M -s 200
	assert_carried "$SERVER_PID" $((4 * 1024 * 1024))
	stop_server
else
	note "::1 is not configured: IPv6 part not run"
fi
