#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nginx from Debian as a reverse proxy under the shim with
# RINGSTEER_CLIENT=1: its upstream connections are non-blocking connects
# (the socket joins epoll before connect), kept alive between requests.
# The backend is a second nginx, plain, serving files of many sizes and a
# 3 MiB one.  Every file is fetched through the proxy with curl, over one
# connection and then by 8 clients at once, and compared with the original
# by sha256; then wrk for 3 s: no socket errors, only 2xx.  The proxy's
# counters must show the upstream side carried by the shim: the bodies it
# received through its rings, at least every transfer of the big file.
. "$(dirname "$0")/../lib.sh"

command -v nginx >/dev/null || fail "nginx is not installed: run make deps"
command -v curl >/dev/null || fail "curl is not installed: run make deps"
command -v wrk >/dev/null || fail "wrk is not installed: run make deps"

chmod 755 "$TEST_TMP"
chmod 1777 "$STATS_DIR"
ROOT=$TEST_TMP/www
mkdir -p "$ROOT" "$TEST_TMP/fetched"
files=()
for size in 0 1 1000 4096 65536 100000 999999; do
	head -c "$size" /dev/urandom >"$ROOT/file-$size.bin"
	files+=("file-$size.bin")
done
head -c $((3 * 1024 * 1024)) /dev/urandom >"$ROOT/big.bin"
files+=(big.bin)
chmod -R a+rX "$ROOT"

user_line=
[ "$(id -u)" = 0 ] && user_line="user www-data;"
# write_config NAME PORT SERVER-BLOCK-BODY
write_config() {
	mkdir -p "$TEST_TMP/$1-temp"
	cat >"$TEST_TMP/$1.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
$user_line
pid $TEST_TMP/$1.pid;
error_log $TEST_TMP/$1-error.log warn;
events {
	worker_connections 1024;
}
http {
	access_log off;
	client_body_temp_path $TEST_TMP/$1-temp/body;
	proxy_temp_path $TEST_TMP/$1-temp/proxy;
	fastcgi_temp_path $TEST_TMP/$1-temp/fastcgi;
	uwsgi_temp_path $TEST_TMP/$1-temp/uwsgi;
	scgi_temp_path $TEST_TMP/$1-temp/scgi;
	sendfile on;
	tcp_nopush on;
	keepalive_timeout 65;
	keepalive_requests 100000;
	default_type application/octet-stream;
	$3
	server {
		listen 127.0.0.1:$2;
		$4
	}
}
CONF
}

for attempt in 1 2 3; do
	backend_port=$(free_port)
	write_config backend "$backend_port" "" "root $ROOT;"
	start_real_server --plain --retry backend "$backend_port" \
		nginx -c "$TEST_TMP/backend.conf" -e stderr && break
	[ $attempt = 3 ] && fail "the backend nginx found no free port in 3 attempts"
done
backend_pid=$SERVER_PID
for attempt in 1 2 3; do
	port=$(free_port)
	write_config proxy "$port" \
		"upstream backend { server 127.0.0.1:$backend_port; keepalive 16; }" \
		'location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }'
	start_real_server --retry --env RINGSTEER_STATS_KEEP=1 --env RINGSTEER_CLIENT=1 proxy "$port" \
		nginx -c "$TEST_TMP/proxy.conf" -e stderr && break
	[ $attempt = 3 ] && fail "the proxy nginx found no free port in 3 attempts"
done
proxy_pid=$SERVER_PID

arguments=()
for file in "${files[@]}"; do
	arguments+=(-o "$TEST_TMP/fetched/$file" "http://127.0.0.1:$PORT/$file")
done
curl --silent --show-error --fail --max-time 60 -w '%{http_code}\n' \
	"${arguments[@]}" >"$TEST_TMP/curl.out" 2>&1 ||
	fail "curl failed: $(tail -n 3 "$TEST_TMP/curl.out")"
[ "$(grep -c '^200$' "$TEST_TMP/curl.out")" = ${#files[@]} ] ||
	fail "not every answer was 200: $(sort "$TEST_TMP/curl.out" | uniq -c | tr '\n' ';')"
check_fetched "$ROOT" "$TEST_TMP/fetched" "${files[@]}"
note "${#files[@]} files fetched through the proxy over one connection, all equal to the originals"

clients=()
for client in 1 2 3 4 5 6 7 8; do
	mkdir -p "$TEST_TMP/fetched-$client"
	(
		arguments=()
		for file in big.bin "${files[@]}"; do
			[ "$file" = big.bin ] && [ ${#arguments[@]} -gt 0 ] && continue
			arguments+=(-o "$TEST_TMP/fetched-$client/$file" "http://127.0.0.1:$PORT/$file")
		done
		curl --silent --show-error --fail --max-time 60 "${arguments[@]}"
	) >"$TEST_TMP/curl-$client.out" 2>&1 &
	clients+=($!)
	BACKGROUND_PIDS+=($!)
done
for pid in "${clients[@]}"; do
	wait "$pid" || true
done
for client in 1 2 3 4 5 6 7 8; do
	[ -s "$TEST_TMP/curl-$client.out" ] && fail "curl client $client: $(head -n 3 "$TEST_TMP/curl-$client.out")"
	check_fetched "$ROOT" "$TEST_TMP/fetched-$client" "${files[@]}"
done
note "8 concurrent clients fetched every file through the proxy correctly"

output=$TEST_TMP/wrk.out
timeout -k 5 60 wrk -t 2 -c 50 -d 3s "http://127.0.0.1:$PORT/file-4096.bin" >"$output" 2>&1 ||
	fail "wrk failed: $(tail -n 5 "$output")"
grep -q 'Socket errors' "$output" && fail "wrk: $(grep 'Socket errors' "$output")"
grep -q 'Non-2xx' "$output" && fail "wrk: $(grep 'Non-2xx' "$output")"
requests=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$output")
[ "${requests:-0}" -gt 0 ] || fail "wrk made no requests: $(cat "$output")"
note "wrk through the proxy: $requests requests, no socket errors, all 2xx"

stop_server "$proxy_pid"
stop_server "$backend_pid"
for log in proxy backend; do
	grep -E '\[(alert|emerg|crit)\]' "$TEST_TMP/$log-error.log" &&
		fail "nginx ($log) logged errors: $(grep -E '\[(alert|emerg|crit)\]' "$TEST_TMP/$log-error.log" | head -n 3)"
done
# Only the proxy runs under the shim.  What it receives through its rings
# beyond the clients' requests are the backend's answers: at least the
# big file's nine transfers means the upstream connections were carried.
big_bytes=$((9 * 3 * 1024 * 1024))
assert_carried_all 1000 0 2
if shim_enabled; then
	received=$(stats_all_total bytes_received)
	[ "${received:-0}" -ge $big_bytes ] ||
		fail "the proxy received $received bytes through its rings, less than the $big_bytes of the big file's transfers from the backend: the upstream connections went the kernel path"
	note "the proxy received $received bytes through its rings"
fi
