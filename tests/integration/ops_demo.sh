#!/bin/bash
# SPDX-License-Identifier: MIT
#
# make demo QUICK=1: redis-server under the shim with steering, driven by
# redis-benchmark.  It must succeed, print requests per second for SET and
# GET, the shim's calls answered and io_uring_enter calls (the same numbers
# as its counters), and the steering slot of the server with the
# benchmark's connections steered to it; the shim must have carried the
# benchmark's bytes; and it must leave nothing: not the server, not its
# port, not its temporary directory, no pinned object.  Then the full demo
# is interrupted the way Ctrl-C does (SIGINT to its process group) while it
# drives load, and must clean up the same way.
#
# It runs in a mount namespace of its own with a fresh bpffs on
# /sys/fs/bpf: after the demo that bpffs must hold what it held before.
if [ -z "${RINGSTEER_OPS_DEMO_NAMESPACE:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	exec env RINGSTEER_OPS_DEMO_NAMESPACE=1 unshare -m --propagation private \
		bash -c 'mount -t bpf -o mode=0700 bpf /sys/fs/bpf && exec bash "$0"' "$0"
fi
. "$(dirname "$0")/../lib.sh"

need_program "$TOOL"
for program in redis-server redis-benchmark redis-cli; do
	command -v "$program" >/dev/null || fail "$program is missing: make deps installs it"
done

# check_left_nothing OUTPUT: the server, its port, its temp directory and
# every pin are gone.
check_left_nothing() {
	local output=$1 line pid port temp steering
	line=$(grep -m 1 '^demo: server pid ' "$output") || fail "the demo did not say what it started: $(head -n 20 "$output")"
	read -r pid port temp steering <<<"$(sed -n 's/^demo: server pid \([0-9]*\), port \([0-9]*\), temp \([^,]*\), steering \(.*\)$/\1 \2 \3 \4/p' <<<"$line")"
	[ -n "$pid" ] && [ -n "$port" ] && [ -n "$temp" ] || fail "cannot parse: $line"
	! process_alive "$pid" || fail "the demo left redis-server $pid running"
	! ss -Htln "( sport = :$port )" | grep -q . || fail "something still listens on the demo's port $port"
	[ ! -e "$temp" ] || fail "the demo left $temp"
	if [ "$steering" != none ]; then
		[ ! -e "$steering" ] || fail "the demo left $steering"
	fi
	[ "$(ls -A /sys/fs/bpf 2>/dev/null)" = "$BPFFS_BEFORE" ] ||
		fail "pins left under /sys/fs/bpf: $(ls -A /sys/fs/bpf | tr '\n' ' ') (before: $BPFFS_BEFORE)"
	DEMO_PID=$pid
	DEMO_STEERING=$steering
}

# ---- make demo QUICK=1 -----------------------------------------------------
# A fresh bpffs already holds the kernel's maps.debug and progs.debug.
BPFFS_BEFORE=$(ls -A /sys/fs/bpf 2>/dev/null)
status=0
make -s -C "$REPO" demo QUICK=1 DEMO_STATS_DIR="$STATS_DIR" >"$TEST_TMP/demo.out" 2>&1 || status=$?
[ $status = 0 ] || fail "make demo QUICK=1 exited with $status: $(tail -n 20 "$TEST_TMP/demo.out")"
check_left_nothing "$TEST_TMP/demo.out"
for test in SET GET; do
	rps=$(awk -v t="$test" '$1 == t && $3 == "requests/s" { print $2 }' "$TEST_TMP/demo.out")
	[[ $rps =~ ^[0-9]+$ ]] && [ "$rps" -gt 0 ] || fail "no requests/s for $test: $(cat "$TEST_TMP/demo.out")"
	note "$test: $rps requests/s"
done
calls=$(sed -n 's/^  calls answered by the shim.*: *\([0-9]*\)$/\1/p' "$TEST_TMP/demo.out")
enters=$(sed -n 's/^  io_uring_enter system calls made instead: *\([0-9]*\)$/\1/p' "$TEST_TMP/demo.out")
kept=$(stats_json --all | jq -c ".processes[] | select(.pid == $DEMO_PID) | .total")
[ -n "$kept" ] || fail "no counters of redis-server $DEMO_PID in $STATS_DIR"
# The demo printed them while the server ran; they can only have grown since.
[ -n "$calls" ] && [ "$calls" -gt 0 ] && [ "$calls" -le "$(jq .calls_answered <<<"$kept")" ] ||
	fail "calls answered printed as '$calls', counters say $(jq .calls_answered <<<"$kept")"
[ -n "$enters" ] && [ "$enters" -gt 0 ] && [ "$enters" -le "$(jq .ring_enters <<<"$kept")" ] ||
	fail "io_uring_enter calls printed as '$enters', counters say $(jq .ring_enters <<<"$kept")"
grep -q "^  ringsteer\[$DEMO_PID\]: info: exit: " "$TEST_TMP/demo.out" || fail "the demo did not show the server's exit line"
if [ "$DEMO_STEERING" != none ]; then
	steered=$(awk -v pid="$DEMO_PID" '$2 ~ /^127\.0\.0\.1:/ && $4 == pid { s += $10 } END { print s + 0 }' "$TEST_TMP/demo.out")
	# redis-benchmark opens its 50 connections for each of SET and GET.
	[ "$steered" -ge 100 ] || fail "the steering status shows $steered connections steered to redis-server, the benchmark made at least 100: $(cat "$TEST_TMP/demo.out")"
	note "steering: $steered connections steered to redis-server $DEMO_PID"
elif [ "$(id -u)" = 0 ]; then
	fail "the demo ran without steering as root: $(cat "$TEST_TMP/demo.out")"
fi
# 100000 SETs of 3 bytes and as many GETs: well over 4 MB in, 1 MB out.
assert_carried_all 1000000
note "calls answered $calls, io_uring_enter $enters"

# ---- interrupted ---------------------------------------------------------
set -m # its own process group, with SIGINT not ignored, as from a terminal
"$REPO/tools/demo.sh" >"$TEST_TMP/interrupted.out" 2>&1 &
demo=$!
set +m
BACKGROUND_PIDS+=("$demo")
for _ in $(seq 300); do
	grep -q '^demo: driving load' "$TEST_TMP/interrupted.out" && break
	process_alive "$demo" || break
	sleep 0.1
done
grep -q '^demo: driving load' "$TEST_TMP/interrupted.out" || fail "the demo did not start driving load: $(cat "$TEST_TMP/interrupted.out")"
sleep 1
kill -INT -- "-$demo"
status=0
for _ in $(seq 150); do process_alive "$demo" || break; sleep 0.1; done
process_alive "$demo" && fail "the demo did not end within 15 s of SIGINT"
wait "$demo" || status=$?
[ $status = 130 ] || fail "the interrupted demo exited with $status, not 130: $(tail -n 5 "$TEST_TMP/interrupted.out")"
check_left_nothing "$TEST_TMP/interrupted.out"
pgrep -g "$demo" >/dev/null && fail "processes of the demo's group remain: $(pgrep -g "$demo" -a)"
note "interrupted while driving load: exit 130, nothing left"
