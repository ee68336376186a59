#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The inetd pattern under the shim: accept, fork, dup2 the connection onto
# stdin and stdout, exec /bin/cat.  The shim must survive fork (fresh rings
# in the child), dup2, close and exec with nothing lost: 20 concurrent
# connections with random payloads and 10 half-closed ones are checked byte
# for byte.  Every child must exit with status 0 and be reaped (no
# zombies), the parent must accept through its ring, and the children's
# traffic must go through rings too.  Also run: the SIGCHLD handler without
# SA_RESTART (accept interrupted with EINTR by every exiting child), fork
# without exec (the child echoes itself), and a filter that echoes half of
# each chunk with write(2) and half with stdio (tests/servers/stdio_echo):
# stdio writes out of the shim's sight, so the order holds only if the
# shim's queued bytes leave first.
. "$(dirname "$0")/../lib.sh"

# Children and their parent must leave the server with no child processes.
wait_for_no_children() {
	local pid=$1 tries=0 children
	while :; do
		children=$(ps -o pid=,stat=,comm= --ppid "$pid" 2>/dev/null)
		[ -z "$children" ] && return 0
		[ $tries -ge 100 ] && fail "server $pid still has children 10 s after its clients left: $children"
		sleep 0.1
		tries=$((tries + 1))
	done
}

need_program "$SERVERS/stdio_echo"
for variant in exec exec-no-restart fork-only exec-stdio; do
	# The ring must carry at least the echo's bytes, or with exec-stdio
	# its write(2) halves (stdio's go the C library's way).
	share=1
	case $variant in
	exec) arguments=() ;;
	exec-no-restart) arguments=(-n) ;;
	fork-only) arguments=(-x) ;;
	exec-stdio) arguments=(-c "$SERVERS/stdio_echo") share=4 ;;
	esac
	STATS_DIR=$TEST_TMP/stats-$variant
	mkdir -p "$STATS_DIR"
	start_server --env RINGSTEER_STATS_KEEP=1 inetd_echo "${arguments[@]}"
	run_client "$variant" echo_verify -p "$PORT" -c 20 -n 256K --vary -s 70
	run_client "$variant-half-close" echo_verify -p "$PORT" -c 10 -n 128K --half-close -s 71
	bytes=$(sed -n 's/^ok connections=20 bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/$variant.out")
	[ -n "$bytes" ] || fail "no byte count from the $variant client"
	wait_for_no_children "$SERVER_PID"
	if grep -q 'child' "$SERVER_ERR"; then
		fail "$variant: children failed: $(grep child "$SERVER_ERR" | head -n 5 | tr '\n' ';')"
	fi
	if shim_enabled; then
		accepts=$(wait_for_counter 30 stats_total accepts "$SERVER_PID")
		note "$variant: parent accepts=$accepts"
		[ "$accepts" -ge 30 ] || fail "$variant: the parent accepted $accepts of 30 connections through its ring"
	fi
	assert_carried_all $(((bytes + 10 * 128 * 1024) / share)) 30
	stop_server
done
