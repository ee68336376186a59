# SPDX-License-Identifier: MIT
#
# Shared helpers for the integration tests (tests/integration/*.sh), sourced
# at the top of each.  A test exits 0 on pass, 1 on failure (after printing
# `FAIL: reason`) and 77 on skip (after printing `SKIP: reason`).
#
# Servers started with start_server run under the shim unless the test asks
# for the plain kernel; their counters go to a stats directory private to
# the test, so `--all` sees exactly this test's processes.  Everything the
# test started is killed on exit, and the servers' stderr is checked for
# sanitizer reports when they are stopped.
#
# RINGSTEER_TEST_NO_SHIM=1 runs every server on the plain kernel and turns
# the stats assertions into notes: for developing the tests themselves
# only, never a way to make the suite pass.

set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVERS=$REPO/tests/servers
CLIENTS=$REPO/tests/clients
# The tool that reads the shim's counters (overridable, as for make bench).
TOOL=${RINGSTEER_TOOL:-$REPO/tools/ringsteer}
SHIM_LIBRARY=$REPO/preload/libringsteer.so
# Under `make SANITIZE=1` the ASan runtime must be loaded before the shim.
SHIM="${RINGSTEER_ASAN_LIB:+$RINGSTEER_ASAN_LIB:}$SHIM_LIBRARY"
# Under it, ASan's quarantine keeps freed memory for a while: a small one,
# so the tests that bound a server's memory measure the shim, not ASan.
if [ -n "${RINGSTEER_ASAN_LIB:-}" ]; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"
fi
TEST_NAME=$(basename "$0" .sh)

TEST_TMP=$(mktemp -d "/tmp/ringsteer-test.$TEST_NAME.XXXXXX") || {
	echo "FAIL: cannot create a temporary directory"
	exit 1
}
STATS_DIR=$TEST_TMP/stats
mkdir -p "$STATS_DIR"

SERVER_PIDS=()     # every server started, for cleanup
SERVER_NAMES=()    # their program names, same order
BACKGROUND_PIDS=() # other background processes (clients), for cleanup
SERVER_PID=
PORT=
SERVER_OUT=
SERVER_ERR=

shim_enabled() {
	[ "${RINGSTEER_TEST_NO_SHIM:-0}" != 1 ]
}

# ---- outcome -----------------------------------------------------------------

# Stops with a failure, showing the end of every server's stderr.
fail() {
	local file
	echo "FAIL: $*"
	for file in "$TEST_TMP"/server.*.err; do
		[ -s "$file" ] || continue
		echo "--- last lines of $(basename "$file"):"
		tail -n 20 "$file"
	done
	exit 1
}

skip() {
	echo "SKIP: $*"
	echo "SKIP: $TEST_NAME: $*" >&2
	exit 77
}

note() {
	echo "  $*"
}

# ---- processes ---------------------------------------------------------------

# True while PID exists and is not a zombie.
process_alive() {
	local state
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$state" ] && [ "$state" != Z ]
}

# Sends SIGTERM, waits up to 5 s, then SIGKILL.  Only for our own children.
terminate_process() {
	local pid=$1 tries=0
	kill -TERM "$pid" 2>/dev/null || return 0
	while process_alive "$pid" && [ $tries -lt 50 ]; do
		sleep 0.1
		tries=$((tries + 1))
	done
	if process_alive "$pid"; then
		kill -KILL "$pid" 2>/dev/null
		sleep 0.1
	fi
	wait "$pid" 2>/dev/null
	return 0
}

cleanup() {
	local pid
	for pid in "${BACKGROUND_PIDS[@]}" "${SERVER_PIDS[@]}"; do
		terminate_process "$pid"
	done
	if [ "${RINGSTEER_TEST_KEEP:-0}" = 1 ]; then
		echo "  (kept $TEST_TMP)"
	else
		rm -rf "$TEST_TMP"
	fi
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted"; exit 1' INT TERM

need_program() {
	local path=$1
	[ -x "$path" ] || fail "$path is missing: run make first"
}

# start_server [--plain] [--env NAME=VALUE]... [--wrap PROGRAM [ARGS] --] SERVER [ARGS...]
#
# Starts tests/servers/SERVER with `-p 0` and ARGS, under the shim unless
# --plain, with every --env setting, and with the wrapper command (for
# instance no_io_uring) exec'ing it.  Waits at most 10 s for its
# `listening PORT` line.  Sets SERVER_PID, PORT, SERVER_OUT and SERVER_ERR.
start_server() {
	local plain=0 environment=() wrapper=() name binary label tries=0
	while [ $# -gt 0 ]; do
		case $1 in
		--plain) plain=1; shift ;;
		--env) environment+=("$2"); shift 2 ;;
		--wrap)
			shift
			while [ $# -gt 0 ] && [ "$1" != -- ]; do
				wrapper+=("$1")
				shift
			done
			[ $# -gt 0 ] || fail "start_server: --wrap without --"
			shift
			;;
		*) break ;;
		esac
	done
	name=$1
	shift
	binary=$SERVERS/$name
	need_program "$binary"
	environment+=("RINGSTEER_STATS_DIR=$STATS_DIR")
	if [ $plain = 0 ] && shim_enabled; then
		[ -e "$SHIM_LIBRARY" ] || fail "$SHIM_LIBRARY is missing: run make first"
		environment+=("LD_PRELOAD=$SHIM")
	fi
	label="$name.${#SERVER_PIDS[@]}"
	SERVER_OUT=$TEST_TMP/server.$label.out
	SERVER_ERR=$TEST_TMP/server.$label.err
	# exec chain (wrapper, env, server) keeps one pid: $! is the server.
	"${wrapper[@]}" env "${environment[@]}" "$binary" -p 0 "$@" \
		</dev/null >"$SERVER_OUT" 2>"$SERVER_ERR" &
	SERVER_PID=$!
	SERVER_PIDS+=("$SERVER_PID")
	SERVER_NAMES+=("$name")
	PORT=
	while [ $tries -lt 100 ]; do
		PORT=$(sed -n 's/^listening \([0-9][0-9]*\)$/\1/p' "$SERVER_OUT" 2>/dev/null | head -n 1)
		[ -n "$PORT" ] && break
		process_alive "$SERVER_PID" || fail "$name exited before listening"
		sleep 0.1
		tries=$((tries + 1))
	done
	[ -n "$PORT" ] || fail "$name did not print 'listening PORT' within 10 s"
	note "started $name${*:+ $*} (pid $SERVER_PID, port $PORT$([ $plain = 0 ] && shim_enabled && echo ', under the shim'))"
}

# Fails unless the server is still running and its stderr is free of
# sanitizer reports and of the server's own complaints (the test servers
# write to stderr only about something unexpected, such as an error other
# than a peer going away, or a forked child that failed).
check_server() {
	local pid=$1 err name
	err=$(server_stderr "$pid")
	process_alive "$pid" || fail "server $pid died ($(tail -n 3 "$err" | tr '\n' ' '))"
	check_sanitizers "$err"
	name=$(server_name "$pid")
	if [ -n "$name" ] && grep -q "^$name:" "$err"; then
		fail "$name reported problems: $(grep "^$name:" "$err" | head -n 5 | tr '\n' ';')"
	fi
}

server_name() {
	local index
	for index in "${!SERVER_PIDS[@]}"; do
		if [ "${SERVER_PIDS[$index]}" = "$1" ]; then
			echo "${SERVER_NAMES[$index]}"
			return
		fi
	done
}

check_sanitizers() {
	if grep -qE 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$1"; then
		fail "sanitizer report in $(basename "$1")"
	fi
}

server_stderr() {
	local index
	for index in "${!SERVER_PIDS[@]}"; do
		if [ "${SERVER_PIDS[$index]}" = "$1" ]; then
			ls "$TEST_TMP"/server.*."$index".err
			return
		fi
	done
	echo /dev/null
}

# stop_server [PID]: checks the server survived the test, then stops it.
stop_server() {
	local pid=${1:-$SERVER_PID}
	check_server "$pid"
	terminate_process "$pid"
	check_sanitizers "$(server_stderr "$pid")"
}

# Number of threads and of open descriptors of a process.
thread_count() {
	ls "/proc/$1/task" 2>/dev/null | wc -l
}
fd_count() {
	ls "/proc/$1/fd" 2>/dev/null | wc -l
}

# CPU time (user + system) of a process in clock ticks.
cpu_ticks() {
	sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }'
}

# wait_for_baseline PID THREADS FDS: waits (at most 10 s) until the server
# is back to its idle thread and descriptor counts, i.e. every connection
# it served is closed and nothing of it lingers; fails otherwise.
wait_for_baseline() {
	local pid=$1 threads=$2 fds=$3 tries=0
	while [ "$(thread_count "$pid")" -gt "$threads" ] || [ "$(fd_count "$pid")" -gt "$fds" ]; do
		[ $tries -ge 100 ] &&
			fail "server $pid still has $(thread_count "$pid") threads and $(fd_count "$pid") descriptors 10 s after its clients left (idle: $threads and $fds)"
		sleep 0.1
		tries=$((tries + 1))
	done
}

# settle_baseline [ARGS for echo_verify...]: runs one small warm-up
# connection against $PORT (so lazily created state, such as the accepting
# thread's lane, exists), waits for its thread to go, then records the
# server's idle thread and descriptor counts in BASE_THREADS and BASE_FDS.
settle_baseline() {
	local pid=$SERVER_PID tries=0
	BASE_THREADS=$(thread_count "$pid")
	run_client warm-up echo_verify -p "$PORT" -c 1 -n 4K -s 99 "$@"
	while [ "$(thread_count "$pid")" -gt "$BASE_THREADS" ] && [ $tries -lt 100 ]; do
		sleep 0.1
		tries=$((tries + 1))
	done
	BASE_THREADS=$(thread_count "$pid")
	BASE_FDS=$(fd_count "$pid")
}

# Number of a process's descriptors that are sockets.
socket_count() {
	ls -l "/proc/$1/fd" 2>/dev/null | grep -c 'socket:\['
}

# settle_socket_baseline [ARGS for echo_verify...]: for servers whose
# threads and lanes do not follow their connections (event loops, pre-fork
# workers, where a loop thread's lane and its ring descriptor appear with
# its first connection): runs the warm-up connection, then records in
# BASE_SOCKETS the server's socket count once it has stopped changing (two
# equal samples 0.2 s apart, at most 5 s).
settle_socket_baseline() {
	local pid=$SERVER_PID tries=0 previous
	run_client warm-up echo_verify -p "$PORT" -c 1 -n 4K -s 99 "$@"
	previous=$(socket_count "$pid")
	while [ $tries -lt 25 ]; do
		sleep 0.2
		BASE_SOCKETS=$(socket_count "$pid")
		[ "$BASE_SOCKETS" = "$previous" ] && break
		previous=$BASE_SOCKETS
		tries=$((tries + 1))
	done
}

# wait_for_sockets PID COUNT: waits (at most 10 s) until the process holds
# at most COUNT sockets, i.e. it let go of every connection it served.
wait_for_sockets() {
	local pid=$1 count=$2 tries=0
	while [ "$(socket_count "$pid")" -gt "$count" ]; do
		[ $tries -ge 100 ] &&
			fail "server $pid still holds $(socket_count "$pid") sockets 10 s after its clients left (idle: $count)"
		sleep 0.1
		tries=$((tries + 1))
	done
}

# Resident memory of a process in KiB.
rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

# ---- clients -----------------------------------------------------------------

# run_client LABEL PROGRAM [ARGS...]: runs tests/clients/PROGRAM with a 120 s
# limit, output to $TEST_TMP/LABEL.out; fails the test if it fails.
run_client() {
	local label=$1 program=$2 output rc=0
	shift 2
	need_program "$CLIENTS/$program"
	output=$TEST_TMP/$label.out
	timeout -k 5 120 "$CLIENTS/$program" "$@" >"$output" 2>&1 || rc=$?
	check_sanitizers "$output"
	if [ $rc != 0 ]; then
		echo "--- $label output:"
		tail -n 20 "$output"
		fail "$label: $program $* exited with status $rc"
	fi
	note "$label: $(tail -n 1 "$output")"
}

client_output() {
	cat "$TEST_TMP/$1.out"
}

# ---- stats -------------------------------------------------------------------

stats_json() {
	"$TOOL" stats --json --dir "$STATS_DIR" "$@"
}

# stats_total FIELD PID: the process's total for FIELD (empty if unknown).
stats_total() {
	stats_json "$2" 2>/dev/null |
		jq -r --arg field "$1" --argjson pid "$2" \
			'.processes[] | select(.pid == $pid) | .total[$field] // empty' 2>/dev/null
}

# stats_all_total FIELD: sum of FIELD over every process of this test,
# running or exited.
stats_all_total() {
	stats_json --all 2>/dev/null | jq -r --arg field "$1" '.total[$field] // empty' 2>/dev/null
}

# stats_process_field FIELD PID: a per-process field such as io_uring.
stats_process_field() {
	stats_json "$2" 2>/dev/null |
		jq -r --arg field "$1" --argjson pid "$2" \
			'.processes[] | select(.pid == $pid) | .[$field] | tostring' 2>/dev/null
}

# Waits (at most 10 s) until FIELD reaches MINIMUM, as reported by the
# given stats command; counters of a lane are published by its own thread,
# which may still be finishing the last connection.
wait_for_counter() {
	local minimum=$1 value tries=0
	shift
	while :; do
		value=$("$@")
		case $value in '' | *[!0-9]*) value=0 ;; esac
		[ "$value" -ge "$minimum" ] && break
		[ $tries -ge 100 ] && break
		sleep 0.1
		tries=$((tries + 1))
	done
	echo "$value"
}

# assert_carried PID [BYTES]: fails unless the shim carried this server's
# traffic through its rings: bytes received and sent (at least BYTES each
# if given, otherwise at least 1), io_uring_enter calls, and no socket
# handed back to the kernel after an internal failure.  Traffic that went
# the kernel path makes the test fail.
assert_carried() {
	local pid=$1 minimum=${2:-1} received sent enters fallbacks
	[ "$minimum" -ge 1 ] || minimum=1
	if ! shim_enabled; then
		note "stats not checked for $pid (RINGSTEER_TEST_NO_SHIM=1)"
		return 0
	fi
	need_program "$TOOL"
	received=$(wait_for_counter "$minimum" stats_total bytes_received "$pid")
	sent=$(wait_for_counter "$minimum" stats_total bytes_sent "$pid")
	enters=$(wait_for_counter 1 stats_total ring_enters "$pid")
	fallbacks=$(stats_total fallbacks "$pid")
	note "stats of $pid: bytes_received=$received bytes_sent=$sent ring_enters=$enters fallbacks=${fallbacks:-?}"
	if [ "$received" -lt "$minimum" ] || [ "$sent" -lt "$minimum" ] || [ "$enters" -lt 1 ] ||
		[ "${fallbacks:-x}" != 0 ]; then
		echo "--- stats:"
		stats_json "$pid" 2>&1 | head -n 40
		fail "the shim did not carry the traffic of $pid (wanted at least $minimum bytes each way through the ring, ring_enters > 0, fallbacks 0)"
	fi
}

# assert_carried_all [BYTES] [ACCEPTS] [SOCKETS]: the same over every
# process of the test (forked and exec'd children included, which keep their
# stats files with RINGSTEER_STATS_KEEP=1), plus at least ACCEPTS accepts
# through the rings (blocking listeners) and SOCKETS accelerated sockets
# (non-blocking listeners accept with the kernel's accept4).
assert_carried_all() {
	local minimum=${1:-1} accepts_minimum=${2:-0} sockets_minimum=${3:-0}
	local received sent enters accepts sockets fallbacks
	[ "$minimum" -ge 1 ] || minimum=1
	if ! shim_enabled; then
		note "stats not checked (RINGSTEER_TEST_NO_SHIM=1)"
		return 0
	fi
	need_program "$TOOL"
	received=$(wait_for_counter "$minimum" stats_all_total bytes_received)
	sent=$(wait_for_counter "$minimum" stats_all_total bytes_sent)
	enters=$(wait_for_counter 1 stats_all_total ring_enters)
	accepts=$(wait_for_counter "$accepts_minimum" stats_all_total accepts)
	sockets=$(wait_for_counter "$sockets_minimum" stats_all_total sockets_total)
	fallbacks=$(stats_all_total fallbacks)
	note "stats of all processes: bytes_received=$received bytes_sent=$sent ring_enters=$enters accepts=$accepts sockets_total=$sockets fallbacks=${fallbacks:-?}"
	if [ "$received" -lt "$minimum" ] || [ "$sent" -lt "$minimum" ] || [ "$enters" -lt 1 ] ||
		[ "$accepts" -lt "$accepts_minimum" ] || [ "$sockets" -lt "$sockets_minimum" ] ||
		[ "${fallbacks:-x}" != 0 ]; then
		echo "--- stats:"
		stats_json --all 2>&1 | head -n 60
		fail "the shim did not carry the traffic (wanted at least $minimum bytes each way through the rings, $accepts_minimum accepts, $sockets_minimum sockets, ring_enters > 0, fallbacks 0)"
	fi
}

# run_probe LABEL SECONDS COMMAND...: runs a test program that plays both
# ends of its connections (a probe), at most SECONDS, with its stdout in
# $TEST_TMP/LABEL.out and its stderr in $TEST_TMP/LABEL.err; fails on a
# non-zero exit or a sanitizer report.
run_probe() {
	local label=$1 seconds=$2 rc=0
	shift 2
	timeout -k 5 "$seconds" "$@" >"$TEST_TMP/$label.out" 2>"$TEST_TMP/$label.err" || rc=$?
	check_sanitizers "$TEST_TMP/$label.err"
	[ $rc = 0 ] || fail "the probe ($label) exited with status $rc: $(tail -n 5 "$TEST_TMP/$label.out" "$TEST_TMP/$label.err" | tr '\n' ';')"
}

# check_fetched ROOT DIRECTORY FILE...: every FILE fetched into DIRECTORY
# is there and equals its original under ROOT (sha256).
check_fetched() {
	local root=$1 directory=$2 file
	shift 2
	for file in "$@"; do
		[ -e "$directory/$file" ] || fail "curl did not fetch $file"
		[ "$(sha256sum <"$directory/$file")" = "$(sha256sum <"$root/$file")" ] ||
			fail "$file fetched into $directory differs from the original ($(stat -c %s "$directory/$file") of $(stat -c %s "$root/$file") bytes)"
	done
}

# wait_clients PREFIX PID...: waits for background clients numbered 1, 2,
# ... in the order of their PIDs, each printing into PREFIX-N.out only when
# it fails; fails with the first failure's output.
wait_clients() {
	local prefix=$1 pid client=0
	shift
	for pid in "$@"; do
		wait "$pid" || true
	done
	for pid in "$@"; do
		client=$((client + 1))
		[ -s "$prefix-$client.out" ] && fail "client $client: $(head -n 3 "$prefix-$client.out")"
	done
	return 0
}

# fetch_concurrently LABEL URL ROOT FILE...: 8 curl clients at once, each
# fetching every FILE (in that order, over one connection) from URL into
# $TEST_TMP/LABEL-N, all compared with the originals under ROOT.
fetch_concurrently() {
	local label=$1 url=$2 root=$3 client clients=()
	shift 3
	for client in 1 2 3 4 5 6 7 8; do
		mkdir -p "$TEST_TMP/$label-$client"
		(
			arguments=()
			for file in "$@"; do
				arguments+=(-o "$TEST_TMP/$label-$client/$file" "$url/$file")
			done
			curl --silent --show-error --fail --max-time 60 "${arguments[@]}"
		) >"$TEST_TMP/$label-$client.out" 2>&1 &
		clients+=($!)
		BACKGROUND_PIDS+=($!)
	done
	wait_clients "$TEST_TMP/$label" "${clients[@]}"
	for client in 1 2 3 4 5 6 7 8; do
		check_fetched "$root" "$TEST_TMP/$label-$client" "$@"
	done
}

# ---- event-loop servers ------------------------------------------------------

server_stdout() {
	local index
	for index in "${!SERVER_PIDS[@]}"; do
		if [ "${SERVER_PIDS[$index]}" = "$1" ]; then
			ls "$TEST_TMP"/server.*."$index".out
			return
		fi
	done
	echo /dev/null
}

# stop_event_server LOOPS [WORKERS] [PID]: stops an event_echo server (with
# SIGTERM, as stop_server) and checks its closing report: LOOPS loop lines
# in all (over every worker process), each having read exactly as many
# ticks from its kernel descriptor (a pipe or an eventfd waited for in the
# same set as the sockets) as the helper thread wrote, at least one; every
# process said `exit ok`, and with WORKERS pre-forked workers, the parent
# saw each of them exit with status 0.  Sets EVENT_BYTES to the bytes the
# loops echoed in total.
stop_event_server() {
	local loops=$1 workers=${2:-0} pid=${3:-$SERVER_PID} output lines bad exits tries=0
	output=$(server_stdout "$pid")
	check_server "$pid"
	# Its report comes after every loop and worker has finished: give it
	# time on a loaded machine before stop_server's 5 s and SIGKILL.
	kill -TERM "$pid" 2>/dev/null
	while process_alive "$pid" && [ $tries -lt 300 ]; do
		sleep 0.1
		tries=$((tries + 1))
	done
	terminate_process "$pid"
	check_sanitizers "$(server_stderr "$pid")"
	lines=$(grep -c '^loop ' "$output")
	[ "$lines" = "$loops" ] ||
		fail "event_echo printed $lines loop reports, expected $loops: $(tr '\n' ';' <"$output")"
	bad=$(awk '/^loop / {
			for (i = 3; i <= NF; i++) { split($i, kv, "="); value[kv[1]] = kv[2] }
			if (value["ticks_written"] < 1 || value["ticks_read"] != value["ticks_written"]) print
		}' "$output")
	[ -z "$bad" ] || fail "a loop lost or invented readiness of its kernel descriptor: $bad"
	note "kernel descriptor ticks: $(event_report_sum ticks_read "$output") read by $loops loops, none lost"
	exits=$(grep -c '^exit ok$' "$output")
	[ "$exits" = $((workers > 0 ? workers : 1)) ] ||
		fail "event_echo: $exits processes reported a clean exit, expected $((workers > 0 ? workers : 1))"
	if [ "$workers" -gt 0 ]; then
		grep -q "^workers exited=$workers failed=0$" "$output" ||
			fail "event_echo's workers did not all exit cleanly: $(grep '^workers' "$output")"
	fi
	EVENT_BYTES=$(event_report_sum bytes "$output")
}

# event_report_sum FIELD FILE: the sum of FIELD=VALUE over the loop reports.
event_report_sum() {
	awk -v field="$1" '/^loop / {
		for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == field) sum += kv[2] }
	} END { print sum + 0 }' "$2"
}

# add_client_bytes LABEL: adds the byte count of a finished echo_verify
# run to CLIENT_BYTES.
CLIENT_BYTES=0
add_client_bytes() {
	local bytes
	bytes=$(sed -n 's/^ok connections=[0-9]* bytes=\([0-9]*\)$/\1/p' "$TEST_TMP/$1.out")
	[ -n "$bytes" ] || fail "no byte count from the $1 client"
	CLIENT_BYTES=$((CLIENT_BYTES + bytes))
}

# ---- installed servers (nginx, redis-server, memcached) ----------------------

# free_port: prints a TCP port no socket uses, for servers that cannot be
# told to pick one themselves.  It is taken below the ephemeral range, so
# no outgoing connection takes it meanwhile; another test may still pick
# the same one, which start_real_server --retry handles.
free_port() {
	local port tries=0 lowest=10000 ephemeral
	ephemeral=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	case $ephemeral in '' | *[!0-9]*) ephemeral=32768 ;; esac
	[ "$ephemeral" -gt $((lowest + 1000)) ] || lowest=1024
	while [ $tries -lt 200 ]; do
		port=$((lowest + RANDOM % (ephemeral - lowest)))
		if [ -z "$(ss -Htan "sport = :$port" 2>/dev/null)" ]; then
			echo "$port"
			return 0
		fi
		tries=$((tries + 1))
	done
	echo 0
}

# start_real_server [--plain] [--retry] [--env NAME=VALUE]... LABEL PORT COMMAND [ARGS...]
#
# Starts an installed server as start_server starts a test server: under
# the shim unless --plain, with its counters in the test's stats directory,
# stdout and stderr in $TEST_TMP/server.LABEL.N.{out,err} (stop_server and
# check_server look there, and fail on stderr lines starting `LABEL:`).
# COMMAND must stay in the foreground and listen on 127.0.0.1:PORT; waits
# at most 10 s for that.  Sets SERVER_PID, PORT, SERVER_OUT and SERVER_ERR.
# With --retry, a server that exits because its port was taken meanwhile
# makes this return 1 (the caller picks another port) instead of failing.
start_real_server() {
	local plain=0 retry=0 environment=() label name port tries=0
	while [ $# -gt 0 ]; do
		case $1 in
		--plain) plain=1; shift ;;
		--retry) retry=1; shift ;;
		--env) environment+=("$2"); shift 2 ;;
		*) break ;;
		esac
	done
	name=$1 port=$2
	shift 2
	command -v "$1" >/dev/null || fail "$1 is not installed: run make deps"
	[ "$port" -gt 0 ] || fail "no free port for $name"
	environment+=("RINGSTEER_STATS_DIR=$STATS_DIR")
	if [ $plain = 0 ] && shim_enabled; then
		[ -e "$SHIM_LIBRARY" ] || fail "$SHIM_LIBRARY is missing: run make first"
		environment+=("LD_PRELOAD=$SHIM")
		# A Debian server is not built for LeakSanitizer: at exit it
		# would report the server's own allocations.  ASan still checks
		# every access the shim makes; the test servers check its leaks.
		[ -n "${RINGSTEER_ASAN_LIB:-}" ] && environment+=("LSAN_OPTIONS=detect_leaks=0")
	fi
	label="$name.${#SERVER_PIDS[@]}"
	SERVER_OUT=$TEST_TMP/server.$label.out
	SERVER_ERR=$TEST_TMP/server.$label.err
	env "${environment[@]}" "$@" </dev/null >"$SERVER_OUT" 2>"$SERVER_ERR" &
	SERVER_PID=$!
	SERVER_PIDS+=("$SERVER_PID")
	SERVER_NAMES+=("$name")
	PORT=$port
	# Listening itself, not some other process on that port.
	until ss -Hltnp "sport = :$port" 2>/dev/null | grep -q "pid=$SERVER_PID,"; do
		if ! process_alive "$SERVER_PID"; then
			if [ $retry = 1 ] && grep -qi 'address already in use' "$SERVER_ERR" "$SERVER_OUT"; then
				note "$name: port $port was taken meanwhile"
				return 1
			fi
			fail "$name exited before listening: $(tail -n 5 "$SERVER_ERR" "$SERVER_OUT" | tr '\n' ' ')"
		fi
		[ $tries -ge 100 ] && fail "$name did not listen on port $port within 10 s"
		sleep 0.1
		tries=$((tries + 1))
	done
	note "started $name (pid $SERVER_PID, port $port$([ $plain = 0 ] && shim_enabled && echo ', under the shim'))"
}

# raise_descriptor_limit COUNT: makes the soft descriptor limit at least
# COUNT for this test and what it starts (raising the hard limit too when
# allowed, as root); fails if that is not possible.
raise_descriptor_limit() {
	local wanted=$1 hard
	hard=$(ulimit -Hn)
	if [ "$hard" != unlimited ] && [ "$hard" -lt "$wanted" ]; then
		ulimit -Hn "$wanted" 2>/dev/null ||
			fail "the hard descriptor limit is $hard, this test needs $wanted (run as root or raise it)"
	fi
	ulimit -n "$(ulimit -Hn)" || fail "cannot raise the descriptor limit to $(ulimit -Hn)"
}
