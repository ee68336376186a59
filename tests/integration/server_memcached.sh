#!/bin/bash
# SPDX-License-Identifier: MIT
#
# memcached from Debian under the shim with 4 worker threads (its
# dispatcher thread accepts and hands each connection to a worker through
# a pipe, so sockets move between threads), driven by libmemcached's
# memccp and memccat: values of 1 byte to 1 MiB, binary ones with CR and LF
# inside, stored with the text and the binary protocol and read back by 8
# clients at once, compared byte for byte; a missing key must be reported
# missing.  Then pipelined text-protocol commands on one connection (set,
# get, multi-get, incr, append, delete) whose whole answer is checked.  The
# shim must have carried the traffic, at least every value each way.
# (memccat --file writes the value alone; on stdout it adds a newline.)
. "$(dirname "$0")/../lib.sh"

for program in memcached memccp memccat; do
	command -v $program >/dev/null || fail "$program is not installed: run make deps"
done

# memcached drops root for nobody at start.
chmod 1777 "$STATS_DIR"
# -I 2m: the default item limit (1 MiB) leaves no room for a 1 MiB value.
for attempt in 1 2 3; do
	port=$(free_port)
	start_real_server --retry memcached "$port" memcached -p "$port" -l 127.0.0.1 -U 0 -t 4 \
		-m 128 -I 2m -c 1024 -u nobody && break
	[ $attempt = 3 ] && fail "memcached found no free port in 3 attempts"
done

VALUES=$TEST_TMP/values
mkdir -p "$VALUES" "$TEST_TMP/read"
keys=()
total=0
for size in 1 100 1000 1500 4096 10000 65536 100000 500000 1048576; do
	head -c "$size" /dev/urandom >"$VALUES/random-$size"
	keys+=("random-$size")
	total=$((total + size))
done
printf 'line one\r\nline two\r\n\r\nEND\r\n\0tail' >"$VALUES/binary-crlf"
keys+=(binary-crlf)
head -c 200000 /dev/urandom | tr '\0' '\n' >"$VALUES/binary-newlines"
keys+=(binary-newlines)

servers=--servers=127.0.0.1:$port
# Half of the values through the text protocol, half through the binary one.
text=() binary=()
for index in "${!keys[@]}"; do
	if [ $((index % 2)) = 0 ]; then text+=("$VALUES/${keys[$index]}"); else binary+=("$VALUES/${keys[$index]}"); fi
done
timeout -k 5 60 memccp "$servers" --set "${text[@]}" >"$TEST_TMP/memccp-text.out" 2>&1 ||
	fail "memccp (text protocol) failed: $(tail -n 3 "$TEST_TMP/memccp-text.out")"
timeout -k 5 60 memccp "$servers" --binary --set "${binary[@]}" >"$TEST_TMP/memccp-binary.out" 2>&1 ||
	fail "memccp (binary protocol) failed: $(tail -n 3 "$TEST_TMP/memccp-binary.out")"

# check_read DIRECTORY: every value read into DIRECTORY equals its original.
check_read() {
	local key
	for key in "${keys[@]}"; do
		cmp -s "$1/$key" "$VALUES/$key" ||
			fail "$key read into $1 differs from what was stored ($(stat -c %s "$1/$key" 2>/dev/null || echo no) of $(stat -c %s "$VALUES/$key") bytes)"
	done
}

clients=()
for client in 1 2 3 4 5 6 7 8; do
	mkdir -p "$TEST_TMP/read-$client"
	(
		protocol=()
		[ $((client % 2)) = 0 ] && protocol=(--binary)
		for key in "${keys[@]}"; do
			timeout -k 5 60 memccat "$servers" "${protocol[@]}" --file="$TEST_TMP/read-$client/$key" \
				"$key" || 
				echo "memccat $key failed"
		done
	) >"$TEST_TMP/memccat-$client.out" 2>&1 &
	clients+=($!)
	BACKGROUND_PIDS+=($!)
done
wait_clients "$TEST_TMP/memccat" "${clients[@]}"
for client in 1 2 3 4 5 6 7 8; do
	check_read "$TEST_TMP/read-$client"
done
note "${#keys[@]} values (up to 1 MiB) stored with both protocols, read back intact by 8 clients at once"

if timeout -k 5 30 memccat "$servers" no-such-key >"$TEST_TMP/missing.out" 2>&1; then
	fail "memccat found a key that was never stored: $(head -c 200 "$TEST_TMP/missing.out")"
fi

# Pipelined text-protocol requests, all in one write, on one connection.
requests=$'set alpha 5 0 5\r\nhello\r\nset beta 0 0 3\r\nxyz\r\nget alpha beta gamma\r\n'
requests+=$'set n 0 0 2\r\n41\r\nincr n 1\r\nappend beta 0 0 2\r\n!!\r\nget beta\r\n'
requests+=$'delete alpha\r\nget alpha\r\nincr missing 1\r\n'
expected=$'STORED\r\nSTORED\r\nVALUE alpha 5 5\r\nhello\r\nVALUE beta 0 3\r\nxyz\r\nEND\r\n'
expected+=$'STORED\r\n42\r\nSTORED\r\nVALUE beta 0 5\r\nxyz!!\r\nEND\r\n'
expected+=$'DELETED\r\nEND\r\nNOT_FOUND\r\n'
exec 3<>"/dev/tcp/127.0.0.1/$port" || fail "cannot connect to memcached"
printf '%s' "$requests" >&3
answer=$(timeout 30 head -c "${#expected}" <&3 | od -An -c | tr -s ' \n' ' ')
exec 3<&-
[ "$answer" = "$(printf '%s' "$expected" | od -An -c | tr -s ' \n' ' ')" ] ||
	fail "pipelined text requests answered: $answer"
note "pipelined text-protocol requests answered exactly"

assert_carried "$SERVER_PID" "$total"
stop_server
