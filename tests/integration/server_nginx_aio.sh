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

# nginx's own default thread pool (32 threads) sends the files.
start_nginx aio "aio threads;" "root $ROOT;" --env RINGSTEER_STATS_KEEP=1
nginx_pid=$SERVER_PID

fetch_through aio "$PORT"
wrk_through aio "$PORT"

stop_server "$nginx_pid"
check_nginx_log aio
# The files up to 16 KiB (0, 1, 1000 and 4096 bytes) go through the send
# queues, nine times each; bigger ones take the kernel's sendfile.
assert_carried_all $((9 * 5097)) 0 9
