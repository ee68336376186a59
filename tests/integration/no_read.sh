#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A peer that sends a lot and never reads.  The server's writer must block
# (under the shim: on its bounded send queue) instead of buffering without
# limit: while the peer holds its connection the server's resident memory
# may grow by at most 64 MiB, the blocked server must not spin (it uses
# less than a second of CPU over two seconds of holding), and other clients
# must be served meanwhile.  After the peer leaves, the server serves new
# clients correctly and returns to idle.
. "$(dirname "$0")/../lib.sh"

RSS_GROWTH_LIMIT_KIB=$((64 * 1024))

start_server echo_threaded
settle_baseline
base_rss=$(rss_kib "$SERVER_PID")

"$CLIENTS/echo_verify" -p "$PORT" -c 1 -n 64M --no-read --hold 8 -s 60 \
	>"$TEST_TMP/no-read.out" 2>&1 &
client=$!
BACKGROUND_PIDS+=("$client")
tries=0
until grep -q '^holding ' "$TEST_TMP/no-read.out"; do
	process_alive "$client" || fail "the no-read client ended early: $(cat "$TEST_TMP/no-read.out")"
	[ $tries -ge 300 ] && fail "the no-read client did not stall within 30 s"
	sleep 0.1
	tries=$((tries + 1))
done
note "no-read client: $(grep '^holding ' "$TEST_TMP/no-read.out")"

cpu_before=$(cpu_ticks "$SERVER_PID")
max_rss=$base_rss
for sample in 1 2 3 4; do
	sleep 0.5
	rss=$(rss_kib "$SERVER_PID")
	[ -n "$rss" ] || fail "server gone while the peer held its connection"
	[ "$rss" -gt "$max_rss" ] && max_rss=$rss
done
cpu_after=$(cpu_ticks "$SERVER_PID")
ticks_per_second=$(getconf CLK_TCK)
note "server RSS: idle ${base_rss} KiB, at most ${max_rss} KiB while the peer held; CPU $((cpu_after - cpu_before)) ticks in 2 s"
[ $((max_rss - base_rss)) -le $RSS_GROWTH_LIMIT_KIB ] ||
	fail "server memory grew by $((max_rss - base_rss)) KiB while the peer did not read (limit $RSS_GROWTH_LIMIT_KIB KiB)"
[ $((cpu_after - cpu_before)) -lt "$ticks_per_second" ] ||
	fail "the server used $((cpu_after - cpu_before)) ticks of CPU in 2 s while its writer should be blocked"

# Other connections are served while one writer is blocked.
run_client meanwhile echo_verify -p "$PORT" -c 10 -n 256K -s 61

wait "$client" || fail "the no-read client failed: $(cat "$TEST_TMP/no-read.out")"
note "no-read client: $(tail -n 1 "$TEST_TMP/no-read.out")"
run_client after echo_verify -p "$PORT" -c 10 -n 1M -s 62
wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"
assert_carried "$SERVER_PID" $((10 * 256 * 1024 + 10 * 1024 * 1024))
# Under the shim the writer may wait either on a full send queue or, with
# the queue under its cap, in its next read, behind the send linked before
# it (as a blocking write would wait in the kernel): the bounded memory above
# is what matters, the counter only tells which.
if shim_enabled; then
	note "send_queue_waits=$(stats_total send_queue_waits "$SERVER_PID")"
fi
stop_server

# The single-threaded server is stuck on the silent peer until it leaves,
# then serves the next client.
start_server echo_single
"$CLIENTS/echo_verify" -p "$PORT" -c 1 -n 64M --no-read --hold 2 -s 63 \
	>"$TEST_TMP/single-no-read.out" 2>&1 &
client=$!
BACKGROUND_PIDS+=("$client")
wait "$client" || fail "the no-read client failed: $(cat "$TEST_TMP/single-no-read.out")"
run_client single-after echo_verify -p "$PORT" -c 5 -n 1M -s 64
assert_carried "$SERVER_PID" $((5 * 1024 * 1024))
stop_server
