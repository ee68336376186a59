#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nginx from Debian under the shim with `aio threads`: its worker hands each
# sendfile to a thread pool, so the thread that writes a connection's bytes
# is not the one whose epoll loop watches it (and the pool thread then
# waits on a condition variable, out of the shim's sight).  The bytes must
# still leave promptly and the loop hear of the room they make: every file
# (tests/proxy_lib.sh: 0 bytes to 3 MiB) fetched over one connection and by
# 8 clients at once, compared by sha256, then wrk.  The counters must show
# the small files' bytes sent through the rings.
. "$(dirname "$0")/../proxy_lib.sh"

for attempt in 1 2 3; do
	port=$(free_port)
	write_nginx_config aio "$port" "aio threads;" "root $ROOT;"
	sed -i 's/^events {/thread_pool default threads=4 max_queue=65536;\nevents {/' "$TEST_TMP/aio.conf"
	start_real_server --retry --env RINGSTEER_STATS_KEEP=1 nginx "$port" \
		nginx -c "$TEST_TMP/aio.conf" -e stderr && break
	[ $attempt = 3 ] && fail "nginx found no free port in 3 attempts"
done
nginx_pid=$SERVER_PID

fetch_through aio "$port"
wrk_through aio "$port"

stop_server "$nginx_pid"
grep -E '\[(alert|emerg|crit)\]' "$TEST_TMP/aio-error.log" &&
	fail "nginx logged errors: $(grep -E '\[(alert|emerg|crit)\]' "$TEST_TMP/aio-error.log" | head -n 3)"
# The files up to 16 KiB (0, 1, 1000 and 4096 bytes) go through the send
# queues, nine times each; bigger ones take the kernel's sendfile.
assert_carried_all $((9 * 5097)) 0 9
