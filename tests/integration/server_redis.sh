#!/bin/bash
# SPDX-License-Identifier: MIT
#
# redis-server from Debian under the shim (its own port, no persistence),
# driven by redis-cli and redis-benchmark.  Checked answers: SET/GET of a
# text value, of a binary value with NUL, CR and LF bytes, and of an 8 MiB
# random value (compared byte for byte, and their STRLEN); APPEND and
# GETRANGE; 20,000 pipelined SETs through `redis-cli --pipe` (no errors,
# every reply, DBSIZE, values read back with MGET); four clients running
# 500 INCRs each at once (the counter ends at 2,000); then redis-benchmark
# over its default test set with a small -n, plain and pipelined (-P 16),
# which stops at the first error reply.  The shim must have carried the
# traffic, at least the big value each way.
. "$(dirname "$0")/../lib.sh"

for program in redis-server redis-cli redis-benchmark; do
	command -v $program >/dev/null || fail "$program is not installed: run make deps"
done

mkdir -p "$TEST_TMP/redis"
for attempt in 1 2 3; do
	port=$(free_port)
	start_real_server --retry redis "$port" redis-server --port "$port" --bind 127.0.0.1 \
		--save "" --appendonly no --daemonize no --protected-mode no --dir "$TEST_TMP/redis" &&
		break
	[ $attempt = 3 ] && fail "redis-server found no free port in 3 attempts"
done

cli() {
	timeout -k 5 60 redis-cli -p "$PORT" "$@"
}

# expect WHAT EXPECTED COMMAND...: fails unless redis-cli prints EXPECTED.
expect() {
	local what=$1 expected=$2 answer
	shift 2
	answer=$(cli "$@" 2>&1) || fail "$what: redis-cli $* failed: $answer"
	[ "$answer" = "$expected" ] || fail "$what: redis-cli $* answered '$answer', expected '$expected'"
}

expect ping PONG PING
expect "set text" OK SET greeting "hello, ringsteer"
expect "get text" "hello, ringsteer" GET greeting
expect "missing key" "" GET no-such-key

# value_round_trip NAME FILE: SET from the file (binary safe, -x), GET back
# and compare byte for byte (redis-cli adds one newline after the value).
value_round_trip() {
	local name=$1 file=$2 size
	size=$(stat -c %s "$file")
	cli -x SET "$name" <"$file" >"$TEST_TMP/$name.set" 2>&1 || fail "SET $name failed"
	[ "$(cat "$TEST_TMP/$name.set")" = OK ] || fail "SET $name answered $(head -c 200 "$TEST_TMP/$name.set")"
	expect "STRLEN $name" "$size" STRLEN "$name"
	cli GET "$name" >"$TEST_TMP/$name.got" || fail "GET $name failed"
	[ "$(stat -c %s "$TEST_TMP/$name.got")" = $((size + 1)) ] ||
		fail "GET $name returned $(stat -c %s "$TEST_TMP/$name.got") bytes, expected $size and a newline"
	head -c "$size" "$TEST_TMP/$name.got" | cmp -s - "$file" || fail "GET $name returned different bytes"
	note "$name: $size bytes stored and read back intact"
}
printf 'nul\0cr\rlf\nff\377end' >"$TEST_TMP/binary.value"
value_round_trip binary "$TEST_TMP/binary.value"
head -c $((8 * 1024 * 1024)) /dev/urandom >"$TEST_TMP/big.value"
value_round_trip big "$TEST_TMP/big.value"
expect "GETRANGE of the big value" "$(head -c 16 "$TEST_TMP/big.value" | tail -c 8 | cli -x ECHO)" \
	GETRANGE big 8 15
expect append 5 APPEND appended "hello"
expect append 11 APPEND appended " world"
expect "get appended" "hello world" GET appended

# 20,000 pipelined SETs in the protocol's own encoding.
awk 'BEGIN {
	for (i = 0; i < 20000; i++) {
		key = "pipelined:" i; value = "value-" i * 7
		printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(key), key, length(value), value
	}
}' >"$TEST_TMP/pipeline.resp"
cli --pipe <"$TEST_TMP/pipeline.resp" >"$TEST_TMP/pipe.out" 2>&1 || fail "redis-cli --pipe failed: $(tail -n 3 "$TEST_TMP/pipe.out")"
grep -q 'errors: 0, replies: 20000' "$TEST_TMP/pipe.out" ||
	fail "pipelined SETs: $(tail -n 1 "$TEST_TMP/pipe.out")"
expect "MGET of pipelined keys" "$(printf 'value-0\nvalue-7\nvalue-69993\nvalue-139993')" \
	MGET pipelined:0 pipelined:1 pipelined:9999 pipelined:19999
note "20000 pipelined SETs, every reply without error, values read back"

# Four connections incrementing one counter at once.
clients=()
for client in 1 2 3 4; do
	cli -r 500 INCR counter >"$TEST_TMP/incr-$client.out" 2>&1 &
	clients+=($!)
	BACKGROUND_PIDS+=($!)
done
for pid in "${clients[@]}"; do
	wait "$pid" || fail "a redis-cli INCR client failed"
done
expect "counter after 4 x 500 INCR" 2000 GET counter
expect dbsize 20005 DBSIZE

# redis-benchmark exits at its first error reply.
timeout -k 5 120 redis-benchmark -p "$PORT" -n 2000 -c 20 -q >"$TEST_TMP/benchmark.out" 2>&1 ||
	fail "redis-benchmark failed: $(tr '\r' '\n' <"$TEST_TMP/benchmark.out" | grep -v '^ *$' | tail -n 3)"
tests=$(tr '\r' '\n' <"$TEST_TMP/benchmark.out" | grep -c 'requests per second')
[ "$tests" -ge 20 ] || fail "redis-benchmark finished $tests tests, its default set has 20"
timeout -k 5 120 redis-benchmark -p "$PORT" -n 20000 -c 20 -P 16 -t set,get,lpush,lpop -q \
	>"$TEST_TMP/benchmark-pipelined.out" 2>&1 ||
	fail "redis-benchmark -P 16 failed: $(tr '\r' '\n' <"$TEST_TMP/benchmark-pipelined.out" | grep -v '^ *$' | tail -n 3)"
pipelined_tests=$(tr '\r' '\n' <"$TEST_TMP/benchmark-pipelined.out" | grep -c 'requests per second')
[ "$pipelined_tests" -ge 4 ] || fail "redis-benchmark -P 16 finished $pipelined_tests of 4 tests"
note "redis-benchmark: $tests default tests and $pipelined_tests pipelined ones without an error"
expect "still serving after the benchmarks" "hello, ringsteer" GET greeting

assert_carried "$SERVER_PID" $((8 * 1024 * 1024))
stop_server
