#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Pollers sharing a listener: tests/servers/poll_herd runs four threads
# that poll one non-blocking listener, a pipe each and idle accepted
# sockets, while a client connects and closes as fast as it can and a
# ticker writes the pipes every 100 us.  Each connection wakes every poller
# and one accepts it.  A poll that ends (for its pipe) while its listener
# poll's wake-up is being handled must still take that poll back: a poll
# remove is refused then, and the wake-up, spurious, left the poll armed
# for good, so the next call hung (or a later one read its late answer).
# Three runs of 4 s, under the shim: no poll call may outlive its timeout
# by a second, and the shim must have answered the polls.
. "$(dirname "$0")/../lib.sh"

PROBE=$SERVERS/poll_herd
need_program "$PROBE"
environment=(RINGSTEER_STATS_DIR="$STATS_DIR" RINGSTEER_STATS_KEEP=1)
shim_enabled && environment+=(LD_PRELOAD="$SHIM")
for run in 1 2 3; do
	run_probe "run-$run" 60 env "${environment[@]}" "$PROBE" 4
	note "run $run: $(tr '\n' ';' <"$TEST_TMP/run-$run.out")"
done
if shim_enabled; then
	answered=$(stats_all_total calls_answered)
	enters=$(stats_all_total ring_enters)
	note "the shim answered $answered calls with $enters io_uring_enter"
	[ "${answered:-0}" -ge 10000 ] && [ "${enters:-0}" -gt 0 ] ||
		fail "the polls went the kernel path (calls answered by the shim: ${answered:-none})"
fi
