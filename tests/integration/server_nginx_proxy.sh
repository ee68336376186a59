#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nginx from Debian as a reverse proxy under the shim with
# RINGSTEER_CLIENT=1: its upstream connections are non-blocking connects
# (the socket joins epoll before connect), kept alive between requests.
# The backend is a second nginx, plain (tests/proxy_lib.sh): every file is
# fetched through the proxy with curl, over one connection and then by 8
# clients at once, and compared with the original by sha256; then wrk for
# 3 s: no socket errors, only 2xx.  The proxy's counters must show the
# upstream side carried by the shim: the bodies it received through its
# rings, at least every transfer of the big file.
. "$(dirname "$0")/../proxy_lib.sh"

start_backend
start_nginx proxy "upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 16; }" \
	'location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }' \
	--env RINGSTEER_STATS_KEEP=1 --env RINGSTEER_CLIENT=1
proxy_pid=$SERVER_PID

fetch_through proxy "$PORT"
wrk_through proxy "$PORT"

stop_server "$proxy_pid"
stop_server "$BACKEND_PID"
check_nginx_log backend
check_nginx_log proxy
# Only the proxy runs under the shim.  What it receives through its rings
# beyond the clients' requests are the backend's answers: at least the
# big file's nine transfers means the upstream connections were carried.
assert_carried_all 1000 0 2
if shim_enabled; then
	received=$(stats_all_total bytes_received)
	[ "${received:-0}" -ge $BIG_FILE_BYTES ] ||
		fail "the proxy received $received bytes through its rings, less than the $BIG_FILE_BYTES of the big file's transfers from the backend: the upstream connections went the kernel path"
	note "the proxy received $received bytes through its rings"
fi
