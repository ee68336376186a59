#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make bench: a blocking echo server, plain and under the ringsteer shim, in
# one run, at 1 and 50 connections.  Each run starts a fresh server, warms it
# up with loadgen, and then measures over exactly the same interval
# (loadgen's gated mode keeps the server idle outside it): requests/s and
# latency from loadgen, server CPU time from /proc/PID/stat (utime+stime,
# including reaped children) and server system calls from perf's
# raw_syscalls:sys_enter tracepoint.  Plain and shim runs alternate (ABBA) so
# drift on a noisy machine hits both alike; the table shows medians and the
# shim/plain ratios next to the targets of issue 2.  It is a benchmark, not a
# test: targets are printed, never asserted.  A failed run (wrong echo,
# crashed server) makes it exit non-zero.
#
# Environment:
#   QUICK=1          short runs (2 s, one repetition) to check the harness
#   DURATION=S       measured seconds per run (default 5; QUICK: 2)
#   WARMUP=S         warm-up seconds per run (default 1; QUICK: 0.5)
#   REPEAT=N         runs per configuration (default 6; QUICK: 1): many
#                    short alternating runs resist this machine's drift
#                    better than a few long ones
#   CONNECTIONS="1 50"  connection counts
#   MESSAGE_SIZE=64  bytes per request
#   LOADGEN_THREADS=1  loadgen threads (1 or 2)
#   SERVER=PATH      echo server (default tests/servers/echo_threaded when
#                    built, else tools/bench/echo_blocking)
#   SERVER_ARGS=...  extra server arguments (default for echo_threaded:
#                    "-m read -b 65536", plain read/write with one buffer
#                    size, instead of its rotating test mode)
#   SHIM_LIB=PATH    library for the shim column (default
#                    preload/libringsteer.so); SHIM_LIB= (empty) runs the
#                    shim column without any preload, to check the harness
#                    (plain against plain should give ratios near 1)
#   RINGSTEER_TOOL=PATH  ringsteer tool for the shim's counters (default
#                    tools/ringsteer)
#   PIN=1            pin the server to CPU 0 and loadgen to CPU 1
#   PERF=PATH        perf binary (default: perf, else the newest /usr/bin/perf_*)
#   RESULTS_DIR=DIR  where results go (default bench-results/)

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$REPO/tools/bench
LOADGEN=$BENCH_DIR/loadgen

if [ "${QUICK:-0}" = 1 ]; then
	DURATION=${DURATION:-2}; WARMUP=${WARMUP:-0.5}; REPEAT=${REPEAT:-1}
else
	DURATION=${DURATION:-5}; WARMUP=${WARMUP:-1}; REPEAT=${REPEAT:-6}
fi
CONNECTIONS=${CONNECTIONS:-"1 50"}
MESSAGE_SIZE=${MESSAGE_SIZE:-64}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
PIN=${PIN:-0}
SHIM_LIB=${SHIM_LIB-$REPO/preload/libringsteer.so}
RESULTS_DIR=${RESULTS_DIR:-$REPO/bench-results}
RINGSTEER_TOOL=${RINGSTEER_TOOL:-$REPO/tools/ringsteer}

# Targets from issue 2, printed next to the measured ratios.
TARGET_SYSCALLS_RATIO=0.55
TARGET_RPS_RATIO=0.97

# Progress goes to stderr and, once the results directory exists, to its log.
LOG_FILE=/dev/null
say() { printf '%s\n' "$*" | tee -a "$LOG_FILE" >&2; }
fail() { say "bench: $*"; exit 1; }

is_number() { [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]]; }
for setting in DURATION WARMUP REPEAT MESSAGE_SIZE LOADGEN_THREADS; do
	is_number "${!setting}" || fail "$setting='${!setting}' is not a number"
done
for connections in $CONNECTIONS; do
	[[ $connections =~ ^[1-9][0-9]*$ ]] || fail "CONNECTIONS='$CONNECTIONS' must list positive integers"
done

if [ -z "${SERVER:-}" ]; then
	if [ -x "$REPO/tests/servers/echo_threaded" ]; then
		SERVER=$REPO/tests/servers/echo_threaded
	else
		SERVER=$BENCH_DIR/echo_blocking
	fi
fi
[ -x "$SERVER" ] || fail "server $SERVER is not built (run make)"
if [ -z "${SERVER_ARGS+set}" ]; then
	case $(basename "$SERVER") in
	echo_threaded) SERVER_ARGS="-m read -b 65536" ;;
	*) SERVER_ARGS= ;;
	esac
fi
read -r -a SERVER_ARGUMENTS <<<"$SERVER_ARGS"
[ -x "$LOADGEN" ] || fail "$LOADGEN is not built (run make)"

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
RUN_DIR=$RESULTS_DIR/$STAMP
mkdir -p "$RUN_DIR" || fail "cannot create $RUN_DIR"
LOG_FILE=$RUN_DIR/log.txt
WORK=$(mktemp -d /tmp/ringsteer-bench.XXXXXX) || fail "mktemp failed"
# Shared memory, like the shim's default, so publishing counters costs nothing.
STATS_DIR=$(mktemp -d /dev/shm/ringsteer-bench.XXXXXX) || fail "mktemp failed"

SERVER_PID=
LOADGEN_PID=
PERF_PID=

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

# Prints "bytes_received ring_enters fallbacks" of a process under the shim,
# or nothing when the stats cannot be read.
shim_counters() {
	[ "$HAVE_JQ" = 1 ] && [ -x "$RINGSTEER_TOOL" ] || return 0
	"$RINGSTEER_TOOL" stats --json --dir "$STATS_DIR" "$1" 2>/dev/null |
		jq -r '.total | "\(.bytes_received // 0) \(.ring_enters // 0) \(.fallbacks // 0)"' 2>/dev/null
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

start_server() {
	local config=$1 output=$2 errors=$3
	local -a command=("$SERVER" "${SERVER_ARGUMENTS[@]}" -p 0)
	[ "$PIN" = 1 ] && command=(taskset -c 0 "${command[@]}")
	if [ "$config" = shim ] && [ -n "$SHIM_LIB" ]; then
		RINGSTEER_STATS_DIR=$STATS_DIR LD_PRELOAD=$SHIM_LIB "${command[@]}" >"$output" 2>"$errors" &
	else
		"${command[@]}" >"$output" 2>"$errors" &
	fi
	SERVER_PID=$!
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

# Runs one measurement and appends a line to runs.tsv.
run_one() {
	local config=$1 connections=$2 repetition=$3
	local name=$config-c$connections-r$repetition
	local server_out=$RUN_DIR/$name.server.out server_err=$RUN_DIR/$name.server.err
	local loadgen_err=$RUN_DIR/$name.loadgen.err perf_out=$RUN_DIR/$name.perf.csv
	local status=0

	start_server "$config" "$server_out" "$server_err" || return 1

	local -a loadgen=("$LOADGEN" -g -p "$SERVER_PORT" -c "$connections" -d "$DURATION"
		-w "$WARMUP" -s "$MESSAGE_SIZE" -t "$LOADGEN_THREADS")
	[ "$PIN" = 1 ] && loadgen=(taskset -c 1 "${loadgen[@]}")
	coproc LOADGEN_PROCESS { exec "${loadgen[@]}" 2>"$loadgen_err"; }
	LOADGEN_PID=$LOADGEN_PROCESS_PID
	local to_loadgen=${LOADGEN_PROCESS[1]} from_loadgen=${LOADGEN_PROCESS[0]}
	local line result=

	local ready_timeout
	ready_timeout=$(awk -v w="$WARMUP" 'BEGIN { print int(w) + 20 }')
	if ! read -r -t "$ready_timeout" line <&"$from_loadgen" || [ "$line" != ready ]; then
		say "bench: $name: loadgen did not get ready: $(cat "$loadgen_err")"
		status=1
	fi

	# perf attaches now, while the server is idle, with its counter
	# disabled; the control fifo enables it right before the measured
	# interval and its acknowledgement tells us it is counting.
	local perf_control= perf_ack=
	if [ "$status" = 0 ] && [ -n "$PERF" ]; then
		rm -f "$WORK/perf.ctl" "$WORK/perf.ack"
		mkfifo "$WORK/perf.ctl" "$WORK/perf.ack"
		"$PERF" stat -x, -D -1 --control "fifo:$WORK/perf.ctl,$WORK/perf.ack" \
			-e raw_syscalls:sys_enter -p "$SERVER_PID" -o "$perf_out" 2>"$RUN_DIR/$name.perf.err" &
		PERF_PID=$!
		exec {perf_control}<>"$WORK/perf.ctl" {perf_ack}<>"$WORK/perf.ack"
		echo enable >&"$perf_control"
		if ! read -r -t 10 line <&"$perf_ack"; then
			say "bench: $name: perf did not start counting: $(cat "$RUN_DIR/$name.perf.err")"
			status=1
		fi
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

	if [ -n "$PERF_PID" ]; then
		if [ -n "$perf_control" ]; then
			echo disable >&"$perf_control"
			read -r -t 10 line <&"$perf_ack"
		fi
		kill -INT "$PERF_PID" 2>/dev/null
		wait_bounded "$PERF_PID" 10
		PERF_PID=
	fi
	[ -n "$perf_control" ] && exec {perf_control}>&- {perf_ack}>&-

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

	local syscalls=na
	if [ -n "$PERF" ]; then
		syscalls=$(awk -F, '/raw_syscalls:sys_enter/ { print ($1 ~ /^[0-9]+$/) ? $1 : 0 }' "$perf_out")
		[ -n "$syscalls" ] || syscalls=na
	fi
	# Shim counters over the interval: the share of received bytes that went
	# through the ring shows the shim really carried the traffic.
	local ring_bytes=na ring_enters=na fallbacks=na
	if [ -n "$shim_before" ] && [ -n "$shim_after" ]; then
		read -r ring_bytes ring_enters fallbacks < <(awk -v b="$shim_before" -v a="$shim_after" 'BEGIN {
			split(b, before, " "); split(a, after, " ")
			print after[1] - before[1], after[2] - before[2], after[3] - before[3] }')
	fi

	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$connections" "$repetition" \
		"$(awk -v t="$ticks_before" -v u="$ticks_after" -v hz="$CLOCK_TICKS" 'BEGIN { printf "%.3f", (u - t) / hz }')" \
		"$syscalls" "$ring_bytes" "$ring_enters" "$fallbacks" "$MESSAGE_SIZE" "$result" >>"$RUN_DIR/runs.tsv"
	say "  $(printf '%-8s' "$config") conns=$connections run $repetition: $result"
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

runs=0
for connections in $CONNECTIONS; do runs=$((runs + 2 * REPEAT)); done
say "bench: $(basename "$SERVER") plain vs $SHIM_LABEL, $runs runs of ${WARMUP}s warm-up + ${DURATION}s," \
	"$MESSAGE_SIZE-byte messages; results in $RUN_DIR"
{
	printf 'date=%s server=%s server_args=%s shim_lib=%s duration=%s warmup=%s repeat=%s size=%s loadgen_threads=%s pin=%s perf=%s\n' \
		"$STAMP" "$SERVER" "$SERVER_ARGS" "${SHIM_LIB:-none}" "$DURATION" "$WARMUP" "$REPEAT" "$MESSAGE_SIZE" \
		"$LOADGEN_THREADS" "$PIN" "${PERF:-none}"
	uname -r
	git -C "$REPO" rev-parse --short HEAD 2>/dev/null
} >"$RUN_DIR/setup.txt"

failures=0
for connections in $CONNECTIONS; do
	for repetition in $(seq "$REPEAT"); do
		# ABBA order: the first configuration of each pair alternates.
		if [ $((repetition % 2)) = 1 ]; then order="plain shim"; else order="shim plain"; fi
		for config in $order; do
			run_one "$config" "$connections" "$repetition" || failures=$((failures + 1))
		done
	done
done

[ -s "$RUN_DIR/runs.tsv" ] || fail "no run succeeded"
{
	printf '## ringsteer bench %s: %s, %s-byte messages, %s x %ss per configuration\n\n' \
		"$STAMP" "$(basename "$SERVER")" "$MESSAGE_SIZE" "$REPEAT" "$DURATION"
	summarize
	[ "$SHIM_LABEL" = shim-off ] && printf '\n(SHIM_LIB was empty: the "shim-off" rows ran without the shim.)\n'
} >"$RUN_DIR/summary.md"
cp "$RUN_DIR/summary.md" "$RESULTS_DIR/latest.md"
cat "$RUN_DIR/summary.md"
if [ "$failures" != 0 ]; then
	say "bench: $failures run(s) failed; see $RUN_DIR"
	exit 1
fi
