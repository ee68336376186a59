#!/bin/bash
# SPDX-License-Identifier: MIT
#
# gunicorn from Debian under the shim: a pre-fork Python server, the master
# opening the listener and two sync workers sharing it, each waiting in
# select() and reading its connections with blocking recv (the worker
# closes each connection after its answer).  The application
# (tests/servers/wsgi_app.py) answers what the client can check: blobs of
# many sizes, compared with what the same code gives outside the server;
# the sha256 of uploads up to 4 MiB; which worker answered.  Then 8 clients
# at once, and wrk for 3 s (a new connection per request): no socket
# errors, only 2xx.  The counters must show the uploads received through
# the rings and every connection carried.
. "$(dirname "$0")/../lib.sh"

command -v gunicorn >/dev/null || fail "gunicorn is not installed: run make deps"
command -v curl >/dev/null || fail "curl is not installed: run make deps"
command -v wrk >/dev/null || fail "wrk is not installed: run make deps"
APP_DIR=$REPO/tests/servers

for attempt in 1 2 3; do
	port=$(free_port)
	start_real_server --retry --env RINGSTEER_STATS_KEEP=1 gunicorn "$port" \
		gunicorn --workers 2 --worker-class sync --bind "127.0.0.1:$port" \
		--chdir "$APP_DIR" --graceful-timeout 5 wsgi_app:application && break
	[ $attempt = 3 ] && fail "gunicorn found no free port in 3 attempts"
done
gunicorn_pid=$SERVER_PID
url=http://127.0.0.1:$port

sizes="0 1 1000 4096 65536 100000 1000000 3000000"
for size in $sizes; do
	python3 "$APP_DIR/wsgi_app.py" "$size" >"$TEST_TMP/blob-$size.expected"
done
# fetch_blobs DIRECTORY: every blob size over one connection, compared.
fetch_blobs() {
	local size arguments=()
	mkdir -p "$1"
	for size in $sizes; do
		arguments+=(-o "$1/blob-$size" "$url/blob/$size")
	done
	curl --silent --show-error --fail --max-time 60 "${arguments[@]}" || return 1
	for size in $sizes; do
		cmp -s "$1/blob-$size" "$TEST_TMP/blob-$size.expected" ||
			{ echo "blob $size differs ($(stat -c %s "$1/blob-$size") bytes)"; return 1; }
	done
}
# upload SIZE: the server's sha256 of SIZE random bytes must be theirs.
upload() {
	local file=$TEST_TMP/upload-$1-$BASHPID answer
	head -c "$1" /dev/urandom >"$file"
	answer=$(curl --silent --show-error --fail --max-time 60 --data-binary @"$file" \
		-H 'Content-Type: application/octet-stream' "$url/echo") || return 1
	[ "$answer" = "$(sha256sum <"$file" | cut -d' ' -f1)" ] ||
		{ echo "upload of $1 bytes: server said '$answer'"; return 1; }
}

output=$(fetch_blobs "$TEST_TMP/one") || fail "one client: $output"
for size in 0 1 65536 1000000 4194304; do
	output=$(upload "$size") || fail "$output"
done
note "one client: every blob equal to the original, 5 uploads hashed right"

clients=()
for client in 1 2 3 4 5 6 7 8; do
	(fetch_blobs "$TEST_TMP/client-$client" && upload 2000000) >"$TEST_TMP/client-$client.out" 2>&1 &
	clients+=($!)
	BACKGROUND_PIDS+=($!)
done
for client in 1 2 3 4 5 6 7 8; do
	wait "${clients[$((client - 1))]}" || fail "client $client: $(head -n 3 "$TEST_TMP/client-$client.out")"
done
note "8 concurrent clients: every blob and upload right"

# Both workers answer: connections spread over the shared listener.
for i in $(seq 40); do
	curl --silent --fail --max-time 10 "$url/pid" || fail "GET /pid failed"
done | sort | uniq -c >"$TEST_TMP/pids"
[ "$(wc -l <"$TEST_TMP/pids")" = 2 ] || fail "not both workers answered: $(tr '\n' ';' <"$TEST_TMP/pids")"
note "both workers answered: $(tr -s ' \n' ' ' <"$TEST_TMP/pids")"

timeout -k 5 60 wrk -t 1 -c 8 -d 3s "$url/blob/4096" >"$TEST_TMP/wrk.out" 2>&1 ||
	fail "wrk failed: $(tail -n 5 "$TEST_TMP/wrk.out")"
grep -q 'Non-2xx' "$TEST_TMP/wrk.out" && fail "wrk: $(grep 'Non-2xx' "$TEST_TMP/wrk.out")"
# A sync worker closes each connection after its answer, which wrk takes
# in its stride: any socket error is an answer cut short.
grep -q 'Socket errors' "$TEST_TMP/wrk.out" && fail "wrk: $(grep 'Socket errors' "$TEST_TMP/wrk.out")"
requests=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$TEST_TMP/wrk.out")
[ "${requests:-0}" -gt 0 ] || fail "wrk made no requests: $(cat "$TEST_TMP/wrk.out")"
note "wrk: $requests requests, each on its own connection, all 2xx"

stop_server "$gunicorn_pid"
grep -E '\[(ERROR|CRITICAL)\]' "$SERVER_ERR" &&
	fail "gunicorn logged errors: $(grep -E '\[(ERROR|CRITICAL)\]' "$SERVER_ERR" | head -n 3)"
# Uploads alone: 5.2 MiB, then 8 x 2 MB.
assert_carried_all $((5 * 1024 * 1024 + 16000000)) 0 "$requests"
