#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Errno for errno: the errno_probe server runs fixed scripts of socket calls
# whose results the kernel fully determines (calls after a reset, around
# shutdown, MSG_PEEK / MSG_DONTWAIT / FIONREAD / O_NONBLOCK / FIONBIO on a
# blocking socket, zero-length calls, bad buffers, writing to a closed
# peer, dup/dup2/close of a shared socket, sendfile between writes, TCP_CORK
# around writes (set, read back, bad lengths and pointers),
# close_range after a write, splice out of a socket in an epoll set and
# into one, around full pipes, write(2) and stdio mixed on one socket and
# fclose, recvmmsg and sendmmsg in an epoll set and blocking, dprintf
# between writes, a daemon's close loop, close_range and closefrom over
# the numbers above the connection (the shim's own descriptors must neither
# close nor take numbers the kernel would give), closefrom then a file on
# the number: last, as it closes
# everything above the connection too) and prints every result and
# SIGPIPE count.  The transcript under the shim must equal the plain
# kernel's, scenario by scenario, and so must the client's view.  All
# scenarios run even after a difference, so one run reports every one.
. "$(dirname "$0")/../lib.sh"

SCENARIOS="reset halfclose peek zero efault closedpeer dup sendfile closerange cork splice fdopen mmsg dprintf ownfds closefrom"

need_program "$CLIENTS/probe_client"
start_server --plain errno_probe
plain_pid=$SERVER_PID plain_port=$PORT plain_out=$SERVER_OUT
start_server errno_probe
shim_pid=$SERVER_PID shim_port=$PORT shim_out=$SERVER_OUT

# Waits until the server printed the scenario's end line (bounded).
wait_for_end() {
	local output=$1 scenario=$2 pid=$3 tries=0
	until grep -q "^$scenario: end$" "$output"; do
		process_alive "$pid" || return 1
		[ $tries -ge 100 ] && return 1
		sleep 0.1
		tries=$((tries + 1))
	done
}

differences=()
for scenario in $SCENARIOS; do
	for mode in plain shim; do
		if [ $mode = plain ]; then port=$plain_port; else port=$shim_port; fi
		timeout -k 5 30 "$CLIENTS/probe_client" -p "$port" "$scenario" \
			>"$TEST_TMP/$scenario-$mode.client" 2>&1
		echo "exit status $?" >>"$TEST_TMP/$scenario-$mode.client"
	done
	grep -q '^exit status 0$' "$TEST_TMP/$scenario-plain.client" ||
		fail "$scenario: the client failed against the plain kernel: $(cat "$TEST_TMP/$scenario-plain.client")"
	wait_for_end "$plain_out" "$scenario" "$plain_pid" ||
		fail "$scenario: the plain server did not finish the scenario"
	if ! wait_for_end "$shim_out" "$scenario" "$shim_pid"; then
		note "$scenario: the server under the shim did not finish the scenario"
	fi
	grep "^$scenario: " "$plain_out" >"$TEST_TMP/$scenario-plain.server"
	grep "^$scenario: " "$shim_out" >"$TEST_TMP/$scenario-shim.server"
	if ! diff -u "$TEST_TMP/$scenario-plain.server" "$TEST_TMP/$scenario-shim.server" ||
		! diff -u "$TEST_TMP/$scenario-plain.client" "$TEST_TMP/$scenario-shim.client"; then
		differences+=("$scenario")
	else
		note "$scenario: identical ($(wc -l <"$TEST_TMP/$scenario-plain.server") server lines)"
	fi
	if ! process_alive "$shim_pid"; then
		differences+=("$scenario (server under the shim died)")
		start_server errno_probe
		shim_pid=$SERVER_PID shim_port=$PORT shim_out=$SERVER_OUT
	fi
done
[ ${#differences[@]} -eq 0 ] ||
	fail "under the shim these scenarios differ from the plain kernel: ${differences[*]}"
assert_carried "$shim_pid"
stop_server "$plain_pid"
stop_server "$shim_pid"
