#!/bin/bash
# SPDX-License-Identifier: MIT
#
# haproxy from Debian under the shim with RINGSTEER_CLIENT=1, two threads,
# in front of a plain nginx (tests/proxy_lib.sh), on two frontends:
#   http  HTTP mode, server connections kept alive and shared (http-reuse)
#   tcp   TCP mode with option splice-request and splice-response: haproxy
#         moves the bytes with splice() through pipes, out of sockets the
#         shim receives ahead on and into sockets it has queued bytes for
# Every file is fetched through each frontend, over one connection and by
# 8 clients at once, and compared with the original by sha256; wrk then
# runs against both.  The counters must show that the shim carried the
# server side (the big file's transfers, received through the rings) and
# that splice() was answered from its receive buffers (bytes_spliced at
# least the big file's transfers through the tcp frontend).
. "$(dirname "$0")/../proxy_lib.sh"

command -v haproxy >/dev/null || fail "haproxy is not installed: run make deps"

start_backend
for attempt in 1 2 3; do
	http_port=$(free_port)
	tcp_port=$(free_port)
	[ "$http_port" = "$tcp_port" ] && continue
	cat >"$TEST_TMP/haproxy.cfg" <<CONF
global
	nbthread 2
	maxconn 1024
defaults
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend http_in
	mode http
	bind 127.0.0.1:$http_port
	default_backend http_servers
backend http_servers
	mode http
	http-reuse always
	server nginx 127.0.0.1:$BACKEND_PORT
frontend tcp_in
	mode tcp
	bind 127.0.0.1:$tcp_port
	option splice-request
	option splice-response
	default_backend tcp_servers
backend tcp_servers
	mode tcp
	server nginx 127.0.0.1:$BACKEND_PORT
CONF
	start_real_server --retry --env RINGSTEER_STATS_KEEP=1 --env RINGSTEER_CLIENT=1 haproxy \
		"$http_port" haproxy -db -f "$TEST_TMP/haproxy.cfg" && break
	[ $attempt = 3 ] && fail "haproxy found no free ports in 3 attempts"
done
haproxy_pid=$SERVER_PID

fetch_through http "$http_port"
fetch_through tcp "$tcp_port"
wrk_through http "$http_port"
wrk_through tcp "$tcp_port"

stop_server "$haproxy_pid"
stop_server "$BACKEND_PID"
check_nginx_log backend
grep -E '\[(ALERT|EMERG)\]' "$SERVER_ERR" "$SERVER_OUT" &&
	fail "haproxy logged alerts: $(grep -hE '\[(ALERT|EMERG)\]' "$SERVER_ERR" "$SERVER_OUT" | head -n 3)"
assert_carried_all 1000 0 2
if shim_enabled; then
	received=$(stats_all_total bytes_received)
	spliced=$(stats_all_total bytes_spliced)
	[ "${received:-0}" -ge $((2 * BIG_FILE_BYTES)) ] ||
		fail "haproxy received $received bytes through its rings, less than the $((2 * BIG_FILE_BYTES)) of the big file's transfers from the backend: the server connections went the kernel path"
	[ "${spliced:-0}" -ge $BIG_FILE_BYTES ] ||
		fail "splice() took $spliced bytes from the shim's receive buffers, less than the $BIG_FILE_BYTES of the big file's transfers through the tcp frontend"
	note "haproxy received $received bytes through its rings; splice() took $spliced of them"
fi
