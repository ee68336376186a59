#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ringsteer stats --json and --prometheus against the threaded echo server
# under the shim.  JSON: exactly the documented fields at every level (no
# more, no fewer), read while a client is running; between a reading before
# and after a client, bytes grew by exactly the client's byte count (the
# echo server receives and sends every byte it is given), the other
# counters did not go down and the calls answered grew.  Prometheus: parsed
# line by line (every sample's family has HELP and TYPE before it, names
# and labels are valid, values are numbers, counters end in _total, each
# lane's series is present), and its sums agree with the JSON.  An exited
# process shows only with --all, and its exit line (RINGSTEER_LOG=info)
# gives the same totals as its counters (and the client's byte count).
. "$(dirname "$0")/../lib.sh"

need_program "$TOOL"
COUNTERS="sockets_open sockets_total accepts bytes_received bytes_sent ring_enters ring_ops kernel_ops fallbacks send_queue_waits flusher_sends calls_answered bytes_spliced"
sorted_words() { tr ' ' '\n' <<<"$*" | grep . | sort | tr '\n' ' '; }

start_server echo_threaded
settle_baseline
warm=$((4 * 1024))

# ---- JSON fields, read under load ----------------------------------------
"$CLIENTS/echo_verify" -p "$PORT" -c 4 -n 2G -t 60 -s 7 >"$TEST_TMP/load.out" 2>&1 &
load_pid=$!
BACKGROUND_PIDS+=("$load_pid")
wait_for_counter $((warm + 1)) stats_total bytes_received "$SERVER_PID" >/dev/null
json=$(stats_json) || fail "stats --json failed"
jq -e . >/dev/null <<<"$json" || fail "stats --json is not JSON: $json"
keys() { jq -r "$1 | keys_unsorted | join(\" \")" <<<"$json"; }
[ "$(sorted_words "$(keys .)")" = "$(sorted_words processes total)" ] || fail "top level keys: $(keys .)"
[ "$(sorted_words "$(keys .total)")" = "$(sorted_words "$COUNTERS")" ] || fail "total keys: $(keys .total)"
process="(.processes[] | select(.pid == $SERVER_PID))"
[ "$(sorted_words "$(keys "$process")")" = "$(sorted_words pid exited io_uring lanes total)" ] ||
	fail "process keys: $(keys "$process")"
[ "$(sorted_words "$(keys "$process.total")")" = "$(sorted_words "$COUNTERS")" ] || fail "process total keys"
lanes=$(jq "[$process.lanes[]] | length" <<<"$json")
[ "$lanes" -ge 1 ] || fail "no lanes listed"
for ((lane = 0; lane < lanes; lane++)); do
	[ "$(sorted_words "$(keys "$process.lanes[$lane]")")" = "$(sorted_words lane tid cpu "$COUNTERS")" ] ||
		fail "lane $lane keys: $(keys "$process.lanes[$lane]")"
done
[ "$(jq "$process.exited" <<<"$json")" = false ] || fail "a running server is marked exited"
[ "$(jq "$process.io_uring" <<<"$json")" = true ] || fail "io_uring is not true"
# Every value is a number (booleans where documented), lanes numbered in order.
jq -e "[($process.lanes[], $process.total, .total) | to_entries[] | .value | type] | all(. == \"number\")" \
	<<<"$json" >/dev/null || fail "counters are not all numbers"
jq -e "[$process.lanes[] | .lane] == [range(0; $lanes)]" <<<"$json" >/dev/null || fail "lanes not numbered 0.."
jq -e "($process.lanes | map(.bytes_received) | add) <= $process.total.bytes_received" <<<"$json" >/dev/null ||
	fail "the lanes add up to more than the total"
note "JSON under load: every documented field of $lanes lanes present"
terminate_process "$load_pid"
wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"

# ---- counters grow by what a client did ------------------------------------
before=$(stats_json "$SERVER_PID")
run_client measured echo_verify -p "$PORT" -c 10 -n 256K --vary -s 8
bytes=$(sed -n 's/^ok connections=10 bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/measured.out")
[ -n "$bytes" ] || fail "no byte count from the client"
wait_for_baseline "$SERVER_PID" "$BASE_THREADS" "$BASE_FDS"
old_received=$(jq ".processes[0].total.bytes_received" <<<"$before")
wait_for_counter $((old_received + bytes)) stats_total bytes_sent "$SERVER_PID" >/dev/null
after=$(stats_json "$SERVER_PID")
for counter in $COUNTERS; do
	old=$(jq ".processes[0].total.$counter" <<<"$before")
	new=$(jq ".processes[0].total.$counter" <<<"$after")
	case $counter in
	bytes_received | bytes_sent)
		[ $((new - old)) = "$bytes" ] || fail "$counter grew by $((new - old)), the client sent and got back $bytes"
		;;
	calls_answered | ring_enters | ring_ops | sockets_total)
		[ "$new" -gt "$old" ] || fail "$counter did not grow ($old -> $new)"
		;;
	sockets_open) ;;
	*) [ "$new" -ge "$old" ] || fail "$counter went down ($old -> $new)" ;;
	esac
done
sockets=$(($(jq ".processes[0].total.sockets_total" <<<"$after") - $(jq ".processes[0].total.sockets_total" <<<"$before")))
[ "$sockets" = 10 ] || fail "sockets_total grew by $sockets for 10 connections"
note "a client of $bytes bytes over 10 connections: bytes each way +$bytes, sockets_total +10"

# ---- Prometheus --------------------------------------------------------------
"$TOOL" stats --prometheus --dir "$STATS_DIR" >"$TEST_TMP/metrics" || fail "stats --prometheus failed"
json=$(stats_json)
awk '
	function bad(why) { print "line " NR ": " why ": " $0; failed = 1; exit 1 }
	/^# HELP / { if ($3 !~ /^[a-zA-Z_:][a-zA-Z0-9_:]*$/) bad("bad name"); help[$3] = 1; next }
	/^# TYPE / {
		if (!help[$3]) bad("TYPE before HELP")
		if ($4 != "counter" && $4 != "gauge") bad("unknown type")
		if ($4 == "counter" && $3 !~ /_total$/) bad("a counter without _total")
		if ($3 in type) bad("family declared twice")
		type[$3] = $4; current = $3; next
	}
	/^#/ { next }
	/^$/ { bad("empty line") }
	{
		if (!match($0, /^[a-zA-Z_:][a-zA-Z0-9_:]*/)) bad("bad sample name")
		name = substr($0, 1, RLENGTH); rest = substr($0, RLENGTH + 1)
		if (name != current) bad("sample outside its family (or no HELP/TYPE)")
		if (substr(rest, 1, 1) == "{") {
			close_at = index(rest, "}")
			if (!close_at) bad("unclosed labels")
			labels = substr(rest, 2, close_at - 2); rest = substr(rest, close_at + 1)
			n = split(labels, pairs, ",")
			for (i = 1; i <= n; i++)
				if (pairs[i] !~ /^[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"$/) bad("bad label " pairs[i])
		}
		if (rest !~ /^ -?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) bad("value is not a number")
		samples++
	}
	END { if (!failed && samples < 10) { print "only " samples " samples"; exit 1 } }
' "$TEST_TMP/metrics" >"$TEST_TMP/metrics.check" || fail "Prometheus text: $(cat "$TEST_TMP/metrics.check")"
for counter in $COUNTERS; do
	case $counter in
	sockets_open) family=ringsteer_sockets_open ;;
	*_total) family=ringsteer_$counter ;;
	*) family=ringsteer_${counter}_total ;;
	esac
	for ((lane = 0; lane < lanes; lane++)); do
		grep -q "^$family{pid=\"$SERVER_PID\",lane=\"$lane\"} " "$TEST_TMP/metrics" ||
			fail "no $family series for lane $lane"
	done
	sum=$(awk -v f="$family{pid=\"$SERVER_PID\"," 'index($0, f) == 1 { s += $2 } END { print s + 0 }' "$TEST_TMP/metrics")
	expected=$(jq ".processes[] | select(.pid == $SERVER_PID) | .total.$counter" <<<"$json")
	[ "$sum" = "$expected" ] || fail "$family over the lanes is $sum, JSON says $expected"
	all=$(awk -v f="ringsteer_all_${family#ringsteer_}" '$1 == f { print $2 }' "$TEST_TMP/metrics")
	[ "$all" = "$(jq ".total.$counter" <<<"$json")" ] || fail "ringsteer_all_${family#ringsteer_} is '$all'"
done
note "Prometheus: $(grep -vc '^#' "$TEST_TMP/metrics") samples, $(grep -c '^# TYPE' "$TEST_TMP/metrics") families, sums agree with the JSON"
assert_carried "$SERVER_PID" $((warm + bytes))

# ---- an exited process: --all, and its exit line -------------------------------
# inetd_echo -x forks a child per connection that echoes and ends with
# exit(), which is when the exit line is written (on the stderr it shares
# with the server; a forked child, so the line is also made without
# allocating after fork), and its counters file stays
# (RINGSTEER_STATS_KEEP=1) for --all.  (Not cat: coreutils close stderr in
# their own exit handler, before the shim's.)
stop_server
start_server --env RINGSTEER_STATS_KEEP=1 --env RINGSTEER_LOG=info inetd_echo -x
run_client inetd echo_verify -p "$PORT" -c 1 -n 100K -s 9
line=
for _ in $(seq 100); do
	line=$(grep "^ringsteer\[[0-9]*\]: info: exit: .*bytes_received=[1-9]" "$SERVER_ERR" | head -n 1)
	[ -n "$line" ] && break
	sleep 0.1
done
[ -n "$line" ] || fail "no exit line from the forked child with RINGSTEER_LOG=info"
note "exit line: $line"
client=$(sed -n 's/^ringsteer\[\([0-9]*\)\].*/\1/p' <<<"$line")
for _ in $(seq 100); do process_alive "$client" || break; sleep 0.1; done
kept=$(stats_json --all | jq -c ".processes[] | select(.pid == $client)")
[ -n "$kept" ] || fail "--all does not show the exited child $client"
[ "$(jq .exited <<<"$kept")" = true ] || fail "the exited child is not marked exited"
for counter in bytes_received bytes_sent calls_answered ring_enters accepts fallbacks; do
	logged=$(sed -n "s/.* $counter=\([0-9]*\).*/\1/p" <<<"$line")
	[ -n "$logged" ] && [ "$logged" = "$(jq ".total.$counter" <<<"$kept")" ] ||
		fail "exit line says $counter=$logged, the kept counters $(jq ".total.$counter" <<<"$kept")"
done
for counter in bytes_received bytes_sent; do
	[ "$(jq ".total.$counter" <<<"$kept")" = 102400 ] ||
		fail "the child's $counter is $(jq ".total.$counter" <<<"$kept"), the client moved 102400 each way"
done
"$TOOL" stats --prometheus --dir "$STATS_DIR" | grep -q "pid=\"$client\"" &&
	fail "an exited process shows without --all"
"$TOOL" stats --prometheus --all --dir "$STATS_DIR" >"$TEST_TMP/metrics.all"
grep -qx "ringsteer_process_exited{pid=\"$client\"} 1" "$TEST_TMP/metrics.all" ||
	fail "--all does not mark $client exited"
grep -qx "ringsteer_process_exited{pid=\"$SERVER_PID\"} 0" "$TEST_TMP/metrics.all" ||
	fail "--all does not show the running server $SERVER_PID"
grep -qx "ringsteer_bytes_sent_total{pid=\"$client\",lane=\"0\"} [0-9]*" "$TEST_TMP/metrics.all" ||
	fail "--all has no lane series for $client"
note "the exited child $client shows with --all only, and its exit line matches its counters"
stop_server
