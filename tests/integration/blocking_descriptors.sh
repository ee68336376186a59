#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A thread-per-connection server holds no more descriptors under the shim
# than without it.  Each connection's thread gets a lane: its ring is
# entered by its registered index and needs no descriptor once the kernel
# registers by index (6.3), and its wake eventfd is made only for readiness
# waits, which a blocking server never makes.  Otherwise a server near its
# RLIMIT_NOFILE would run out with the shim where it does not without:
# three descriptors per connection instead of one.  The same 100
# connections, each echoing a line, are held open against the plain server
# and against the one under the shim while the descriptors are counted.
. "$(dirname "$0")/../lib.sh"

CONNECTIONS=100

# hold_and_count: opens the connections to $PORT, echoes a line on each,
# and records the server's descriptors in SOCKETS and OTHERS while all are
# open (a thread, and so a lane, for each); ECHOED counts the bytes.
hold_and_count() {
	local fds=() fd line
	ECHOED=0
	for ((i = 0; i < CONNECTIONS; i++)); do
		exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" || fail "connection $i was refused"
		fds+=("$fd")
	done
	for fd in "${fds[@]}"; do
		printf 'line %s\n' "$fd" >&"$fd"
		read -r -t 10 -u "$fd" line || fail "no echo on connection $fd"
		[ "$line" = "line $fd" ] || fail "connection $fd echoed '$line'"
		ECHOED=$((ECHOED + ${#line} + 1))
	done
	SOCKETS=$(socket_count "$SERVER_PID")
	OTHERS=$(($(fd_count "$SERVER_PID") - SOCKETS))
	for fd in "${fds[@]}"; do
		exec {fd}>&-
	done
}

start_server --plain echo_threaded
hold_and_count
plain_sockets=$SOCKETS plain_others=$OTHERS
stop_server "$SERVER_PID"
note "plain: $plain_sockets sockets, $plain_others other descriptors"

start_server --env RINGSTEER_LOG=debug echo_threaded
hold_and_count
note "under the shim: $SOCKETS sockets, $OTHERS other descriptors"
if [ "$OTHERS" != "$plain_others" ] &&
	grep -q 'keeps its ring.s descriptor (the kernel registers by index from 6.3)' "$SERVER_ERR"; then
	stop_server "$SERVER_PID"
	skip "this kernel ($(uname -r)) cannot register io_uring by index (6.3): each lane keeps its ring's descriptor"
fi
[ "$SOCKETS" = "$plain_sockets" ] ||
	fail "the server held $SOCKETS sockets under the shim, $plain_sockets without"
[ "$OTHERS" = "$plain_others" ] ||
	fail "the server held $OTHERS descriptors other than sockets under the shim, $plain_others without: $(ls -l "/proc/$SERVER_PID/fd" | grep -v 'socket:\[' | awk '{ print $NF }' | sort | uniq -c | tr -s ' \n' ' ')"
assert_carried "$SERVER_PID" "$ECHOED"
stop_server "$SERVER_PID"
