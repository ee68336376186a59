#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Bytes written before exec arrive, in order: tests/servers/exec_after_write
# forks a child per connection that reads the client's line, answers it with
# write(2), which the shim queues, and execs /bin/sh to write "after" on the
# same descriptor, by each of the nine exec calls in turn and once after an
# exec that fails, or ends the child with _exit or _Exit instead, or starts
# the shell with posix_spawn or posix_spawnp (whose child execs through the
# C library's internal call) and waits for it.  Every
# client must read exactly its answer, then (after the failed exec) "exec
# failed: ENOENT", then "after" unless the child _exited, then end of file.
# The children's counters must show the answers received and sent by the
# shim.
. "$(dirname "$0")/../lib.sh"

CONNECTIONS=28
start_server --env RINGSTEER_STATS_KEEP=1 exec_after_write
total=0
for ((i = 0; i < CONNECTIONS; i++)); do
	exec 3<>"/dev/tcp/127.0.0.1/$PORT" || fail "connection $i: cannot connect"
	printf 'line %d\n' "$i" >&3
	got=$(timeout 10 cat <&3) || fail "connection $i: no end of file within 10 s (got '$got')"
	exec 3<&-
	expected="got line $i"
	case $((i % 14)) in
	9) expected+=$'\nexec failed: ENOENT\nafter' ;;
	10 | 11) ;;
	*) expected+=$'\nafter' ;;
	esac
	[ "$got" = "$expected" ] || fail "connection $i: got '$got', expected '$expected'"
	total=$((total + ${#i} + 6))
done
note "$CONNECTIONS connections, each way of exec, _exit or posix_spawn twice: every answer arrived, before 'after'"
sleep 0.5
# Its own lines only: under SANITIZE=1 LeakSanitizer notes, in children
# that exit, that it could not suspend the parent's threads.
if grep -q '^exec_after_write' "$SERVER_ERR"; then
	fail "children failed: $(grep '^exec_after_write' "$SERVER_ERR" | head -n 5 | tr '\n' ';')"
fi
if shim_enabled; then
	received=$(wait_for_counter "$total" stats_all_total bytes_received)
	sent=$(wait_for_counter $((total + 4 * CONNECTIONS)) stats_all_total bytes_sent)
	[ "$received" -ge "$total" ] && [ "$sent" -ge $((total + 4 * CONNECTIONS)) ] ||
		fail "the shim carried $received bytes in and $sent out, fewer than the $total lines and their answers"
	note "through the shim: $received bytes received, $sent sent"
fi
stop_server
