# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Shared by the reverse-proxy tests (server_nginx_proxy, server_haproxy),
# sourced at their top instead of lib.sh (it sources lib.sh itself).  A
# plain nginx serves files of many sizes and a 3 MiB one; the proxy under
# test stands in front of it; every file is fetched through the proxy, over
# one connection and by 8 clients at once, and compared with the original
# by sha256, and wrk then runs against it.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v nginx >/dev/null || fail "nginx is not installed: run make deps"
command -v curl >/dev/null || fail "curl is not installed: run make deps"
command -v wrk >/dev/null || fail "wrk is not installed: run make deps"

chmod 755 "$TEST_TMP"
chmod 1777 "$STATS_DIR"
ROOT=$TEST_TMP/www
mkdir -p "$ROOT"
FILES=()
for size in 0 1 1000 4096 65536 100000 999999; do
	head -c "$size" /dev/urandom >"$ROOT/file-$size.bin"
	FILES+=("file-$size.bin")
done
head -c $((3 * 1024 * 1024)) /dev/urandom >"$ROOT/big.bin"
FILES+=(big.bin)
chmod -R a+rX "$ROOT"
# What the fetches below move of the big file: once over one connection,
# once per concurrent client.
BIG_FILE_BYTES=$((9 * 3 * 1024 * 1024))

NGINX_USER_LINE=
[ "$(id -u)" = 0 ] && NGINX_USER_LINE="user www-data;"

# write_nginx_config NAME PORT HTTP-BLOCK-EXTRA SERVER-BLOCK-BODY: an nginx
# config with two workers, keep-alive and sendfile, in $TEST_TMP/NAME.conf.
write_nginx_config() {
	mkdir -p "$TEST_TMP/$1-temp"
	cat >"$TEST_TMP/$1.conf" <<CONF
daemon off;
master_process on;
worker_processes 2;
$NGINX_USER_LINE
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

# start_nginx NAME HTTP-BLOCK-EXTRA SERVER-BLOCK-BODY [OPTION...]: an nginx
# of write_nginx_config on a free port (three tries), started by
# start_real_server with the OPTIONs (--plain, --env ...); sets PORT and
# SERVER_PID.
start_nginx() {
	local name=$1 http=$2 server=$3 attempt port
	shift 3
	for attempt in 1 2 3; do
		port=$(free_port)
		write_nginx_config "$name" "$port" "$http" "$server"
		start_real_server --retry "$@" "$name" "$port" \
			nginx -c "$TEST_TMP/$name.conf" -e stderr && return 0
	done
	fail "nginx ($name) found no free port in 3 attempts"
}

# start_backend: the plain nginx serving $ROOT; sets BACKEND_PORT and
# BACKEND_PID.
start_backend() {
	start_nginx backend "" "root $ROOT;" --plain
	BACKEND_PORT=$PORT
	BACKEND_PID=$SERVER_PID
}

# check_nginx_log NAME: that nginx logged no alert, emergency or critical
# error (call after stopping it).
check_nginx_log() {
	grep -E '\[(alert|emerg|crit)\]' "$TEST_TMP/$1-error.log" &&
		fail "nginx ($1) logged errors: $(grep -E '\[(alert|emerg|crit)\]' "$TEST_TMP/$1-error.log" | head -n 3)"
	return 0
}

# fetch_through LABEL PORT: every file through the proxy on PORT, over one
# connection and then by 8 clients at once (each fetching the big file
# and the others), all compared with the originals.
fetch_through() {
	local label=$1 port=$2 arguments=() file
	mkdir -p "$TEST_TMP/$label"
	for file in "${FILES[@]}"; do
		arguments+=(-o "$TEST_TMP/$label/$file" "http://127.0.0.1:$port/$file")
	done
	curl --silent --show-error --fail --max-time 60 -w '%{http_code}\n' \
		"${arguments[@]}" >"$TEST_TMP/$label.curl" 2>&1 ||
		fail "$label: curl failed: $(tail -n 3 "$TEST_TMP/$label.curl")"
	[ "$(grep -c '^200$' "$TEST_TMP/$label.curl")" = ${#FILES[@]} ] ||
		fail "$label: not every answer was 200: $(sort "$TEST_TMP/$label.curl" | uniq -c | tr '\n' ';')"
	check_fetched "$ROOT" "$TEST_TMP/$label" "${FILES[@]}"
	note "$label: ${#FILES[@]} files fetched over one connection, all equal to the originals"
	fetch_concurrently "$label" "http://127.0.0.1:$port" "$ROOT" "${FILES[@]}"
	note "$label: 8 concurrent clients fetched every file correctly"
}

# wrk_through LABEL PORT: wrk for 3 s with 50 connections; no socket
# errors, only 2xx answers.
wrk_through() {
	local label=$1 port=$2 output=$TEST_TMP/$1.wrk requests
	timeout -k 5 60 wrk -t 2 -c 50 -d 3s "http://127.0.0.1:$port/file-4096.bin" >"$output" 2>&1 ||
		fail "$label: wrk failed: $(tail -n 5 "$output")"
	grep -q 'Socket errors' "$output" && fail "$label: wrk: $(grep 'Socket errors' "$output")"
	grep -q 'Non-2xx' "$output" && fail "$label: wrk: $(grep 'Non-2xx' "$output")"
	requests=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$output")
	[ "${requests:-0}" -gt 0 ] || fail "$label: wrk made no requests: $(cat "$output")"
	note "$label: wrk made $requests requests, no socket errors, all 2xx"
}
