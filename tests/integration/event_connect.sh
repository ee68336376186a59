#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Differential test of non-blocking connects under RINGSTEER_CLIENT=1:
# tests/servers/connect_probe runs fixed scripts the way event loops make
# outgoing connections (epoll before connect and edge-triggered as nginx
# does, level-triggered after connect, a refused connection, poll, a
# one-shot registration that fired while connecting, one socket in two
# sets, connect asked again) once on the plain kernel and once under the shim.  The transcripts
# must be equal line for line, and the shim must have carried the
# connecting ends once they were established: the accepted ends inherit a
# receive timeout and stay the kernel's, so the bytes through the ring are
# the connecting ends' (six replies of 4 bytes, six requests).
. "$(dirname "$0")/../lib.sh"

PROBE=$SERVERS/connect_probe
need_program "$PROBE"

run_probe plain 60 "$PROBE"
scenarios=$(grep -c ': end$' "$TEST_TMP/plain.out")
[ "$scenarios" -ge 7 ] || fail "the probe finished only $scenarios scenarios on the plain kernel"
if shim_enabled; then
	run_probe shim 60 env RINGSTEER_CLIENT=1 RINGSTEER_STATS_DIR="$STATS_DIR" \
		RINGSTEER_STATS_KEEP=1 LD_PRELOAD="$SHIM" "$PROBE"
else
	run_probe shim 60 env RINGSTEER_CLIENT=1 "$PROBE"
fi
if ! diff -u "$TEST_TMP/plain.out" "$TEST_TMP/shim.out"; then
	fail "the connect transcript under the shim differs from the plain kernel's"
fi
note "transcripts identical: $scenarios scenarios, $(wc -l <"$TEST_TMP/plain.out") lines"
assert_carried_all 24
