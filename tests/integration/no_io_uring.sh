#!/bin/bash
# SPDX-License-Identifier: MIT
#
# io_uring unavailable, as under a container's seccomp profile: a filter
# makes io_uring_setup, io_uring_enter and io_uring_register fail with
# ENOSYS (and, second run, EPERM, as kernel.io_uring_disabled does).  The
# echo server under the shim must work unchanged through the kernel path,
# print exactly one warning line from the shim on stderr, and its stats
# must say io_uring false with no io_uring_enter calls.
. "$(dirname "$0")/../lib.sh"

need_program "$SERVERS/no_io_uring"
for error in ENOSYS EPERM; do
	start_server --wrap "$SERVERS/no_io_uring" -e $error -- echo_threaded
	run_client "$error" echo_verify -p "$PORT" -c 20 -n 512K --vary -s 80
	run_client "$error-half-close" echo_verify -p "$PORT" -c 6 -n 64K --half-close -s 81
	if shim_enabled; then
		io_uring=$(stats_process_field io_uring "$SERVER_PID")
		enters=$(stats_total ring_enters "$SERVER_PID")
		note "$error: stats say io_uring=${io_uring:-?} ring_enters=${enters:-?}"
		[ "$io_uring" = false ] || fail "$error: the stats do not say io_uring false (got '${io_uring}')"
		[ "$enters" = 0 ] || fail "$error: ring_enters is '${enters}' without io_uring"
		lines=$(grep -c '^ringsteer' "$SERVER_ERR")
		if [ "$lines" != 1 ] || ! grep -q '^ringsteer.*warning' "$SERVER_ERR"; then
			echo "--- stderr:"
			head -n 20 "$SERVER_ERR"
			fail "$error: expected exactly one warning line from the shim on stderr, found $lines shim lines"
		fi
		note "$error: warning: $(grep '^ringsteer' "$SERVER_ERR")"
	fi
	stop_server
done
