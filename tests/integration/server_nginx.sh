#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nginx from Debian under the shim: a master and 4 worker processes
# (`daemon off; master_process on;`, workers running as www-data), a
# config generated here with its own port, pid file, logs and temporary
# paths, keep-alive and sendfile on.  Small files of many sizes, an empty
# one and a 3 MiB one are fetched with curl (one connection reused for
# every file, then 8 clients at once) and compared with the originals by
# sha256; a missing file must give 404.  Then wrk for 3 s on a small and on
# the big file: no socket errors, no non-2xx answers.  The workers' counters
# stay after they exit (RINGSTEER_STATS_KEEP=1): the shim must have carried
# the traffic, accepts included.
. "$(dirname "$0")/../lib.sh"

command -v nginx >/dev/null || fail "nginx is not installed: run make deps"
command -v curl >/dev/null || fail "curl is not installed: run make deps"
command -v wrk >/dev/null || fail "wrk is not installed: run make deps"

# The workers drop root: they must reach the files, and write counters.
chmod 755 "$TEST_TMP"
chmod 1777 "$STATS_DIR"
ROOT=$TEST_TMP/www
mkdir -p "$ROOT" "$TEST_TMP/nginx-temp" "$TEST_TMP/fetched"
echo "ringsteer nginx test page" >"$ROOT/index.html"
: >"$ROOT/empty.txt"
files=(index.html empty.txt)
for size in 1 100 1000 1500 4095 4096 4097 65535 65536 100000 262144 999999; do
	head -c "$size" /dev/urandom >"$ROOT/file-$size.bin"
	files+=("file-$size.bin")
done
head -c $((3 * 1024 * 1024)) /dev/urandom >"$ROOT/big.bin"
files+=(big.bin)
chmod -R a+rX "$ROOT"

# As root, the workers drop to www-data (Debian's default); otherwise
# nginx warns that the directive is ignored.
user_line=
[ "$(id -u)" = 0 ] && user_line="user www-data;"
# write_config PORT
write_config() {
	cat >"$TEST_TMP/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 4;
$user_line
pid $TEST_TMP/nginx.pid;
error_log $TEST_TMP/nginx-error.log warn;
events {
	worker_connections 1024;
}
http {
	access_log $TEST_TMP/nginx-access.log;
	client_body_temp_path $TEST_TMP/nginx-temp/body;
	proxy_temp_path $TEST_TMP/nginx-temp/proxy;
	fastcgi_temp_path $TEST_TMP/nginx-temp/fastcgi;
	uwsgi_temp_path $TEST_TMP/nginx-temp/uwsgi;
	scgi_temp_path $TEST_TMP/nginx-temp/scgi;
	sendfile on;
	tcp_nopush on;
	keepalive_timeout 65;
	keepalive_requests 100000;
	default_type application/octet-stream;
	server {
		listen 127.0.0.1:$1;
		root $ROOT;
	}
}
CONF
}
for attempt in 1 2 3; do
	port=$(free_port)
	write_config "$port"
	start_real_server --retry --env RINGSTEER_STATS_KEEP=1 nginx "$port" \
		nginx -c "$TEST_TMP/nginx.conf" -e stderr && break
	[ $attempt = 3 ] && fail "nginx found no free port in 3 attempts"
done
tries=0
while [ "$(ps -o pid= --ppid "$SERVER_PID" | wc -l)" -lt 4 ]; do
	[ $tries -ge 100 ] && fail "nginx did not start 4 workers within 10 s"
	sleep 0.1
	tries=$((tries + 1))
done
note "nginx workers: $(ps -o pid=,user= --ppid "$SERVER_PID" | tr -s ' \n' ' ')"

# One curl for every file: one connection kept alive for all of them.
arguments=()
for file in "${files[@]}"; do
	arguments+=(-o "$TEST_TMP/fetched/$file" "http://127.0.0.1:$PORT/$file")
done
curl --silent --show-error --fail --max-time 60 -w '%{http_code} %{num_connects}\n' \
	"${arguments[@]}" >"$TEST_TMP/curl.out" 2>&1 ||
	fail "curl failed: $(tail -n 3 "$TEST_TMP/curl.out")"
[ "$(grep -c '^200 ' "$TEST_TMP/curl.out")" = ${#files[@]} ] ||
	fail "not every answer was 200: $(sort "$TEST_TMP/curl.out" | uniq -c | tr '\n' ';')"
connects=$(awk '{ sum += $2 } END { print sum }' "$TEST_TMP/curl.out")
[ "$connects" = 1 ] || fail "curl made $connects connections for ${#files[@]} files: keep-alive did not hold"
check_fetched "$ROOT" "$TEST_TMP/fetched" "${files[@]}"
note "${#files[@]} files fetched over one kept-alive connection, all equal to the originals"

# 8 clients at once, each fetching every file (big.bin first, so several
# sendfile transfers overlap).
big_first=(big.bin)
for file in "${files[@]}"; do
	[ "$file" = big.bin ] || big_first+=("$file")
done
fetch_concurrently fetched "http://127.0.0.1:$PORT" "$ROOT" "${big_first[@]}"
note "8 concurrent clients fetched every file correctly"

status=$(curl --silent --max-time 30 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/missing.txt")
[ "$status" = 404 ] || fail "a missing file gave HTTP status $status, expected 404"

# wrk_check URL: 3 s of wrk with 50 connections: no socket errors, only 2xx.
wrk_check() {
	local name=$1 url=$2 output=$TEST_TMP/wrk-$1.out requests
	timeout -k 5 60 wrk -t 2 -c 50 -d 3s "$url" >"$output" 2>&1 || fail "wrk failed: $(tail -n 5 "$output")"
	grep -q 'Socket errors' "$output" && fail "wrk $name: $(grep 'Socket errors' "$output")"
	grep -q 'Non-2xx' "$output" && fail "wrk $name: $(grep 'Non-2xx' "$output")"
	requests=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$output")
	[ "${requests:-0}" -gt 0 ] || fail "wrk $name made no requests: $(cat "$output")"
	note "wrk $name: $requests requests, no socket errors, all 2xx"
}
wrk_check small "http://127.0.0.1:$PORT/file-4096.bin"
wrk_check big "http://127.0.0.1:$PORT/big.bin"

big_bytes=$((9 * 3 * 1024 * 1024))
stop_server
grep -E '\[(alert|emerg|crit)\]' "$TEST_TMP/nginx-error.log" &&
	fail "nginx logged errors: $(grep -E '\[(alert|emerg|crit)\]' "$TEST_TMP/nginx-error.log" | head -n 3)"
# The requests came in (bytes received) and the answers, the big file's
# nine full transfers at least, went out through the rings.
# nginx's listeners are non-blocking: the kernel accepts, the shim carries
# each connection.
assert_carried_all 1000 0 9
note "requests logged: $(wc -l <"$TEST_TMP/nginx-access.log")"
if shim_enabled; then
	sent=$(stats_all_total bytes_sent)
	[ "${sent:-0}" -ge $big_bytes ] ||
		fail "the shim carried $sent bytes of answers, less than the $big_bytes of the big file's transfers"
fi
