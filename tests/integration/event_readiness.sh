#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Differential readiness test: tests/servers/readiness_probe runs fixed
# scripts of socket and readiness calls on accepted sockets (epoll level,
# edge and one-shot, MOD and DEL, errors of epoll_ctl, one socket in two
# sets, entries leaving the middle of a set and others taking their places, close while registered and the registration that outlives its
# number through a dup, nested epoll, sockets mixed with an eventfd and a
# pipe, EPOLLRDHUP/EPOLLHUP/EPOLLERR after the peer's shutdown and reset,
# poll and select with timeouts, bitmaps beyond FD_SETSIZE with guard words
# after them, EAGAIN on empty non-blocking reads, MSG_PEEK, MSG_DONTWAIT,
# MSG_WAITALL, FIONREAD, a full send buffer, maxevents 1, signal masks of
# epoll_pwait, ppoll and pselect, a socket that moves to another thread's
# loop while the first goes on, sockets added by a thread that then blocks
# elsewhere to a set another thread waits on, a socket polled by a second
# thread while the first polls on, a connection passed between two loops
# that wake each other through pipes) once on the plain kernel and once under
# the shim.  The transcripts must be equal line for line, and the shim must
# have carried the probe's accepted sockets (bytes through its ring).
. "$(dirname "$0")/../lib.sh"

PROBE=$SERVERS/readiness_probe
need_program "$PROBE"

# The probe holds more than FD_SETSIZE descriptors at one point.
raise_descriptor_limit 4096

run_probe plain 120 env RINGSTEER_STATS_DIR="$STATS_DIR" "$PROBE"
scenarios=$(grep -c ': end$' "$TEST_TMP/plain.out")
[ "$scenarios" -ge 22 ] || fail "the probe finished only $scenarios scenarios on the plain kernel"
if shim_enabled; then
	run_probe shim 120 env RINGSTEER_STATS_DIR="$STATS_DIR" RINGSTEER_STATS_KEEP=1 LD_PRELOAD="$SHIM" "$PROBE"
else
	run_probe shim 120 env RINGSTEER_STATS_DIR="$STATS_DIR" "$PROBE"
fi
if ! diff -u "$TEST_TMP/plain.out" "$TEST_TMP/shim.out"; then
	fail "the readiness transcript under the shim differs from the plain kernel's"
fi
note "transcripts identical: $scenarios scenarios, $(wc -l <"$TEST_TMP/plain.out") lines"
[ -s "$TEST_TMP/shim.err" ] && note "probe stderr under the shim: $(head -n 3 "$TEST_TMP/shim.err" | tr '\n' ';')"
# Every scenario's socket is accepted; most send and receive through it.
assert_carried_all 32 20
