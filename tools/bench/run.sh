#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make bench: unmodified servers plain and under the ringsteer shim, side by
# side in one run.  Five workloads (WORKLOADS selects among them):
#   blocking  a blocking echo server at 1 and 50 connections (issue 2)
#   epoll     tools/bench/echo_epoll, a level-triggered epoll echo server, at
#             1, 50 and 500 connections, plus tools/bench/echo_uring (written
#             on io_uring itself, never preloaded) as a third, "native" column
#   redis     redis-server under redis-benchmark GET and SET, 50 connections
#   nginx     nginx with 4 workers serving a small static file over keep-alive
#             connections to wrk
#   proxy     the same nginx as a reverse proxy (upstream connections kept
#             alive, RINGSTEER_CLIENT=1) in front of a plain nginx serving
#             the file; only the proxy is measured
#   haproxy   haproxy (HTTP mode, its defaults: a thread per core, server
#             connections kept alive) in front of the same plain nginx,
#             RINGSTEER_CLIENT=1; only haproxy is measured
# Each run starts a fresh server, warms it up, and then measures over one
# interval: requests/s and latency from the client, server CPU time from
# /proc (utime+stime of the server and all its descendants, reaped ones
# included) and server system calls from perf's raw_syscalls:sys_enter
# tracepoint over every thread of every server process.  The echo servers are
# measured with loadgen's gated mode (the server is idle outside the interval);
# redis and nginx are measured from just before their client starts to just
# after it ends, after a warm-up run.  Configurations alternate (ABBA) so drift
# on a noisy machine hits all alike; the tables show medians and the ratios
# shim/plain (and shim/native) of runs made next to each other, with the
# targets of issues 2 and 3.  It is a benchmark, not a test: targets are
# printed, never asserted.  A failed run (wrong echo, a server that died, a
# client that reports errors) makes it exit non-zero.
#
# Environment:
#   QUICK=1          short runs (2 s, one repetition) to check the harness
#   WORKLOADS="blocking epoll redis nginx proxy haproxy"  what to run
#   DURATION=S       measured seconds per run (default 5; QUICK: 2)
#   WARMUP=S         warm-up seconds per run (default 1; QUICK: 0.5)
#   REPEAT=N         blocking runs per configuration (default 6; QUICK: 1):
#                    many short alternating runs resist this machine's drift
#                    better than a few long ones
#   EVENT_REPEAT=N   runs per configuration of the other workloads (default 6;
#                    QUICK: 1)
#   CONNECTIONS="1 50"  connection counts of the blocking server
#   EVENT_CONNECTIONS="1 50 500"  connection counts of the epoll echo server
#   EPOLL_THREADS=1  event loops of echo_epoll (each on the shared listener)
#   REDIS_CONNECTIONS=50  REDIS_REQUESTS=300000 (QUICK: 50000) per run
#   NGINX_CONNECTIONS=50  NGINX_WORKERS=4  NGINX_FILE_SIZE=1024 (bytes)
#   NGINX_OPEN_FILE_CACHE=1  0: nginx opens, stats and closes the file for
#                    every request (3 of its 8 system calls per request)
#   WRK_THREADS=1    wrk threads
#   MESSAGE_SIZE=64  bytes per echo request
#   LOADGEN_THREADS=1  loadgen threads (1 or 2)
#   SERVER=PATH      blocking echo server (default tests/servers/echo_threaded
#                    when built, else tools/bench/echo_blocking)
#   SERVER_ARGS=...  extra server arguments (default for echo_threaded:
#                    "-m read -b 65536", plain read/write with one buffer
#                    size, instead of its rotating test mode)
#   SHIM_LIB=PATH    library for the shim column (default
#                    preload/libringsteer.so); SHIM_LIB= (empty) runs the
#                    shim column without any preload, to check the harness
#                    (plain against plain should give ratios near 1)
#   RINGSTEER_TOOL=PATH  ringsteer tool for the shim's counters (default
#                    tools/ringsteer)
#   PIN=1            pin the servers to CPU 0 and the clients to CPU 1
#   PERF=PATH        perf binary (default: perf, else the newest /usr/bin/perf_*)
#   RESULTS_DIR=DIR  where results go (default bench-results/): a directory
#                    per run, and latest.md, a copy of its summary
#   BENCH_OUT=DIR    this run's directory itself (then nothing is written
#                    under RESULTS_DIR): tools/bench/report.sh puts the run
#                    inside its own report directory this way
#
# Besides summary.md the run directory gets blocking.md and events.md (the
# two tables alone), commands.tsv (the server and client commands of each
# workload, configuration and connection count) and latencies.tsv, which
# names each successful run's latency data: loadgen's histogram, the
# measured redis-benchmark output (its percentile distribution) or wrk's
# output (its --latency percentiles), for the report's plots.

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$REPO/tools/bench
LOADGEN=$BENCH_DIR/loadgen

if [ "${QUICK:-0}" = 1 ]; then
	DURATION=${DURATION:-2}; WARMUP=${WARMUP:-0.5}; REPEAT=${REPEAT:-1}; EVENT_REPEAT=${EVENT_REPEAT:-1}
	REDIS_REQUESTS=${REDIS_REQUESTS:-50000}
else
	DURATION=${DURATION:-5}; WARMUP=${WARMUP:-1}; REPEAT=${REPEAT:-6}; EVENT_REPEAT=${EVENT_REPEAT:-6}
	REDIS_REQUESTS=${REDIS_REQUESTS:-300000}
fi
WORKLOADS=${WORKLOADS:-"blocking epoll redis nginx proxy haproxy"}
CONNECTIONS=${CONNECTIONS:-"1 50"}
EVENT_CONNECTIONS=${EVENT_CONNECTIONS:-"1 50 500"}
EPOLL_THREADS=${EPOLL_THREADS:-1}
REDIS_CONNECTIONS=${REDIS_CONNECTIONS:-50}
NGINX_CONNECTIONS=${NGINX_CONNECTIONS:-50}
NGINX_WORKERS=${NGINX_WORKERS:-4}
NGINX_FILE_SIZE=${NGINX_FILE_SIZE:-1024}
NGINX_OPEN_FILE_CACHE=${NGINX_OPEN_FILE_CACHE:-1}
WRK_THREADS=${WRK_THREADS:-1}
MESSAGE_SIZE=${MESSAGE_SIZE:-64}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
PIN=${PIN:-0}
SHIM_LIB=${SHIM_LIB-$REPO/preload/libringsteer.so}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench-results}
RINGSTEER_TOOL=${RINGSTEER_TOOL:-$REPO/tools/ringsteer}

# Targets from issue 2, printed next to the measured ratios.
TARGET_SYSCALLS_RATIO=0.55
TARGET_RPS_RATIO=0.97
# Targets from issue 3 for the event-loop servers.  The system call and CPU
# targets apply from EVENT_TARGET_CONNECTIONS connections on; throughput and
# p50 latency everywhere, 1-connection ping-pong included.
EVENT_TARGET_CONNECTIONS=50
TARGET_EVENT_SYSCALLS_PER_REQUEST=0.05
TARGET_EVENT_CPU_RATIO=0.90
TARGET_EVENT_CPU_NATIVE_RATIO=1.05
TARGET_EVENT_RPS_RATIO=0.97
TARGET_EVENT_P50_RATIO=1.03

# Progress goes to stderr and, once the results directory exists, to its log.
LOG_FILE=/dev/null
say() { printf '%s\n' "$*" | tee -a "$LOG_FILE" >&2; }
fail() { say "bench: $*"; exit 1; }

is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
for setting in DURATION WARMUP REPEAT MESSAGE_SIZE LOADGEN_THREADS; do
	is_number "${!setting}" || fail "$setting='${!setting}' is not a number"
done
is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
for setting in EVENT_REPEAT EPOLL_THREADS REDIS_CONNECTIONS REDIS_REQUESTS NGINX_CONNECTIONS NGINX_WORKERS \
	NGINX_FILE_SIZE WRK_THREADS; do
	is_count "${!setting}" || fail "$setting='${!setting}' is not a positive integer"
done
[[ $NGINX_OPEN_FILE_CACHE =~ ^[01]$ ]] || fail "NGINX_OPEN_FILE_CACHE='$NGINX_OPEN_FILE_CACHE' must be 0 or 1"
for connections in $CONNECTIONS; do
	is_count "$connections" || fail "CONNECTIONS='$CONNECTIONS' must list positive integers"
done
for connections in $EVENT_CONNECTIONS; do
	is_count "$connections" || fail "EVENT_CONNECTIONS='$EVENT_CONNECTIONS' must list positive integers"
done
for workload in $WORKLOADS; do
	case $workload in
	blocking | epoll | redis | nginx | proxy | haproxy) ;;
	*) fail "WORKLOADS='$WORKLOADS': unknown workload $workload (blocking, epoll, redis, nginx, proxy, haproxy)" ;;
	esac
done
wanted() { [[ " $WORKLOADS " == *" $1 "* ]]; }

if [ -z "${SERVER:-}" ]; then
	if [ -x "$REPO/tests/servers/echo_threaded" ]; then
		SERVER=$REPO/tests/servers/echo_threaded
	else
		SERVER=$BENCH_DIR/echo_blocking
	fi
fi
! wanted blocking || [ -x "$SERVER" ] || fail "server $SERVER is not built (run make)"
if [ -z "${SERVER_ARGS+set}" ]; then
	case $(basename "$SERVER") in
	echo_threaded) SERVER_ARGS="-m read -b 65536" ;;
	*) SERVER_ARGS= ;;
	esac
fi
read -r -a SERVER_ARGUMENTS <<<"$SERVER_ARGS"
[ -x "$LOADGEN" ] || fail "$LOADGEN is not built (run make)"
EPOLL_SERVER=$BENCH_DIR/echo_epoll
NATIVE_SERVER=$BENCH_DIR/echo_uring
if wanted epoll; then
	[ -x "$EPOLL_SERVER" ] && [ -x "$NATIVE_SERVER" ] || fail "$EPOLL_SERVER and $NATIVE_SERVER are not built (run make bench)"
fi
# The real servers and clients come from Debian (make deps installs them).
need_commands() {
	local name
	for name in "$@"; do
		command -v "$name" >/dev/null 2>&1 || fail "$name is missing (run make deps)"
	done
}
wanted redis && need_commands redis-server redis-benchmark redis-cli
{ wanted nginx || wanted proxy || wanted haproxy; } && need_commands nginx wrk curl
wanted haproxy && need_commands haproxy
{ wanted redis || wanted nginx || wanted proxy || wanted haproxy; } && need_commands ss

if [ -n "$SHIM_LIB" ]; then
	[ -f "$SHIM_LIB" ] || fail "$SHIM_LIB is not built: run make, or set SHIM_LIB= to run plain against plain"
	SHIM_LABEL=shim
else
	say "bench: SHIM_LIB is empty: the shim column runs WITHOUT the shim (harness check, plain vs plain)"
	SHIM_LABEL=shim-off
fi

find_perf() {
	if [ -n "${PERF:-}" ]; then printf '%s\n' "$PERF"; return; fi
	if command -v perf >/dev/null 2>&1; then command -v perf; return; fi
	# Debian's linux-perf installs versioned binaries next to a wrapper
	# that refuses to run when the kernel version differs.
	local candidate
	candidate=$(ls /usr/bin/perf_* 2>/dev/null | sort -V | tail -n 1)
	[ -n "$candidate" ] && printf '%s\n' "$candidate"
}
PERF=$(find_perf)
if [ -z "$PERF" ] || ! "$PERF" stat -x, -e raw_syscalls:sys_enter -o /dev/null -- true >/dev/null 2>&1; then
	say "bench: WARNING: perf with the raw_syscalls:sys_enter tracepoint is not usable" \
		"(install linux-perf; is tracefs mounted?): system calls per request will read n/a"
	PERF=
fi

HAVE_JQ=0
command -v jq >/dev/null 2>&1 && HAVE_JQ=1

STAMP=$(date +%Y%m%d-%H%M%S)
RUN_DIR=${BENCH_OUT:-$RESULTS_DIR/$STAMP}
mkdir -p "$RUN_DIR" || fail "cannot create $RUN_DIR"
LOG_FILE=$RUN_DIR/log.txt
WORK=$(mktemp -d /tmp/ringsteer-bench.XXXXXX) || fail "mktemp failed"
# Shared memory, like the shim's default, so publishing counters costs nothing.
STATS_DIR=$(mktemp -d /dev/shm/ringsteer-bench.XXXXXX) || fail "mktemp failed"

SERVER_PID=
SERVER_COMMAND=
LOADGEN_PID=
PERF_PID=
PERF_CONTROL=
PERF_ACK=
CLIENT_PID=

# Waits up to $2 seconds for process $1 to end, then kills it; reaps it if
# it is our child.  Sets WAIT_STATUS to its exit status.
wait_bounded() {
	local pid=$1 limit=$2 tick=0
	WAIT_STATUS=0
	[ -n "$pid" ] || return 0
	while kill -0 "$pid" 2>/dev/null && [ "$tick" -lt $((limit * 20)) ]; do
		sleep 0.05
		tick=$((tick + 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "bench: process $pid did not end within ${limit}s: killing it"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	WAIT_STATUS=$?
}

stop_process() {
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null
	wait_bounded "$pid" 5
}

cleanup() {
	stop_process "$CLIENT_PID"
	stop_process "$LOADGEN_PID"
	stop_process "$PERF_PID"
	stop_process "$SERVER_PID"
	rm -rf "$WORK" "$STATS_DIR"
}
trap cleanup EXIT
trap 'say "bench: interrupted"; exit 130' INT TERM

# CPU time of a process and its descendants (live ones, and reaped ones
# through cutime/cstime), in clock ticks.  The thread group's utime+stime
# includes threads that already exited.
CLOCK_TICKS=$(getconf CLK_TCK)
cpu_ticks() {
	local root=$1
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$root" '
		{
			# The command name may hold spaces and parentheses: fields
			# are counted after its closing parenthesis.
			line = $0
			pid = line + 0
			sub(/^.*\) /, "", line)
			split(line, field, " ")
			parent[pid] = field[2]
			ticks[pid] = field[12] + field[13] + field[14] + field[15]
		}
		END {
			total = 0
			for (pid in ticks) {
				ancestor = pid
				for (depth = 0; depth < 64 && ancestor > 1; depth++) {
					if (ancestor == root) { total += ticks[pid]; break }
					ancestor = parent[ancestor]
				}
			}
			print total
		}'
}

# The process and its live descendants (nginx's workers), comma-separated as
# perf -p takes them.
process_tree() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
		{
			line = $0
			pid = line + 0
			sub(/^.*\) /, "", line)
			split(line, field, " ")
			parent[pid] = field[2]
		}
		END {
			list = root
			for (pid in parent) {
				ancestor = parent[pid]
				for (depth = 0; depth < 64 && ancestor > 1; depth++) {
					if (ancestor == root) { list = list "," pid; break }
					ancestor = parent[ancestor]
				}
			}
			print list
		}'
}

# Prints "bytes_received ring_enters fallbacks ring_ops kernel_ops" summed over
# the given processes under the shim, or nothing when the stats cannot be read.
# A process the shim has published nothing for yet just adds nothing.
shim_counters() {
	[ "$HAVE_JQ" = 1 ] && [ -x "$RINGSTEER_TOOL" ] || return 0
	{ "$RINGSTEER_TOOL" stats --json --dir "$STATS_DIR" "$@" 2>/dev/null || true; } |
		jq -r '.total | "\(.bytes_received // 0) \(.ring_enters // 0) \(.fallbacks // 0) \(.ring_ops // 0) \(.kernel_ops // 0)"' 2>/dev/null
}

# Counts the server's system calls: attaches perf to the processes in $2
# (every thread of each) with its counter off, then turns it on through the
# control fifo and waits for perf's acknowledgement that it is counting.
# Without a usable perf it does nothing.  $1 names the run's files.
perf_begin() {
	local name=$1 pids=$2 line
	PERF_OUT=$RUN_DIR/$name.perf.csv
	[ -n "$PERF" ] || return 0
	rm -f "$WORK/perf.ctl" "$WORK/perf.ack"
	mkfifo "$WORK/perf.ctl" "$WORK/perf.ack"
	"$PERF" stat -x, -D -1 --control "fifo:$WORK/perf.ctl,$WORK/perf.ack" \
		-e raw_syscalls:sys_enter -p "$pids" -o "$PERF_OUT" 2>"$RUN_DIR/$name.perf.err" &
	PERF_PID=$!
	exec {PERF_CONTROL}<>"$WORK/perf.ctl" {PERF_ACK}<>"$WORK/perf.ack"
	echo enable >&"$PERF_CONTROL"
	if ! read -r -t 10 line <&"$PERF_ACK"; then
		say "bench: $name: perf did not start counting: $(cat "$RUN_DIR/$name.perf.err")"
		return 1
	fi
}

# Turns perf's counter off, lets it write its count and ends it.
perf_end() {
	local line
	if [ -n "$PERF_PID" ]; then
		if [ -n "$PERF_CONTROL" ]; then
			echo disable >&"$PERF_CONTROL"
			read -r -t 10 line <&"$PERF_ACK"
		fi
		kill -INT "$PERF_PID" 2>/dev/null
		wait_bounded "$PERF_PID" 10
		PERF_PID=
	fi
	if [ -n "$PERF_CONTROL" ]; then
		exec {PERF_CONTROL}>&- {PERF_ACK}>&-
		PERF_CONTROL= PERF_ACK=
	fi
}

# The system calls perf counted, or na.
perf_count() {
	local count=
	[ -n "$PERF" ] && [ -f "$PERF_OUT" ] &&
		count=$(awk -F, '/raw_syscalls:sys_enter/ { print ($1 ~ /^[0-9]+$/) ? $1 : 0 }' "$PERF_OUT")
	printf '%s\n' "${count:-na}"
}

# Counter differences "ring_bytes ring_enters fallbacks ring_ops kernel_ops"
# between two shim_counters outputs, or "na na na na na".
shim_difference() {
	if [ -n "$1" ] && [ -n "$2" ]; then
		awk -v b="$1" -v a="$2" 'BEGIN {
			split(b, before, " "); split(a, after, " ")
			print after[1] - before[1], after[2] - before[2], after[3] - before[3], after[4] - before[4], after[5] - before[5] }'
	else
		echo na na na na na
	fi
}

# After a failed run: where each server thread waits, its sockets, and the
# shim's counters, so a hang can be diagnosed after the processes are gone.
save_server_state() {
	local pid=$1 task
	kill -0 "$pid" 2>/dev/null || return 0
	{
		for task in /proc/"$pid"/task/*; do
			printf '== thread %s (%s) state %s wchan %s\n' "${task##*/}" "$(cat "$task/comm" 2>/dev/null)" \
				"$(awk '{ sub(/^.*\) /, ""); print $1 }' "$task/stat" 2>/dev/null)" "$(cat "$task/wchan" 2>/dev/null)"
			cat "$task/stack" 2>/dev/null
		done
		printf '== sockets\n'
		ss -tnpi 2>/dev/null | grep -A1 "pid=$pid," || true
		printf '== ringsteer stats\n'
		[ -x "$RINGSTEER_TOOL" ] && "$RINGSTEER_TOOL" stats --json --dir "$STATS_DIR" "$pid" 2>&1
	} >"$2.tmp" 2>&1
	mv "$2.tmp" "$2"
	say "bench: server state saved in $2"
}

# Starts a server in the background, under the shim for the shim column
# (never for plain or native); sets SERVER_PID.
# The words quoted as a shell would need them (redis-server's empty
# --save and --logfile stay visible), space-separated.
shell_words() {
	local words
	printf -v words '%q ' "$@"
	printf '%s\n' "${words% }"
}

launch_server() {
	local config=$1 output=$2 errors=$3
	shift 3
	local -a command=("$@")
	[ "$PIN" = 1 ] && command=(taskset -c 0 "${command[@]}")
	if [ "$config" = shim ] && [ -n "$SHIM_LIB" ]; then
		RINGSTEER_STATS_DIR=$STATS_DIR LD_PRELOAD=$SHIM_LIB "${command[@]}" >"$output" 2>"$errors" &
		SERVER_COMMAND="LD_PRELOAD=$(shell_words "$SHIM_LIB") $(shell_words "${command[@]}")"
	else
		"${command[@]}" >"$output" 2>"$errors" &
		SERVER_COMMAND=$(shell_words "${command[@]}")
	fi
	SERVER_PID=$!
}

# note_commands WORKLOAD CONFIG CONNECTIONS CLIENT...: records, once per
# workload, configuration and connection count, the server command of the
# last launch_server and the client command, with the tree's paths made
# relative, for the report to show what produced each table.
note_commands() {
	local workload=$1 config=$2 connections=$3 client
	shift 3
	client=$(shell_words "$@")
	if [ -f "$RUN_DIR/commands.tsv" ] &&
		awk -F'\t' -v w="$workload" -v c="$config" -v n="$connections" \
			'$1 == w && $2 == c && $3 == n { found = 1 } END { exit !found }' "$RUN_DIR/commands.tsv"; then
		return 0
	fi
	printf '%s\t%s\t%s\t%s\t%s\n' "$workload" "$config" "$connections" "${SERVER_COMMAND//$REPO\//}" \
		"${client//$REPO\//}" >>"$RUN_DIR/commands.tsv"
}

# note_latency WORKLOAD CONFIG CONNECTIONS REPETITION FORMAT FILE: names a
# successful run's latency data (FILE, relative to the run directory; FORMAT
# histogram, redis-benchmark or wrk) in latencies.tsv.
note_latency() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RUN_DIR/latencies.tsv"
}

# Starts an echo server that prints "listening PORT"; sets SERVER_PORT.
start_server() {
	local config=$1 output=$2 errors=$3
	shift 3
	launch_server "$config" "$output" "$errors" "$@" -p 0
	local tick
	for tick in $(seq 100); do
		# The background shell may not have created the file yet.
		if [ -s "$output" ] && read -r word SERVER_PORT <"$output" && [ "$word" = listening ]; then
			return 0
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.05
	done
	say "bench: server did not start: $(cat "$errors")"
	return 1
}

# Runs one echo measurement with loadgen.  The blocking workload appends a
# line to runs.tsv, the epoll one (echo_epoll plain and under the shim,
# echo_uring as native) to events.tsv.
run_one() {
	local workload=$1 config=$2 connections=$3 repetition=$4
	local name=$config-c$connections-r$repetition
	[ "$workload" = blocking ] || name=$workload-$name
	local server_out=$RUN_DIR/$name.server.out server_err=$RUN_DIR/$name.server.err
	local loadgen_err=$RUN_DIR/$name.loadgen.err
	local status=0
	local -a server
	if [ "$workload" = blocking ]; then
		server=("$SERVER" "${SERVER_ARGUMENTS[@]}")
	elif [ "$config" = native ]; then
		server=("$NATIVE_SERVER")
	else
		server=("$EPOLL_SERVER" -t "$EPOLL_THREADS")
	fi

	start_server "$config" "$server_out" "$server_err" "${server[@]}" || return 1

	local -a loadgen=("$LOADGEN" -g -p "$SERVER_PORT" -c "$connections" -d "$DURATION"
		-w "$WARMUP" -s "$MESSAGE_SIZE" -t "$LOADGEN_THREADS" --histogram "$RUN_DIR/$name.latency")
	[ "$PIN" = 1 ] && loadgen=(taskset -c 1 "${loadgen[@]}")
	coproc LOADGEN_PROCESS { exec "${loadgen[@]}" 2>"$loadgen_err"; }
	LOADGEN_PID=$LOADGEN_PROCESS_PID
	local to_loadgen=${LOADGEN_PROCESS[1]} from_loadgen=${LOADGEN_PROCESS[0]}
	local line result=

	local ready_timeout
	ready_timeout=$(awk -v w="$WARMUP" -v c="$connections" 'BEGIN { print int(w) + 20 + int(c / 100) }')
	if ! read -r -t "$ready_timeout" line <&"$from_loadgen" || [ "$line" != ready ]; then
		say "bench: $name: loadgen did not get ready: $(cat "$loadgen_err")"
		status=1
	fi

	# perf attaches now, while the server is idle; every server thread
	# exists by then (the blocking server's ones are per connection).
	if [ "$status" = 0 ]; then
		perf_begin "$name" "$SERVER_PID" || status=1
	fi

	local ticks_before=0 ticks_after=0 shim_before= shim_after=
	if [ "$status" = 0 ]; then
		shim_before=$(shim_counters "$SERVER_PID")
		ticks_before=$(cpu_ticks "$SERVER_PID")
		echo go >&"$to_loadgen"
		local result_timeout
		result_timeout=$(awk -v d="$DURATION" 'BEGIN { print int(d) + 30 }')
		if read -r -t "$result_timeout" result <&"$from_loadgen" && [[ $result == requests=* ]]; then
			ticks_after=$(cpu_ticks "$SERVER_PID")
			shim_after=$(shim_counters "$SERVER_PID")
		else
			say "bench: $name: loadgen failed: $(cat "$loadgen_err")"
			result=
			status=1
		fi
	fi
	perf_end

	[ "$status" = 0 ] || save_server_state "$SERVER_PID" "$RUN_DIR/$name.server.state"
	# The pipe is gone when loadgen has already exited (after a failure).
	{ echo quit >&"$to_loadgen"; } 2>/dev/null
	wait_bounded "$LOADGEN_PID" 10
	[ "$WAIT_STATUS" = 0 ] || { say "bench: $name: loadgen exited with $WAIT_STATUS: $(cat "$loadgen_err")"; status=1; }
	LOADGEN_PID=

	kill -0 "$SERVER_PID" 2>/dev/null || { say "bench: $name: the server died: $(cat "$server_err")"; status=1; }
	stop_process "$SERVER_PID"
	SERVER_PID=
	[ "$status" = 0 ] || return 1

	local syscalls cpu_seconds ring_bytes ring_enters fallbacks ring_ops kernel_ops
	syscalls=$(perf_count)
	cpu_seconds=$(awk -v t="$ticks_before" -v u="$ticks_after" -v hz="$CLOCK_TICKS" 'BEGIN { printf "%.3f", (u - t) / hz }')
	# Shim counters over the interval: the share of received bytes that went
	# through the ring shows the shim really carried the traffic.
	read -r ring_bytes ring_enters fallbacks ring_ops kernel_ops < <(shim_difference "$shim_before" "$shim_after")
	note_commands "$workload" "$config" "$connections" "${loadgen[@]}"
	note_latency "$workload" "$config" "$connections" "$repetition" histogram "$name.latency"

	if [ "$workload" = blocking ]; then
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$connections" "$repetition" \
			"$cpu_seconds" "$syscalls" "$ring_bytes" "$ring_enters" "$fallbacks" "$MESSAGE_SIZE" "$result" >>"$RUN_DIR/runs.tsv"
		say "  $(printf '%-8s' "$config") conns=$connections run $repetition: $result"
	else
		record_event "$workload" "$config" "$connections" "$repetition" "$cpu_seconds" "$syscalls" \
			"$ring_bytes $ring_enters $fallbacks $ring_ops $kernel_ops" "$result"
	fi
}

# Appends one event-loop run to events.tsv: workload, configuration,
# connections, repetition, server CPU seconds, system calls, the five shim
# counter differences, and the client's result as key=value words (requests,
# rps, p50_us, p99_us at least).
record_event() {
	local workload=$1 config=$2 connections=$3 repetition=$4 cpu_seconds=$5 syscalls=$6 counters=$7 result=$8
	local -a shim
	read -r -a shim <<<"$counters"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$config" "$connections" "$repetition" \
		"$cpu_seconds" "$syscalls" "${shim[0]}" "${shim[1]}" "${shim[2]}" "${shim[3]}" "${shim[4]}" "$result" \
		>>"$RUN_DIR/events.tsv"
	say "  $(printf '%-9s %-8s' "$workload" "$config") conns=$connections run $repetition: $result"
}

# A port nothing listens on, below the ephemeral range so that no client
# connection holds it, for servers that cannot be told to choose one.
free_port() {
	local port attempt
	for attempt in $(seq 50); do
		port=$((20000 + RANDOM % 12000))
		if [ -z "$(ss -Htan "sport = :$port" 2>/dev/null)" ]; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	return 1
}

# Retries a probe command every 0.05 s for up to $1 seconds while the server
# lives.
wait_for_server() {
	local limit=$1 tick
	shift
	for tick in $(seq $((limit * 20))); do
		"$@" >/dev/null 2>&1 && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# Runs a client in the foreground, bounded in time: its output to $2, its
# errors to $3.  Sets CLIENT_STATUS.
run_client() {
	local limit=$1 output=$2 errors=$3
	shift 3
	local -a command=("$@")
	[ "$PIN" = 1 ] && command=(taskset -c 1 "${command[@]}")
	timeout -k 5 "$limit" "${command[@]}" >"$output" 2>"$errors" &
	CLIENT_PID=$!
	wait "$CLIENT_PID"
	CLIENT_STATUS=$?
	CLIENT_PID=
}

# The measured interval of a server driven by an external client: perf,
# CPU time and shim counters around the client's run.  $1 names the run, $2
# is the client's time limit, then the client's command.  Sets
# MEASURED_CPU_SECONDS, MEASURED_SYSCALLS and MEASURED_SHIM (the counter
# differences); returns 1 when the client or perf failed.
measure_external() {
	local name=$1 limit=$2
	shift 2
	local pids ticks_before ticks_after shim_before shim_after status=0
	# Every server process exists by now (nginx forks its workers at start).
	pids=$(process_tree "$SERVER_PID")
	perf_begin "$name" "$pids" || status=1
	if [ "$status" = 0 ]; then
		shim_before=$(shim_counters ${pids//,/ })
		ticks_before=$(cpu_ticks "$SERVER_PID")
		run_client "$limit" "$RUN_DIR/$name.client.out" "$RUN_DIR/$name.client.err" "$@"
		ticks_after=$(cpu_ticks "$SERVER_PID")
		shim_after=$(shim_counters ${pids//,/ })
		if [ "$CLIENT_STATUS" != 0 ]; then
			say "bench: $name: $1 exited with $CLIENT_STATUS: $(tail -n 3 "$RUN_DIR/$name.client.err")"
			status=1
		fi
	fi
	perf_end
	[ "$status" = 0 ] || return 1
	MEASURED_CPU_SECONDS=$(awk -v t="$ticks_before" -v u="$ticks_after" -v hz="$CLOCK_TICKS" 'BEGIN { printf "%.3f", (u - t) / hz }')
	MEASURED_SYSCALLS=$(perf_count)
	MEASURED_SHIM=$(shim_difference "$shim_before" "$shim_after")
}

# Ends the server of an external run; fails when it had died on its own.
finish_server() {
	local name=$1 status=0
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		say "bench: $name: the server died: $(tail -n 5 "$RUN_DIR/$name.server.err" "$RUN_DIR/$name.server.out" 2>/dev/null)"
		status=1
	fi
	stop_process "$SERVER_PID"
	SERVER_PID=
	return "$status"
}

# "calls failed_calls rejected_calls" of one redis command, from INFO
# commandstats.
redis_command_calls() {
	redis-cli -h 127.0.0.1 -p "$1" info commandstats 2>/dev/null | tr -d '\r' | awk -F'[:,=]' -v command="cmdstat_$2" '
		$1 == command {
			for (i = 2; i < NF; i += 2) value[$i] = $(i + 1)
			found = 1
		}
		END { if (found) print value["calls"] + 0, value["failed_calls"] + 0, value["rejected_calls"] + 0 }'
}

# One redis-server run with redis-benchmark: $1 is get or set.  The server
# must have executed exactly the requests the client sent, none failed, and
# the value SET stored must read back whole.
run_redis() {
	local test=$1 config=$2 repetition=$3
	local name=redis-$test-$config-r$repetition status=0 port
	port=$(free_port) || { say "bench: $name: no free port"; return 1; }
	launch_server "$config" "$RUN_DIR/$name.server.out" "$RUN_DIR/$name.server.err" \
		redis-server --port "$port" --bind 127.0.0.1 --protected-mode no --daemonize no \
		--save '' --appendonly no --dir "$WORK" --logfile ''
	if ! wait_for_server 10 redis-cli -h 127.0.0.1 -p "$port" ping; then
		say "bench: $name: redis-server did not start: $(tail -n 5 "$RUN_DIR/$name.server.out" "$RUN_DIR/$name.server.err")"
		finish_server "$name"
		return 1
	fi

	# Without --csv: its output then holds the latency distribution, for
	# the report's plots, besides the summary the table reads.
	local -a benchmark=(redis-benchmark -h 127.0.0.1 -p "$port" -c "$REDIS_CONNECTIONS" -t "$test" -d 3)
	local warmup_requests
	warmup_requests=$(awk -v w="$WARMUP" 'BEGIN { n = int(w * 20000); print n < 5000 ? 5000 : n }')
	run_client 60 "$RUN_DIR/$name.warmup.out" "$RUN_DIR/$name.warmup.err" "${benchmark[@]}" -n "$warmup_requests"
	[ "$CLIENT_STATUS" = 0 ] || { say "bench: $name: warm-up failed: $(tail -n 3 "$RUN_DIR/$name.warmup.err")"; status=1; }

	local calls_before= calls_after=
	if [ "$status" = 0 ]; then
		calls_before=$(redis_command_calls "$port" "$test")
		measure_external "$name" 300 "${benchmark[@]}" -n "$REDIS_REQUESTS" || status=1
	fi
	local output=$RUN_DIR/$name.client.out result=
	if [ "$status" = 0 ]; then
		calls_after=$(redis_command_calls "$port" "$test")
		# Its closing summary:
		#   throughput summary: RPS requests per second
		#   latency summary (msec):
		#           avg       min       p50       p95       p99       max
		#         0.386     0.104     0.359     0.503     0.991     4.719
		result=$(tr '\r' '\n' <"$output" | awk -v requests="$REDIS_REQUESTS" '
			/^ *throughput summary: [0-9.]+ requests per second/ { rps = $3 }
			/^ *avg +min +p50 +p95 +p99 +max *$/ { header = 1; next }
			header && NF == 6 { mean = $1; p50 = $3; p99 = $5; header = 0 }
			END {
				if (rps > 0 && p50 != "")
					printf "requests=%d seconds=%.3f rps=%s p50_us=%.1f p99_us=%.1f mean_us=%.1f", requests, requests / rps, rps, p50 * 1000, p99 * 1000, mean * 1000
			}')
		local executed
		executed=$(awk -v b="${calls_before:-x}" -v a="${calls_after:-x}" 'BEGIN {
			if (split(b, before, " ") != 3 || split(a, after, " ") != 3) { print "unknown"; exit }
			printf "calls=%d failed=%d rejected=%d", after[1] - before[1], after[2] - before[2], after[3] - before[3] }')
		if [ -z "$result" ]; then
			say "bench: $name: no result from redis-benchmark: $(head -c 300 "$output")"
			status=1
		elif grep -qi error "$output" "$RUN_DIR/$name.client.err"; then
			say "bench: $name: redis-benchmark reported errors: $(grep -hi error "$output" "$RUN_DIR/$name.client.err" | head -n 3)"
			status=1
		elif [ "$executed" != "calls=$REDIS_REQUESTS failed=0 rejected=0" ]; then
			say "bench: $name: the server executed $executed for $REDIS_REQUESTS requests sent"
			status=1
		elif [ "$test" = set ] && [ "$(redis-cli -h 127.0.0.1 -p "$port" strlen key:__rand_int__ 2>&1)" != 3 ]; then
			say "bench: $name: the value SET does not read back as 3 bytes"
			status=1
		fi
	fi
	[ "$status" = 0 ] || save_server_state "$SERVER_PID" "$RUN_DIR/$name.server.state"
	finish_server "$name" || status=1
	[ "$status" = 0 ] || return 1
	record_event "redis-$test" "$config" "$REDIS_CONNECTIONS" "$repetition" "$MEASURED_CPU_SECONDS" \
		"$MEASURED_SYSCALLS" "$MEASURED_SHIM" "$result"
	note_commands "redis-$test" "$config" "$REDIS_CONNECTIONS" "${benchmark[@]}" -n "$REDIS_REQUESTS"
	note_latency "redis-$test" "$config" "$REDIS_CONNECTIONS" "$repetition" redis-benchmark "$name.client.out"
}

# The nginx configuration and document root, made once per bench run.
# Workers run as nginx's default user (nobody), so the tree must be readable
# by everyone.
NGINX_DIR=
prepare_nginx() {
	NGINX_DIR=$WORK/nginx
	mkdir -p "$NGINX_DIR/html" "$NGINX_DIR/logs" || return 1
	chmod 755 "$WORK" "$NGINX_DIR" "$NGINX_DIR/html"
	# The workers publish their shim counters after dropping root.
	chmod 1777 "$STATS_DIR"
	head -c "$NGINX_FILE_SIZE" /dev/urandom >"$NGINX_DIR/html/file.bin" || return 1
	chmod 644 "$NGINX_DIR/html/file.bin"
}

write_nginx_config() {
	local port=$1 variable
	{
		printf 'worker_processes %s;\ndaemon off;\nmaster_process on;\n' "$NGINX_WORKERS"
		printf 'pid %s/nginx.pid;\nerror_log %s/logs/error.log warn;\n' "$NGINX_DIR" "$NGINX_DIR"
		# nginx clears its workers' environment: the shim's settings must
		# be named to reach them.
		for variable in RINGSTEER_STATS_DIR $(compgen -e | grep '^RINGSTEER_' || true); do
			printf 'env %s;\n' "$variable"
		done
		printf 'events { worker_connections 4096; }\n'
		printf 'http {\n'
		printf '    access_log off;\n    sendfile on;\n    tcp_nopush on;\n'
		printf '    default_type application/octet-stream;\n'
		# Keep-alive connections stay up for the whole run.
		printf '    keepalive_timeout 120s;\n    keepalive_requests 100000000;\n'
		# Opening, stating and closing the file per request are not socket
		# calls the shim could carry: cached, as production configurations
		# do, they do not hide what the shim changes.
		[ "$NGINX_OPEN_FILE_CACHE" = 1 ] && printf '    open_file_cache max=1000 inactive=120s;\n'
		for variable in client_body proxy fastcgi uwsgi scgi; do
			printf '    %s_temp_path %s/%s_temp;\n' "$variable" "$NGINX_DIR" "$variable"
		done
		if [ -n "${NGINX_UPSTREAM_PORT:-}" ]; then
			# A reverse proxy with upstream connections kept alive,
			# as many as the clients can use at once.
			printf '    upstream backend {\n        server 127.0.0.1:%s;\n        keepalive %s;\n    }\n' \
				"$NGINX_UPSTREAM_PORT" $((NGINX_CONNECTIONS * 2))
			printf '    server {\n        listen 127.0.0.1:%s;\n        location / {\n' "$port"
			printf '            proxy_pass http://backend;\n            proxy_http_version 1.1;\n'
			printf '            proxy_set_header Connection "";\n        }\n    }\n}\n'
		else
			printf '    server {\n        listen 127.0.0.1:%s;\n        root %s/html;\n    }\n}\n' "$port" "$NGINX_DIR"
		fi
	} >"$NGINX_DIR/nginx.conf"
}

# The haproxy workload's configuration, in front of the backend.
write_haproxy_config() {
	cat >"$NGINX_DIR/haproxy.cfg" <<CONF
global
    maxconn 8192
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend web
    bind 127.0.0.1:$1
    default_backend servers
backend servers
    server nginx 127.0.0.1:$NGINX_UPSTREAM_PORT
CONF
}

# The proxy workload's backend: a plain nginx (one worker, never measured)
# serving the same file from a directory of its own.  Sets BACKEND_PID and
# NGINX_UPSTREAM_PORT.
start_backend() {
	local directory=$WORK/nginx-backend port
	mkdir -p "$directory/logs" || return 1
	port=$(free_port) || return 1
	{
		printf 'worker_processes 1;\ndaemon off;\nmaster_process on;\n'
		printf 'pid %s/nginx.pid;\nerror_log %s/logs/error.log warn;\n' "$directory" "$directory"
		printf 'events { worker_connections 4096; }\nhttp {\n    access_log off;\n    sendfile on;\n'
		printf '    keepalive_timeout 120s;\n    keepalive_requests 100000000;\n'
		printf '    open_file_cache max=1000 inactive=120s;\n'
		for variable in client_body proxy fastcgi uwsgi scgi; do
			printf '    %s_temp_path %s/%s_temp;\n' "$variable" "$directory" "$variable"
		done
		printf '    server {\n        listen 127.0.0.1:%s;\n        root %s/html;\n    }\n}\n' "$port" "$NGINX_DIR"
	} >"$directory/nginx.conf"
	nginx -p "$directory" -c "$directory/nginx.conf" -e "$directory/logs/error.log" \
		>"$RUN_DIR/proxy-backend.out" 2>"$RUN_DIR/proxy-backend.err" &
	BACKEND_PID=$!
	NGINX_UPSTREAM_PORT=$port
	wait_for_server 10 nginx_serves_file "http://127.0.0.1:$port/file.bin"
}

stop_backend() {
	[ -n "${BACKEND_PID:-}" ] || return 0
	kill "$BACKEND_PID" 2>/dev/null
	wait "$BACKEND_PID" 2>/dev/null
	BACKEND_PID=
	NGINX_UPSTREAM_PORT=
}

# Fetches the file and compares it byte for byte with the original.
nginx_serves_file() {
	curl -sf --max-time 5 "$1" -o "$NGINX_DIR/fetched.bin" && cmp -s "$NGINX_DIR/fetched.bin" "$NGINX_DIR/html/file.bin"
}

# Converts wrk's latency ("512.00us", "1.20ms", "2.00s") to microseconds.
wrk_microseconds() {
	awk -v value="$1" 'BEGIN {
		number = value + 0
		if (value ~ /us$/) print number
		else if (value ~ /ms$/) print number * 1000
		else if (value ~ /s$/) print number * 1000000
		else print "na"
	}'
}

# One nginx run with wrk over keep-alive connections: every response 2xx, no
# socket error, and the file fetched whole before and after.  WORKLOAD is
# nginx (static files), proxy (nginx as a reverse proxy in front of the
# backend, with RINGSTEER_CLIENT=1 so that the shim also carries the
# upstream connections) or haproxy (haproxy in front of the backend, the
# same way).
run_nginx() {
	local config=$1 repetition=$2 workload=${3:-nginx}
	local name=$workload-$config-r$repetition status=0 port url
	local -a launcher=()
	port=$(free_port) || { say "bench: $name: no free port"; return 1; }
	url=http://127.0.0.1:$port/file.bin
	if [ "$workload" = haproxy ]; then
		write_haproxy_config "$port"
		launch_server "$config" "$RUN_DIR/$name.server.out" "$RUN_DIR/$name.server.err" \
			env RINGSTEER_CLIENT=1 haproxy -db -f "$NGINX_DIR/haproxy.cfg"
	else
		write_nginx_config "$port"
		[ "$workload" = proxy ] && launcher=(env RINGSTEER_CLIENT=1)
		launch_server "$config" "$RUN_DIR/$name.server.out" "$RUN_DIR/$name.server.err" \
			"${launcher[@]}" nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/logs/error.log"
	fi
	if ! wait_for_server 10 nginx_serves_file "$url"; then
		say "bench: $name: nginx did not serve the file: $(tail -n 5 "$RUN_DIR/$name.server.err" "$NGINX_DIR/logs/error.log")"
		finish_server "$name"
		return 1
	fi
	# wrk takes whole seconds.
	local warmup_seconds
	warmup_seconds=$(awk -v w="$WARMUP" 'BEGIN { s = int(w + 0.5); print s < 1 ? 1 : s }')
	local -a wrk=(wrk -t "$WRK_THREADS" -c "$NGINX_CONNECTIONS" --latency "$url")
	run_client $((warmup_seconds + 30)) "$RUN_DIR/$name.warmup.out" "$RUN_DIR/$name.warmup.err" "${wrk[@]}" -d "${warmup_seconds}s"
	[ "$CLIENT_STATUS" = 0 ] || { say "bench: $name: warm-up failed: $(tail -n 3 "$RUN_DIR/$name.warmup.err")"; status=1; }

	local duration_seconds
	duration_seconds=$(awk -v d="$DURATION" 'BEGIN { s = int(d + 0.5); print s < 1 ? 1 : s }')
	if [ "$status" = 0 ]; then
		measure_external "$name" $((duration_seconds + 30)) "${wrk[@]}" -d "${duration_seconds}s" || status=1
	fi
	local output=$RUN_DIR/$name.client.out result=
	if [ "$status" = 0 ]; then
		local requests rps p50 p99 errors non_success
		requests=$(awk '/requests in/ { print $1; exit }' "$output")
		rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$output")
		p50=$(wrk_microseconds "$(awk '$1 == "50%" { print $2; exit }' "$output")")
		p99=$(wrk_microseconds "$(awk '$1 == "99%" { print $2; exit }' "$output")")
		errors=$(awk '/Socket errors:/ { gsub(/,/, ""); print $4 + $6 + $8 + $10; exit }' "$output")
		non_success=$(awk '/Non-2xx or 3xx responses:/ { print $NF; exit }' "$output")
		if [ -z "$requests" ] || [ -z "$rps" ] || [ "$p50" = na ] || [ "$p99" = na ]; then
			say "bench: $name: no result from wrk: $(head -c 300 "$output")"
			status=1
		elif [ "${errors:-0}" != 0 ] || [ "${non_success:-0}" != 0 ]; then
			say "bench: $name: wrk saw ${errors:-0} socket errors and ${non_success:-0} non-2xx responses"
			status=1
		elif ! nginx_serves_file "$url"; then
			say "bench: $name: the file fetched after the run differs from the original"
			status=1
		elif grep -qE '\[(alert|crit|emerg)\]' "$NGINX_DIR/logs/error.log"; then
			say "bench: $name: nginx logged: $(grep -E '\[(alert|crit|emerg)\]' "$NGINX_DIR/logs/error.log" | tail -n 3)"
			status=1
		elif grep -qE '\[(ALERT|EMERG)\]' "$RUN_DIR/$name.server.err"; then
			say "bench: $name: haproxy logged: $(grep -E '\[(ALERT|EMERG)\]' "$RUN_DIR/$name.server.err" | tail -n 3)"
			status=1
		fi
		result=$(awk -v n="$requests" -v r="$rps" -v a="$p50" -v b="$p99" -v s="$duration_seconds" 'BEGIN {
			printf "requests=%d seconds=%s rps=%s p50_us=%.1f p99_us=%.1f", n, s, r, a, b }')
	fi
	[ "$status" = 0 ] || save_server_state "$SERVER_PID" "$RUN_DIR/$name.server.state"
	finish_server "$name" || status=1
	# Each run starts from an empty log, so a message is charged to its run.
	cat "$NGINX_DIR/logs/error.log" >>"$RUN_DIR/$name.server.err" 2>/dev/null
	: >"$NGINX_DIR/logs/error.log"
	[ "$status" = 0 ] || return 1
	record_event "$workload" "$config" "$NGINX_CONNECTIONS" "$repetition" "$MEASURED_CPU_SECONDS" \
		"$MEASURED_SYSCALLS" "$MEASURED_SHIM" "$result"
	note_commands "$workload" "$config" "$NGINX_CONNECTIONS" "${wrk[@]}" -d "${duration_seconds}s"
	note_latency "$workload" "$config" "$NGINX_CONNECTIONS" "$repetition" wrk "$name.client.out"
}

# Medians over repetitions, ratios and targets, as a markdown table.
summarize() {
	awk -F'\t' -v shim_label="$SHIM_LABEL" -v target_syscalls="$TARGET_SYSCALLS_RATIO" \
		-v target_rps="$TARGET_RPS_RATIO" -v connection_list="$CONNECTIONS" '
	function field(text, key,    parts, count, i, pair) {
		count = split(text, parts, " ")
		for (i = 1; i <= count; i++) {
			split(parts[i], pair, "=")
			if (pair[1] == key) return pair[2]
		}
		return ""
	}
	function median(key,    count, i, j, swap, values) {
		count = split(samples[key], values, " ")
		if (count == 0 || values[1] == "na") return "na"
		for (i = 2; i <= count; i++)
			for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) {
				swap = values[j]; values[j] = values[j - 1]; values[j - 1] = swap
			}
		return (count % 2) ? values[(count + 1) / 2] : (values[count / 2] + values[count / 2 + 1]) / 2
	}
	function add(config, connections, metric, value,    key) {
		key = config SUBSEP connections SUBSEP metric
		samples[key] = (key in samples) ? samples[key] " " value : value
		by_run[config, connections, metric, repetition] = value
	}
	# The machine drifts over minutes, so a ratio of medians mixes that
	# drift in: each shim run is compared with the plain run next to it
	# (same repetition) and the median of those ratios is reported.
	function paired_ratio(connections, metric,    r, key, plain_value, shim_value) {
		key = connections SUBSEP metric
		delete samples["pairs" SUBSEP key]
		for (r = 1; r <= repetitions; r++) {
			if (!(("plain", connections, metric, r) in by_run) || !(("shim", connections, metric, r) in by_run))
				continue
			plain_value = by_run["plain", connections, metric, r]
			shim_value = by_run["shim", connections, metric, r]
			if (plain_value == "na" || shim_value == "na" || plain_value + 0 == 0)
				continue
			samples["pairs" SUBSEP key] = (("pairs" SUBSEP key) in samples) ? \
				samples["pairs" SUBSEP key] " " shim_value / plain_value : shim_value / plain_value
		}
		if (!(("pairs" SUBSEP key) in samples))
			return "na"
		return sprintf("%.2fx", median("pairs" SUBSEP key))
	}
	function show(value, format) { return value == "na" ? "n/a" : sprintf(format, value) }
	{
		config = $1; connections = $2; repetition = $3; cpu = $4; syscalls = $5; ring = $6; enters = $7; size = $9
		requests = field($10, "requests") + 0
		add(config, connections, "rps", field($10, "rps"))
		add(config, connections, "p50", field($10, "p50_us"))
		add(config, connections, "p99", field($10, "p99_us"))
		add(config, connections, "cpu", requests > 0 ? cpu * 1e6 / requests : "na")
		add(config, connections, "syscalls", (syscalls == "na" || requests == 0) ? "na" : syscalls / requests)
		add(config, connections, "ring", (ring == "na" || requests == 0) ? "na" : 100 * ring / (requests * size))
		add(config, connections, "enters", (enters == "na" || requests == 0) ? "na" : enters / requests)
		rps_values[config, connections] = rps_values[config, connections] " " field($10, "rps")
		if (repetition + 0 > repetitions) repetitions = repetition + 0
	}
	END {
		print "| config | conns | rps | rps range | p50 us | p99 us | CPU us/req | syscalls/req |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|"
		count = split(connection_list, connection_values, " ")
		for (c = 1; c <= count; c++) {
			connections = connection_values[c]
			for (k = 1; k <= 2; k++) {
				config = (k == 1) ? "plain" : "shim"
				n = split(rps_values[config, connections], runs, " ")
				low = high = runs[1]
				for (i = 2; i <= n; i++) { if (runs[i] + 0 < low + 0) low = runs[i]; if (runs[i] + 0 > high + 0) high = runs[i] }
				printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", (k == 1) ? "plain" : shim_label, connections,
					show(median(config SUBSEP connections SUBSEP "rps"), "%.0f"), n ? low "-" high : "n/a",
					show(median(config SUBSEP connections SUBSEP "p50"), "%.1f"),
					show(median(config SUBSEP connections SUBSEP "p99"), "%.1f"),
					show(median(config SUBSEP connections SUBSEP "cpu"), "%.2f"),
					show(median(config SUBSEP connections SUBSEP "syscalls"), "%.3f")
			}
			for (m = 1; m <= 5; m++) {
				metric = (m == 1) ? "rps" : (m == 2) ? "p50" : (m == 3) ? "p99" : (m == 4) ? "cpu" : "syscalls"
				value[metric] = paired_ratio(connections, metric)
			}
			printf "| **%s/plain** | %s | **%s** | | %s | %s | %s | **%s** |\n", shim_label, connections,
				value["rps"], value["p50"], value["p99"], value["cpu"], value["syscalls"]
			rps_ratio[connections] = value["rps"]; syscalls_ratio[connections] = value["syscalls"]
		}
		printf "| target | | >= %.2fx | | | | | <= %.2fx |\n", target_rps, target_syscalls
		print ""
		print "Rows: medians over the runs. Ratio rows: median of the ratios of each shim run to the plain run next to it."
		print ""
		for (c = 1; c <= count; c++) {
			connections = connection_values[c]
			verdict_rps = rps_ratio[connections] == "na" ? "n/a" : (rps_ratio[connections] + 0 >= target_rps ? "met" : "missed")
			verdict_syscalls = syscalls_ratio[connections] == "na" ? "n/a" : (syscalls_ratio[connections] + 0 <= target_syscalls ? "met" : "missed")
			printf "- %s connection(s): throughput %s (target >= %.2fx: %s), system calls %s (target <= %.2fx: %s)\n",
				connections, rps_ratio[connections], target_rps, verdict_rps,
				syscalls_ratio[connections], target_syscalls, verdict_syscalls
			ring = median("shim" SUBSEP connections SUBSEP "ring")
			if (ring != "na")
				printf "  shim check: %.1f%% of received bytes went through the ring, %.3f io_uring_enter per request\n",
					ring, median("shim" SUBSEP connections SUBSEP "enters")
		}
	}' "$RUN_DIR/runs.tsv"
}

# The event-loop table: per workload and connection count, the medians of
# each configuration, the paired ratios shim/plain and shim/native, then each
# target of issue 3 with its verdict and the shim's own counters.
summarize_events() {
	awk -F'\t' -v shim_label="$SHIM_LABEL" -v target_connections="$EVENT_TARGET_CONNECTIONS" \
		-v target_syscalls="$TARGET_EVENT_SYSCALLS_PER_REQUEST" -v target_cpu="$TARGET_EVENT_CPU_RATIO" \
		-v target_cpu_native="$TARGET_EVENT_CPU_NATIVE_RATIO" -v target_rps="$TARGET_EVENT_RPS_RATIO" \
		-v target_p50="$TARGET_EVENT_P50_RATIO" '
	function field(text, key,    parts, count, i, pair) {
		count = split(text, parts, " ")
		for (i = 1; i <= count; i++) {
			split(parts[i], pair, "=")
			if (pair[1] == key) return pair[2]
		}
		return ""
	}
	function median(list,    count, i, j, swap, values) {
		count = split(list, values, " ")
		if (count == 0) return "na"
		for (i = 2; i <= count; i++)
			for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) {
				swap = values[j]; values[j] = values[j - 1]; values[j - 1] = swap
			}
		return (count % 2) ? values[(count + 1) / 2] : (values[count / 2] + values[count / 2 + 1]) / 2
	}
	function add(group, config, metric, value) {
		if (value == "na" || value == "") return
		list[group, config, metric] = ((group, config, metric) in list) ? list[group, config, metric] " " value : value
		by_run[group, config, metric, repetition] = value
	}
	function middle(group, config, metric) {
		return ((group, config, metric) in list) ? median(list[group, config, metric]) : "na"
	}
	# Each run against the run of the other configuration made next to it
	# (same repetition): the median of those ratios resists drift.
	function paired(group, config, reference, metric,    r, ratios, a, b) {
		ratios = ""
		for (r = 1; r <= repetitions; r++) {
			if (!((group, config, metric, r) in by_run) || !((group, reference, metric, r) in by_run)) continue
			a = by_run[group, config, metric, r]; b = by_run[group, reference, metric, r]
			if (b + 0 == 0) continue
			ratios = ratios == "" ? a / b : ratios " " a / b
		}
		return ratios == "" ? "na" : median(ratios)
	}
	function show(value, format) { return value == "na" ? "n/a" : sprintf(format, value) }
	function verdict(value, limit, at_most) {
		if (value == "na") return "n/a"
		return (at_most ? value + 0 <= limit + 0 : value + 0 >= limit + 0) ? "met" : "missed"
	}
	{
		workload = $1; config = $2; connections = $3; repetition = $4 + 0
		group = workload SUBSEP connections
		if (!(group in seen)) { seen[group] = 1; order[++groups] = group; group_workload[groups] = workload; group_connections[groups] = connections }
		present[group, config] = 1
		if (repetition > repetitions) repetitions = repetition
		requests = field($12, "requests") + 0
		add(group, config, "rps", field($12, "rps"))
		add(group, config, "p50", field($12, "p50_us"))
		add(group, config, "p99", field($12, "p99_us"))
		if (requests > 0) {
			add(group, config, "cpu", $5 * 1e6 / requests)
			if ($6 != "na") add(group, config, "syscalls", $6 / requests)
			if ($7 != "na") add(group, config, "ring_bytes", $7 / requests)
			if ($8 != "na") add(group, config, "enters", $8 / requests)
			if ($10 != "na") add(group, config, "ring_ops", $10 / requests)
			if ($11 != "na") add(group, config, "kernel_ops", $11 / requests)
			if ($9 != "na") add(group, config, "fallbacks", $9)
		}
		rps_runs[group, config] = rps_runs[group, config] " " field($12, "rps")
	}
	END {
		if (groups == 0) exit
		print "| workload | conns | config | rps | rps range | p50 us | p99 us | CPU us/req | syscalls/req |"
		print "|---|---:|---|---:|---:|---:|---:|---:|---:|"
		for (g = 1; g <= groups; g++) {
			group = order[g]
			for (k = 1; k <= 3; k++) {
				config = (k == 1) ? "plain" : (k == 2) ? "shim" : "native"
				if (!((group, config) in present)) continue
				n = split(rps_runs[group, config], runs, " ")
				low = high = runs[1]
				for (i = 2; i <= n; i++) { if (runs[i] + 0 < low + 0) low = runs[i]; if (runs[i] + 0 > high + 0) high = runs[i] }
				printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", group_workload[g], group_connections[g],
					(k == 2) ? shim_label : config,
					show(middle(group, config, "rps"), "%.0f"), n ? sprintf("%.0f-%.0f", low, high) : "n/a",
					show(middle(group, config, "p50"), "%.1f"), show(middle(group, config, "p99"), "%.1f"),
					show(middle(group, config, "cpu"), "%.2f"), show(middle(group, config, "syscalls"), "%.3f")
			}
			for (k = 1; k <= 2; k++) {
				reference = (k == 1) ? "plain" : "native"
				if (!((group, reference) in present) || !((group, "shim") in present)) continue
				printf "| %s | %s | **%s/%s** | **%s** | | %s | %s | **%s** | %s |\n", group_workload[g], group_connections[g],
					shim_label, reference,
					show(paired(group, "shim", reference, "rps"), "%.2fx"), show(paired(group, "shim", reference, "p50"), "%.2fx"),
					show(paired(group, "shim", reference, "p99"), "%.2fx"), show(paired(group, "shim", reference, "cpu"), "%.2fx"),
					show(paired(group, "shim", reference, "syscalls"), "%.2fx")
			}
		}
		print ""
		print "Rows: medians over the runs. Ratio rows: median of the ratios of each shim run to the run next to it."
		printf "Targets (issue 3; printed, not checked): throughput >= %.2fx plain and p50 <= %.2fx plain everywhere; from %d connections on, syscalls/req <= %.2f, CPU/req <= %.2fx plain and <= %.2fx native.\n",
			target_rps, target_p50, target_connections, target_syscalls, target_cpu, target_cpu_native
		print ""
		for (g = 1; g <= groups; g++) {
			group = order[g]
			if (!((group, "shim") in present) || !((group, "plain") in present)) continue
			rps = paired(group, "shim", "plain", "rps"); p50 = paired(group, "shim", "plain", "p50")
			line = sprintf("- %s, %s connection(s): throughput %s (>= %.2fx: %s), p50 %s (<= %.2fx: %s)",
				group_workload[g], group_connections[g], show(rps, "%.2fx"), target_rps, verdict(rps, target_rps, 0),
				show(p50, "%.2fx"), target_p50, verdict(p50, target_p50, 1))
			if (group_connections[g] + 0 >= target_connections) {
				syscalls = middle(group, "shim", "syscalls"); cpu = paired(group, "shim", "plain", "cpu")
				line = line sprintf(", syscalls/req %s (<= %.2f: %s), CPU %s (<= %.2fx: %s)",
					show(syscalls, "%.3f"), target_syscalls, verdict(syscalls, target_syscalls, 1),
					show(cpu, "%.2fx"), target_cpu, verdict(cpu, target_cpu, 1))
				if ((group, "native") in present) {
					cpu_native = paired(group, "shim", "native", "cpu")
					line = line sprintf(", CPU vs native %s (<= %.2fx: %s)", show(cpu_native, "%.2fx"),
						target_cpu_native, verdict(cpu_native, target_cpu_native, 1))
				}
			}
			print line
			if ((group, "shim", "enters") in list)
				printf "  shim check, per request: %.3f operations on the ring, %.3f on the kernel path, %.1f bytes received through the ring, %.3f io_uring_enter; %s fallbacks\n",
					middle(group, "shim", "ring_ops"), middle(group, "shim", "kernel_ops"),
					middle(group, "shim", "ring_bytes"), middle(group, "shim", "enters"),
					show(middle(group, "shim", "fallbacks"), "%d")
		}
	}' "$RUN_DIR/events.tsv"
}

count_words() { set -- $1; echo $#; }
runs=0
if wanted blocking; then
	for connections in $CONNECTIONS; do runs=$((runs + 2 * REPEAT)); done
fi
wanted epoll && runs=$((runs + 3 * EVENT_REPEAT * $(count_words "$EVENT_CONNECTIONS")))
wanted redis && runs=$((runs + 4 * EVENT_REPEAT))
wanted nginx && runs=$((runs + 2 * EVENT_REPEAT))
wanted proxy && runs=$((runs + 2 * EVENT_REPEAT))
wanted haproxy && runs=$((runs + 2 * EVENT_REPEAT))
say "bench: $WORKLOADS: plain vs $SHIM_LABEL, $runs runs of ${WARMUP}s warm-up + ${DURATION}s; results in $RUN_DIR"
{
	printf 'date=%s server=%s server_args=%s shim_lib=%s duration=%s warmup=%s repeat=%s size=%s loadgen_threads=%s pin=%s perf=%s\n' \
		"$STAMP" "$SERVER" "$SERVER_ARGS" "${SHIM_LIB:-none}" "$DURATION" "$WARMUP" "$REPEAT" "$MESSAGE_SIZE" \
		"$LOADGEN_THREADS" "$PIN" "${PERF:-none}"
	printf 'workloads=%s event_repeat=%s event_connections=%s epoll_threads=%s redis_connections=%s redis_requests=%s nginx_connections=%s nginx_workers=%s nginx_file_size=%s nginx_open_file_cache=%s wrk_threads=%s\n' \
		"$WORKLOADS" "$EVENT_REPEAT" "$EVENT_CONNECTIONS" "$EPOLL_THREADS" "$REDIS_CONNECTIONS" "$REDIS_REQUESTS" \
		"$NGINX_CONNECTIONS" "$NGINX_WORKERS" "$NGINX_FILE_SIZE" "$NGINX_OPEN_FILE_CACHE" "$WRK_THREADS"
	uname -r
	git -C "$REPO" rev-parse --short HEAD 2>/dev/null
	redis-server --version 2>/dev/null
	nginx -v 2>&1
} >"$RUN_DIR/setup.txt"

# ABBA order: odd repetitions run the configurations in the given order,
# even ones in reverse, so each configuration is as often first as last.
ordered() {
	local repetition=$1
	shift
	if [ $((repetition % 2)) = 1 ]; then
		echo "$@"
	else
		local -a reversed=()
		local config
		for config in "$@"; do reversed=("$config" "${reversed[@]}"); done
		echo "${reversed[@]}"
	fi
}

failures=0
if wanted blocking; then
	say "bench: blocking: $(basename "$SERVER"), $MESSAGE_SIZE-byte messages"
	for connections in $CONNECTIONS; do
		for repetition in $(seq "$REPEAT"); do
			for config in $(ordered "$repetition" plain shim); do
				run_one blocking "$config" "$connections" "$repetition" || failures=$((failures + 1))
			done
		done
	done
fi
if wanted epoll; then
	say "bench: epoll: echo_epoll ($EPOLL_THREADS loop(s)) plain and under the shim, echo_uring native"
	for connections in $EVENT_CONNECTIONS; do
		for repetition in $(seq "$EVENT_REPEAT"); do
			for config in $(ordered "$repetition" plain shim native); do
				run_one epoll "$config" "$connections" "$repetition" || failures=$((failures + 1))
			done
		done
	done
fi
if wanted redis; then
	say "bench: redis: redis-benchmark GET and SET, $REDIS_CONNECTIONS connections, $REDIS_REQUESTS requests per run"
	for test in get set; do
		for repetition in $(seq "$EVENT_REPEAT"); do
			for config in $(ordered "$repetition" plain shim); do
				run_redis "$test" "$config" "$repetition" || failures=$((failures + 1))
			done
		done
	done
fi
if wanted nginx; then
	say "bench: nginx: $NGINX_WORKERS workers, $NGINX_FILE_SIZE-byte file, wrk with $NGINX_CONNECTIONS keep-alive connections"
	prepare_nginx || fail "cannot prepare the nginx document root in $WORK"
	for repetition in $(seq "$EVENT_REPEAT"); do
		for config in $(ordered "$repetition" plain shim); do
			run_nginx "$config" "$repetition" || failures=$((failures + 1))
		done
	done
fi
for workload in proxy haproxy; do
	wanted $workload || continue
	if [ $workload = proxy ]; then
		say "bench: proxy: nginx ($NGINX_WORKERS workers) as a reverse proxy with kept-alive upstream connections to a plain nginx, $NGINX_FILE_SIZE-byte file, wrk with $NGINX_CONNECTIONS connections"
	else
		say "bench: haproxy: haproxy (HTTP, its default threads, server connections kept alive) in front of a plain nginx, $NGINX_FILE_SIZE-byte file, wrk with $NGINX_CONNECTIONS connections"
	fi
	[ -n "${NGINX_DIR:-}" ] || prepare_nginx || fail "cannot prepare the nginx document root in $WORK"
	if start_backend; then
		for repetition in $(seq "$EVENT_REPEAT"); do
			for config in $(ordered "$repetition" plain shim); do
				run_nginx "$config" "$repetition" $workload || failures=$((failures + 1))
			done
		done
	else
		say "bench: $workload: the backend nginx did not serve the file: $(tail -n 3 "$RUN_DIR/proxy-backend.err")"
		failures=$((failures + 1))
	fi
	stop_backend
done

[ -s "$RUN_DIR/runs.tsv" ] || [ -s "$RUN_DIR/events.tsv" ] || fail "no run succeeded"
[ -s "$RUN_DIR/runs.tsv" ] && summarize >"$RUN_DIR/blocking.md"
[ -s "$RUN_DIR/events.tsv" ] && summarize_events >"$RUN_DIR/events.md"
{
	if [ -s "$RUN_DIR/runs.tsv" ]; then
		printf '## ringsteer bench %s: %s, %s-byte messages, %s x %ss per configuration\n\n' \
			"$STAMP" "$(basename "$SERVER")" "$MESSAGE_SIZE" "$REPEAT" "$DURATION"
		cat "$RUN_DIR/blocking.md"
	fi
	if [ -s "$RUN_DIR/events.tsv" ]; then
		[ -s "$RUN_DIR/runs.tsv" ] && printf '\n'
		printf '## event-loop servers %s: echo_epoll (%s loop(s), %s-byte messages; native: echo_uring), redis-server, nginx (%s workers, %s-byte file); %s x %ss per configuration\n\n' \
			"$STAMP" "$EPOLL_THREADS" "$MESSAGE_SIZE" "$NGINX_WORKERS" "$NGINX_FILE_SIZE" "$EVENT_REPEAT" "$DURATION"
		cat "$RUN_DIR/events.md"
	fi
	[ "$SHIM_LABEL" = shim-off ] && printf '\n(SHIM_LIB was empty: the "shim-off" rows ran without the shim.)\n'
} >"$RUN_DIR/summary.md"
[ -n "${BENCH_OUT:-}" ] || cp "$RUN_DIR/summary.md" "$RESULTS_DIR/latest.md"
cat "$RUN_DIR/summary.md"
if [ "$failures" != 0 ]; then
	say "bench: $failures run(s) failed; see $RUN_DIR"
	exit 1
fi
