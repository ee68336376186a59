#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Steering asked for where the program cannot be used: each lane still gets
# its own listener and the kernel hashes connections over them, one warning
# line says so, and no connection is lost, also when a worker dies.
#
#   (a) `ringsteer run --policy least-loaded` by nobody, nothing pinned: the
#       tool does not try to load (and creates nothing), the shim warns
#       once; 4 pre-forked workers.
#   (b) the program pinned by root (root-only pins), the server started by
#       nobody with plain `ringsteer run`: the shim cannot open the maps,
#       warns once, hashes; nothing of it appears in `ringsteer status`.
#   (c) root with RINGSTEER_STEER=1 and nothing pinned; 4 threads.
#   (d) as (a), worker 1 stalled with connections in its listener's queue,
#       then killed: net.ipv4.tcp_migrate_req=1 alone (no migrate program
#       exists) moves every one of them to another worker.
#   (e) as (a) with net.ipv4.tcp_migrate_req=0: a worker's own listener
#       would reset its queue when the worker exits, so the listener stays
#       shared, the warning says why, and a killed worker loses nothing.
#   (f) nginx started by root with RINGSTEER_STEER=1, nothing pinned, its
#       4 workers dropping root to www-data: they cannot join root's group
#       and nothing may be opened ahead without the program (a listener no
#       worker has claimed would get its share of the hashing), so they
#       accept on the shared listener; one line says so for all of them.
#
# Each run holds 1,000 connections (50 at a time) and checks: every one
# answered (none reset, refused or unanswered), every worker got some
# (hashing over 5 listeners: about 200 each), the listening sockets on the
# port (ss: one of each worker's own beside the shared one, or only the
# shared one in (e)), exactly one line from ringsteer on the server's
# stderr, and from each worker's counters that the shim carried its
# connections.  The sysctl is set in the test's own network namespace.
#
# Against the plain kernel (RINGSTEER_TEST_NO_SHIM=1) there are no lane
# listeners and no warning: the test fails.
. "$(dirname "$0")/../steer_lib.sh"

command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"
command -v ss >/dev/null || fail "ss (iproute2) is missing: make deps"
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
# The servers run as nobody: they must reach the build and write their
# counters; the test's directory stays unreadable to them otherwise.
chmod 711 "$TEST_TMP"
chmod 1777 "$STATS_DIR"
"${NOBODY[@]}" test -x "$SERVERS/steer_workers" -a -x "$TOOL" -a -r "$SHIM_LIBRARY" ||
	skip "user nobody cannot run the build under $REPO (a parent directory closed to others): nothing to test as nobody"

# This test's own bpffs opened to everyone, as /sys/fs/bpf often is (the
# pins `ringsteer load` makes stay root's), and a directory where nothing
# is ever pinned, under a world-writable one, so that nobody could create it.
chmod 1777 /sys/fs/bpf || fail "cannot open the test's bpffs to other users"
mkdir -m 1777 /sys/fs/bpf/open || fail "cannot make a world-writable directory on bpffs"
NONE=/sys/fs/bpf/open/ringsteer

# start_steered RUN [--root] [--env NAME=VALUE]... [--tool ARGS...] -- ARGS...:
# steer_workers ARGS, as nobody unless --root, through `ringsteer run ARGS`
# if --tool is given, with the counters kept.
start_steered() {
	local run=$1 user=("${NOBODY[@]}") environment=() tool=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		case $1 in
		--root) user=(); shift ;;
		--env) environment+=(--env "$2"); shift 2 ;;
		--tool)
			shift
			tool=(env LD_PRELOAD="${RINGSTEER_ASAN_LIB:-}" "$TOOL" run)
			while [ "$1" != -- ]; do
				tool+=("$1")
				shift
			done
			# No `--` after them: start_server's --wrap ends at the
			# first, and run takes the command without one.
			;;
		*) fail "start_steered: unknown option $1" ;;
		esac
	done
	shift
	# The plain kernel, for developing the test: no shim at all.
	shim_enabled || tool=()
	start_server "${environment[@]}" --env RINGSTEER_STATS_KEEP=1 \
		--wrap "${user[@]}" "${tool[@]}" -- steer_workers "$@"
	RUN_ERR[$run]=$SERVER_ERR
}
declare -A RUN_ERR

# hold_and_check RUN WORKERS: 1,000 held connections, all answered, every
# worker some; the client's report is RUN/equal.
hold_and_check() {
	local run=$1 workers=$2 worker count
	run_steer "$run" -p "$PORT" -w "$workers" -b 50 hold:1000 report:equal close
	assert_no_failures "$run" equal
	assert_total "$run" equal 1000
	for ((worker = 0; worker < workers; worker++)); do
		count=$(count_of "$run" equal $worker)
		[ "${count:-0}" -ge 50 ] ||
			fail "$run: worker $worker got ${count:-no} of 1000 connections; hashing over 5 listeners gives each about 200: $(report_line "$run" equal)"
	done
}

# listeners_of PORT: one line per listening socket on PORT, the pids that
# hold it, sorted and comma-separated.
listeners_of() {
	ss -Hltnp "sport = :$1" | while read -r line; do
		grep -o 'pid=[0-9]*' <<<"$line" | cut -d= -f2 | sort -n -u | paste -sd, -
	done
}

# assert_lane_listeners RUN PORT MODE: MODE own: besides one listener held
# by every worker (the application's), each worker process holds exactly
# one of its own (threads: the server holds one per worker); MODE shared:
# only the application's listener.
assert_lane_listeners() {
	local run=$1 port=$2 mode=$3 pids workers lines own pid
	pids=$(report_field "$run" equal pids)
	workers=$(tr , '\n' <<<"$pids" | sort -u | wc -l)
	lines=$(listeners_of "$port")
	note "$run: listening sockets on port $port, by holder: $(tr '\n' ' ' <<<"$lines")"
	if [ "$mode" = shared ]; then
		[ "$(wc -l <<<"$lines")" = 1 ] ||
			fail "$run: expected the application's listener alone on port $port, found: $(tr '\n' ' ' <<<"$lines")"
		return
	fi
	if [ "$workers" = 1 ]; then
		# Threads: one process holds them all.
		[ "$(wc -l <<<"$lines")" = $(($(tr , '\n' <<<"$pids" | wc -l) + 1)) ] ||
			fail "$run: expected a listener per worker thread and the application's on port $port, found $(wc -l <<<"$lines")"
		return
	fi
	for pid in ${pids//,/ }; do
		own=$(grep -cx "$pid" <<<"$lines")
		[ "$own" = 1 ] ||
			fail "$run: worker pid $pid holds $own listeners of its own on port $port (want 1): $(tr '\n' ' ' <<<"$lines")"
	done
	[ "$(wc -l <<<"$lines")" = $((workers + 1)) ] ||
		fail "$run: expected $workers workers' listeners and the application's on port $port: $(tr '\n' ' ' <<<"$lines")"
}

# assert_workers_carried RUN: from each worker process's own counters, the
# shim carried every connection the client saw it serve (each sent 4
# bytes, `who\n`, and got an answer), with no fallback.
assert_workers_carried() {
	local run=$1 pids counts pid served sockets received sent fallbacks
	shim_enabled || {
		note "stats not checked (RINGSTEER_TEST_NO_SHIM=1)"
		return 0
	}
	pids=$(report_field "$run" equal pids)
	counts=$(report_field "$run" equal counts)
	for pid in $(tr , '\n' <<<"$pids" | sort -u); do
		served=$(paste -d' ' <(tr , '\n' <<<"$pids") <(tr , '\n' <<<"$counts") |
			awk -v pid="$pid" '$1 == pid { sum += $2 } END { print sum + 0 }')
		sockets=$(wait_for_counter "$served" stats_total sockets_total "$pid")
		received=$(wait_for_counter $((served * 4)) stats_total bytes_received "$pid")
		sent=$(wait_for_counter "$served" stats_total bytes_sent "$pid")
		fallbacks=$(stats_total fallbacks "$pid")
		[ "$sockets" -ge "$served" ] && [ "$received" -ge $((served * 4)) ] && [ "$sent" -ge "$served" ] &&
			[ "${fallbacks:-x}" = 0 ] ||
			fail "$run: worker $pid served $served connections, its counters say sockets_total=$sockets bytes_received=$received bytes_sent=$sent fallbacks=${fallbacks:-?}"
	done
	note "$run: each worker's counters show the shim carried the connections it served"
}

# assert_one_warning RUN PHRASE: the server's stderr (and the tool's, the
# same file) holds exactly one line from ringsteer, a warning with PHRASE.
assert_one_warning() {
	local run=$1 phrase=$2 file=${RUN_ERR[$1]} lines
	lines=$(grep -E '^ringsteer(\[[0-9]+\])?:' "$file")
	if ! shim_enabled; then
		note "$run: warnings not checked (RINGSTEER_TEST_NO_SHIM=1)"
		[ -n "$lines" ] || fail "$run: no warning from ringsteer (the plain kernel)"
	fi
	[ "$(grep -c . <<<"$lines")" = 1 ] ||
		fail "$run: expected exactly one line from ringsteer, got $(grep -c . <<<"$lines"): $(head -n 5 <<<"$lines" | tr '\n' '|')"
	grep -q ': warning: .*'"$phrase" <<<"$lines" || fail "$run: the warning does not say '$phrase': $lines"
	note "$run: one line: $lines"
}

sysctl -q -w net.ipv4.tcp_migrate_req=1 || fail "cannot set net.ipv4.tcp_migrate_req in the test's namespace"

# ---- (a) nobody asks for a policy, nothing pinned ----------------------------
output=$("${NOBODY[@]}" "$TOOL" load --dir "$NONE" 2>&1) && fail "ringsteer load succeeded as nobody: $output"
grep -q 'needs root' <<<"$output" || fail "ringsteer load as nobody does not say it needs root: $output"
[ ! -e "$NONE" ] || fail "ringsteer load as nobody left $NONE behind (root's load would then refuse it)"

start_steered a --env RINGSTEER_BPF_DIR="$NONE" --tool --policy least-loaded -- -P 4
hold_and_check a 4
assert_lane_listeners a "$PORT" own
assert_workers_carried a
stop_server
assert_one_warning a "nothing is loaded under $NONE.*each lane gets its own listener"
[ ! -e "$NONE" ] || fail "ringsteer run --policy as nobody created $NONE"

# ---- (b) pinned by root, the server started by nobody ------------------------
steer_load
start_steered b --env RINGSTEER_BPF_DIR="$BPF_DIR" --tool -- -P 4
hold_and_check b 4
assert_lane_listeners b "$PORT" own
assert_workers_carried b
slots=$(group_slots "$PORT" | wc -l)
[ "$slots" = 0 ] || fail "b: nobody's server has $slots slots in ringsteer status, it cannot reach the maps"
stop_server
assert_one_warning b "may not open $BPF_DIR.*each lane gets its own listener"

# ---- (c) root, RINGSTEER_STEER=1, nothing pinned; threads --------------------
start_steered c --root --env RINGSTEER_BPF_DIR="$NONE" --env RINGSTEER_STEER=1 -- -T 4
hold_and_check c 4
assert_lane_listeners c "$PORT" own
assert_workers_carried c
stop_server
assert_one_warning c "nothing is loaded under $NONE.*each lane gets its own listener"

# ---- (d) a worker killed with connections queued on its own listener ---------
start_steered d --env RINGSTEER_BPF_DIR="$NONE" --tool --policy least-loaded -- -P 4
run_steer kill -p "$PORT" -w 4 -t 30000 "send:stall 1 60000" inflight:200 settle:1000 report:before \
	kill:1 collect:20000 report:after
queued=$(sed -n 's/^killed worker 1 pid [0-9]* with \([0-9]*\) connections unanswered$/\1/p' "$TEST_TMP/kill.out")
note "d: $(grep '^killed' "$TEST_TMP/kill.out"); $(report_line kill after)"
assert_no_failures kill before
[ -n "$queued" ] && [ "$queued" -ge 10 ] ||
	fail "d: only ${queued:-no} connections waited for the stalled worker 1 (hashing gives its listener about 40 of 200): nothing to check"
assert_no_failures kill after
assert_total kill after "$queued"
[ "$(count_of kill after 1)" = 0 ] || fail "d: a dead worker answered: $(report_line kill after)"
stop_server
assert_one_warning d "each lane gets its own listener"

# ---- (e) no migration: the listener stays shared -----------------------------
sysctl -q -w net.ipv4.tcp_migrate_req=0 || fail "cannot clear net.ipv4.tcp_migrate_req in the test's namespace"
start_steered e --env RINGSTEER_BPF_DIR="$NONE" --tool --policy least-loaded -- -P 4
run_steer e -p "$PORT" -w 4 -b 50 hold:1000 report:equal close
assert_no_failures e equal
assert_total e equal 1000
assert_lane_listeners e "$PORT" shared
assert_workers_carried e
run_steer ekill -p "$PORT" -w 4 -t 30000 "send:stall 1 60000" inflight:200 settle:1000 report:before \
	kill:1 collect:20000 report:after
note "e: $(grep '^killed' "$TEST_TMP/ekill.out"); $(report_line ekill after)"
assert_no_failures ekill before
assert_no_failures ekill after
[ $(($(report_field ekill before connections) + $(report_field ekill after connections))) = 200 ] ||
	fail "e: of 200 connections, $(report_field ekill before connections) were answered before the kill and $(report_field ekill after connections) after"
stop_server
assert_one_warning e "listeners stay shared, because net.ipv4.tcp_migrate_req is 0"

# ---- (f) nginx: workers that drop root ----------------------------------------
sysctl -q -w net.ipv4.tcp_migrate_req=1 || fail "cannot set net.ipv4.tcp_migrate_req in the test's namespace"
port=18080
start_steered_nginx f "$port" --env RINGSTEER_STEER=1 --env RINGSTEER_BPF_DIR="$NONE" --env RINGSTEER_STATS_KEEP=1
RUN_ERR[f]=$SERVER_ERR
workers=$(ps -o pid= --ppid "$SERVER_PID" | tr -d ' ' | sort -n)
for ((i = 0; i < 200; i++)); do
	curl --silent --max-time 10 "http://127.0.0.1:$port/" || echo "curl failed"
done >"$TEST_TMP/curl.out" 2>&1
[ "$(grep -c '^answered$' "$TEST_TMP/curl.out")" = 200 ] ||
	fail "f: $(grep -c '^answered$' "$TEST_TMP/curl.out") of 200 requests answered: $(grep -v '^answered$' "$TEST_TMP/curl.out" | sort | uniq -c | head -n 3 | tr '\n' ' ')"
lines=$(listeners_of "$port")
[ "$(wc -l <<<"$lines")" = 1 ] || fail "f: nginx's workers should share its listener, found: $(tr '\n' ' ' <<<"$lines")"
if shim_enabled; then
	sockets=0
	for pid in $workers; do
		sockets=$((sockets + $(wait_for_counter 1 stats_total sockets_total "$pid")))
	done
	[ "$sockets" -ge 200 ] || fail "f: nginx's workers' counters show $sockets accelerated sockets for 200 connections"
	note "f: 200 requests answered, the workers' counters show $sockets sockets carried"
fi
stop_server
assert_one_warning f "a worker that dropped root.*accept on the application's listener"
