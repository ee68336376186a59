#!/bin/bash
# SPDX-License-Identifier: MIT
#
# TCP_CORK is carried by the shim: nginx's tcp_nopush corks and uncorks a
# connection around every response, and under the shim a cork and an
# uncork between two submissions reach the kernel as nothing.  The
# errno_probe cork scenario (its answers are compared with the plain
# kernel's in errno_probe.sh) makes 206 TCP_CORK calls, 100 rounds of cork,
# write, uncork among them; traced with strace, at most a handful may be
# real system calls, and the bytes must still arrive, in order.
. "$(dirname "$0")/../lib.sh"

shim_enabled || skip "RINGSTEER_TEST_NO_SHIM=1: nothing to compare with"
command -v strace >/dev/null || fail "strace is missing: run make deps"
need_program "$CLIENTS/probe_client"
trace=$TEST_TMP/setsockopt.strace
start_server --wrap strace -f -qq -e trace=setsockopt -o "$trace" -- errno_probe
server=$(pgrep -P "$SERVER_PID" | head -n 1)
[ -n "$server" ] || fail "no errno_probe under strace (pid $SERVER_PID)"
# Stopped first on any exit: strace then ends by itself.
BACKGROUND_PIDS+=("$server")
run_client cork probe_client -p "$PORT" cork
tries=0
until grep -q '^cork: end$' "$SERVER_OUT"; do
	[ $tries -ge 100 ] && fail "the server did not finish the cork scenario: $(tail -n 5 "$SERVER_OUT")"
	sleep 0.1
	tries=$((tries + 1))
done
assert_carried "$server"
calls=$(grep -c '^cork: setsockopt' "$SERVER_OUT")
real=$(grep -c 'TCP_CORK' "$trace")
note "TCP_CORK: $calls recorded calls plus 200 in the rounds; $real reached the kernel"
[ "$calls" -ge 6 ] || fail "the scenario recorded $calls setsockopt calls, expected 6"
# The first call is real (the kernel's state is learned), as are the two
# the kernel must reject (bad length, bad pointer) and what getsockopt
# needs settled first.
[ "$real" -le 10 ] || fail "$real TCP_CORK calls reached the kernel, expected at most 10 of 206: $(head -n 12 "$trace")"
# The server first: strace then ends by itself.
kill -TERM "$server"
wait "$SERVER_PID" 2>/dev/null
check_sanitizers "$SERVER_ERR"
