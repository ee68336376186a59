#!/bin/bash
# SPDX-License-Identifier: MIT
#
# `make demo`: redis-server, unmodified, under the shim with connection
# steering, driven by redis-benchmark, then what the shim did.
#
# Everything it makes is private to one run and removed at the end, also
# on Ctrl-C or an error: a temporary directory (redis' working directory,
# the counters, the logs), a steering directory of its own under
# /sys/fs/bpf (loaded with `ringsteer load --dir`, unloaded at the end),
# and the server, bound to 127.0.0.1 on a free port, with no persistence.
# Without root it runs without steering and says so.
#
#   tools/demo.sh            about 10 s of load (SET then GET, 50 clients)
#   DEMO_QUICK=1 tools/demo.sh   (make demo QUICK=1) a short run, under 30 s
#
# It prints `demo: server pid PID, port PORT, temp TMP, steering DIR`
# first, so that a test can check that nothing of it is left.
# DEMO_STATS_DIR=DIR (for the tests) puts the server's counters there
# instead, kept after it exits (RINGSTEER_STATS_KEEP=1).
set -u

REPO=$(cd "$(dirname "$0")/.." && pwd)
TOOL=$REPO/tools/ringsteer
QUICK=${DEMO_QUICK:-0}
if [ "$QUICK" = 1 ]; then REQUESTS=100000; else REQUESTS=400000; fi
CLIENTS=50

SERVER_PID=
BENCHMARK_PID=
STEER_DIR=
DEMO_TMP=

say() {
	printf 'demo: %s\n' "$*"
}

cleanup() {
	trap - EXIT INT TERM HUP
	if [ -n "$BENCHMARK_PID" ]; then
		kill -TERM "$BENCHMARK_PID" 2>/dev/null
		wait "$BENCHMARK_PID" 2>/dev/null
	fi
	if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null
		for _ in $(seq 50); do
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$SERVER_PID" 2>/dev/null
		wait "$SERVER_PID" 2>/dev/null
	fi
	[ -n "$STEER_DIR" ] && "$TOOL" unload --dir "$STEER_DIR" >/dev/null 2>&1
	[ -n "$DEMO_TMP" ] && rm -rf "$DEMO_TMP"
}
trap cleanup EXIT
trap 'say interrupted, cleaning up; exit 130' INT TERM HUP

die() {
	say "$*" >&2
	exit 1
}

for program in redis-server redis-benchmark redis-cli ss; do
	command -v "$program" >/dev/null || die "$program is missing: make deps installs it"
done
[ -x "$TOOL" ] && [ -e "$REPO/preload/libringsteer.so" ] || die "not built: run make first"

DEMO_TMP=$(mktemp -d /tmp/ringsteer-demo.XXXXXX) || die "cannot create a temporary directory"
mkdir "$DEMO_TMP/stats"
STATS_DIR=${DEMO_STATS_DIR:-$DEMO_TMP/stats}

# A free loopback port, below the ephemeral range (where no outgoing
# connection takes it meanwhile), not used by any TCP socket now.
free_port() {
	local low candidate
	low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	case $low in '' | *[!0-9]*) low=32768 ;; esac
	[ "$low" -gt 12000 ] || low=32768
	for _ in $(seq 50); do
		candidate=$((10000 + RANDOM % (low - 10000)))
		if ! ss -Htan "( sport = :$candidate )" | grep -q .; then
			echo "$candidate"
			return 0
		fi
	done
	return 1
}
port=$(free_port) || die "no free port found"

if [ "$(id -u)" = 0 ]; then
	STEER_DIR=/sys/fs/bpf/ringsteer-demo-$$
	if ! "$TOOL" load --dir "$STEER_DIR" >"$DEMO_TMP/load.log" 2>&1; then
		cat "$DEMO_TMP/load.log" >&2
		say "steering did not load: the demo runs without it"
		"$TOOL" unload --dir "$STEER_DIR" >/dev/null 2>&1
		STEER_DIR=
	fi
else
	say "not root: no steering (loading a BPF program needs root)"
fi

# Under make SANITIZE=1 the ASan runtime must be loaded before the shim.
env LD_PRELOAD="${RINGSTEER_ASAN_LIB:-}" RINGSTEER_STATS_DIR="$STATS_DIR" RINGSTEER_LOG=info \
	${DEMO_STATS_DIR:+RINGSTEER_STATS_KEEP=1} \
	${STEER_DIR:+RINGSTEER_BPF_DIR="$STEER_DIR"} "$TOOL" run -- redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize no --protected-mode yes --dir "$DEMO_TMP" --logfile "$DEMO_TMP/redis.log" \
	</dev/null >"$DEMO_TMP/server.out" 2>"$DEMO_TMP/server.err" &
SERVER_PID=$!
say "server pid $SERVER_PID, port $port, temp $DEMO_TMP, steering ${STEER_DIR:-none}"

for _ in $(seq 100); do
	[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
	kill -0 "$SERVER_PID" 2>/dev/null || die "redis-server exited: $(tail -n 5 "$DEMO_TMP/server.err" "$DEMO_TMP/redis.log" 2>/dev/null)"
	sleep 0.1
done
[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] || die "redis-server does not answer on port $port"
grep -q 'ringsteer.*started' "$DEMO_TMP/server.err" || die "redis-server did not start under the shim"

say "driving load: redis-benchmark, $CLIENTS clients, $REQUESTS SET then $REQUESTS GET"
# In the background, waited for: a signal then ends the wait at once (bash
# runs no trap while a foreground command runs, and timeout moves its
# command out of the terminal's process group).
timeout -k 5 120 redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$REQUESTS" -t set,get \
	--csv >"$DEMO_TMP/benchmark.csv" 2>"$DEMO_TMP/benchmark.err" &
BENCHMARK_PID=$!
wait "$BENCHMARK_PID" || die "redis-benchmark failed: $(tail -n 3 "$DEMO_TMP/benchmark.err")"
BENCHMARK_PID=

echo
echo "== requests per second (redis-benchmark -c $CLIENTS -n $REQUESTS)"
# --csv: "test","rps","avg_latency_ms",...
awk -F'","' 'NR > 1 { gsub(/"/, "", $1); printf "  %-4s %10.0f requests/s  avg %s ms\n", $1, $2, $3 }' \
	"$DEMO_TMP/benchmark.csv"

echo
echo "== what the shim carried (ringsteer stats)"
RINGSTEER_STATS_DIR=$STATS_DIR "$TOOL" stats "$SERVER_PID"
json=$(RINGSTEER_STATS_DIR=$STATS_DIR "$TOOL" stats --json "$SERVER_PID")
calls=$(jq -r '.total.calls_answered' <<<"$json")
enters=$(jq -r '.total.ring_enters' <<<"$json")
requests=$((2 * REQUESTS))
echo "  calls answered by the shim (each a system call without it): $calls"
echo "  io_uring_enter system calls made instead:                   $enters"
awk -v c="$calls" -v e="$enters" -v r="$requests" 'BEGIN {
	if (c > 0) printf "  %.3f enters per answered call; %.2f calls and %.2f enters per request\n", e / c, c / r, e / r }'

if [ -n "$STEER_DIR" ]; then
	echo
	echo "== steering (ringsteer status --dir $STEER_DIR)"
	"$TOOL" status --dir "$STEER_DIR"
fi

# The server's own exit line (RINGSTEER_LOG=info): its totals at exit.
kill -TERM "$SERVER_PID" 2>/dev/null
for _ in $(seq 50); do
	kill -0 "$SERVER_PID" 2>/dev/null || break
	sleep 0.1
done
echo
echo "== the shim's exit line in redis-server's stderr"
grep 'info: exit:' "$DEMO_TMP/server.err" | sed 's/^/  /'
echo
say "done; cleaning up"
