#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Differential test: the same client scenarios against the same server on
# the plain kernel and under the shim must produce the same client output,
# line for line (the client prints a line per connection: bytes sent and
# received, end of file or reset).  Scenarios: many connections with random
# sizes and half-close on the threaded server, sequential connections on
# the single-threaded one, resets mid-stream.
. "$(dirname "$0")/../lib.sh"

# scenario NAME SERVER [SERVER ARGS] -- CLIENT ARGS
scenario() {
	local name=$1 server=$2 server_arguments=() mode
	shift 2
	while [ "$1" != -- ]; do
		server_arguments+=("$1")
		shift
	done
	shift
	for mode in plain shim; do
		if [ $mode = plain ]; then
			start_server --plain "$server" "${server_arguments[@]}"
		else
			start_server "$server" "${server_arguments[@]}"
		fi
		run_client "$name-$mode" echo_verify -p "$PORT" -v "$@"
		[ $mode = shim ] && assert_carried "$SERVER_PID"
		stop_server
	done
	diff -u "$TEST_TMP/$name-plain.out" "$TEST_TMP/$name-shim.out" ||
		fail "$name: client output under the shim differs from the plain kernel's"
	note "$name: outputs identical ($(wc -l <"$TEST_TMP/$name-plain.out") lines)"
}

scenario threaded-half-close echo_threaded -- -c 30 -n 512K --vary --half-close -s 90
scenario threaded-small-splits echo_threaded -m readv -- -c 20 -n 64K --vary --max-write 300 -s 91
scenario single-sequential echo_single -- -c 12 --sequential -n 256K --vary -s 92
scenario threaded-reset echo_threaded -- -c 10 --rst-after 64K -s 93
scenario threaded-ipv6 echo_threaded -6 -- -6 -c 10 -n 128K --vary -s 94
