#!/bin/bash
# SPDX-License-Identifier: MIT
#
# ringsteer top, with the threaded echo server under the shim and the
# steering program loaded in a bpffs directory private to this test.
# Batch mode (-b -n 3): three frames, each with the server's pid, its lanes
# in order with the threads the JSON stats name, every rate a number, the
# open connections the clients hold, bytes moving while a client runs, and
# the steering slots with the connections steered as `status --json`
# counts them.  In a pseudo-terminal of 80 columns (script(1)): a few
# redraws with no line wider than 80, then q (and, in a second run, Ctrl-C)
# ends it with status 0 and the terminal settings as they were before.
#
# It runs in a mount namespace of its own with a fresh bpffs on
# /sys/fs/bpf, so that nothing it pins outlives it, even if it is killed.
if [ -z "${RINGSTEER_OPS_TOP_NAMESPACE:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	exec env RINGSTEER_OPS_TOP_NAMESPACE=1 unshare -m --propagation private \
		bash -c 'mount -t bpf -o mode=0700 bpf /sys/fs/bpf && exec bash "$0"' "$0"
fi
. "$(dirname "$0")/../lib.sh"

need_program "$TOOL"
command -v script >/dev/null || fail "script (util-linux) is missing"
NUMBER='^[0-9]+(\.[0-9][kMGT])?$'

DIR=
if [ "$(id -u)" = 0 ]; then
	DIR=/sys/fs/bpf/ringsteer-test-ops-top-$$
	trap '"$TOOL" unload --dir "$DIR" >/dev/null 2>&1; cleanup' EXIT
	"$TOOL" load --dir "$DIR" >/dev/null || fail "ringsteer load failed"
	start_server --env RINGSTEER_BPF_DIR="$DIR" echo_threaded
else
	note "not root: top is checked without the steering program"
	start_server echo_threaded
fi
settle_baseline

# Five connections held open (sent, never read), two moving bytes.
"$CLIENTS/echo_verify" -p "$PORT" -c 5 -n 64K --no-read --hold 60 -s 21 >"$TEST_TMP/hold.out" 2>&1 &
BACKGROUND_PIDS+=($!)
"$CLIENTS/echo_verify" -p "$PORT" -c 2 -n 4G -t 60 -s 22 >"$TEST_TMP/load.out" 2>&1 &
load_pid=$!
BACKGROUND_PIDS+=("$load_pid")
open=$(wait_for_counter 7 stats_total sockets_open "$SERVER_PID")
[ "$open" = 7 ] || fail "the server has $open accelerated sockets open, the clients hold 7"
assert_carried "$SERVER_PID"

# ---- batch frames ------------------------------------------------------------
"$TOOL" top -b -n 3 -d 0.5 --dir "$STATS_DIR" ${DIR:+--bpf-dir "$DIR"} >"$TEST_TMP/top.out" 2>"$TEST_TMP/top.err" ||
	fail "top -b failed: $(cat "$TEST_TMP/top.err")"
json=$(stats_json "$SERVER_PID")
status_json=
[ -n "$DIR" ] && status_json=$("$TOOL" status --json --dir "$DIR")
terminate_process "$load_pid"
frames=$(grep -c '^ringsteer top ' "$TEST_TMP/top.out")
[ "$frames" = 3 ] || fail "top -b -n 3 printed $frames frames: $(head -n 30 "$TEST_TMP/top.out")"
lanes=$(jq '.processes[0].lanes | length' <<<"$json")
tids=$(jq -r '.processes[0].lanes[].tid' <<<"$json" | tr '\n' ' ')
# One line per frame: lane count, tids, the all row's open and bytes in/s,
# the steered connections, or an error.
awk -v pid="$SERVER_PID" -v number="$NUMBER" '
	function bad(why) { print "error: frame " frame ": " why ": " $0; exit 1 }
	function finish() {
		if (frame) printf "%d|%s|%s|%s|%d|%d\n", rows, frame_tids, all_open, all_in, steered, slots
	}
	/^ringsteer top / { finish(); frame++; rows = 0; frame_tids = ""; in_process = 0; in_slots = 0;
		all_open = ""; all_in = ""; steered = 0; slots = 0; next }
	$1 == "pid" { in_process = ($2 == pid ":" || $2 == pid); if ($2 != pid) in_process = 0; next }
	in_process && $1 == "LANE" { next }
	in_process && $1 == "all" {
		if (NF != 10) bad("the all row has " NF " fields")
		for (i = 3; i <= 9; i++) if ($i !~ number) bad("not a number: " $i)
		all_open = $3; all_in = $5; in_process = 0; next
	}
	in_process && NF == 11 {
		if ($1 != rows) bad("lane " $1 " where " rows " was due")
		for (i = 5; i <= 10; i++) if ($i !~ number) bad("not a number: " $i)
		frame_tids = frame_tids $2 " "; rows++; next
	}
	in_process && NF > 0 { bad("unexpected line in the lanes") }
	/^group [0-9]+ 127\.0\.0\.1:/ { in_slots = 1; next }
	in_slots && $1 == "SLOT" { next }
	in_slots && $1 ~ /^[0-9]+$/ { if ($2 == pid) { steered += $9; slots++ } next }
	{ in_slots = 0 }
	END { finish() }
' "$TEST_TMP/top.out" >"$TEST_TMP/frames" || fail "$(grep error "$TEST_TMP/frames")"
grep -q "^pid $SERVER_PID echo_threaded: " "$TEST_TMP/top.out" || fail "no line for the server's pid"
moving=0
while IFS='|' read -r rows frame_tids all_open all_in steered slots; do
	[ "$rows" = "$lanes" ] || fail "a frame shows $rows lanes, the stats have $lanes"
	[ "$frame_tids" = "$tids" ] || fail "a frame shows threads '$frame_tids', the stats '$tids'"
	[ "$all_open" = 7 ] || fail "a frame shows $all_open open connections, the clients hold 7"
	[ "$all_in" != 0 ] && moving=$((moving + 1))
	if [ -n "$DIR" ]; then
		[ "$slots" -ge 1 ] || fail "a frame shows no steering slot of the server"
		expected=$(jq "[.groups[].slots[] | select(.pid == $SERVER_PID) | .steered] | add" <<<"$status_json")
		[ "$steered" = "$expected" ] || fail "a frame shows $steered connections steered, status says $expected"
		[ "$steered" -ge 7 ] || fail "only $steered connections steered, the clients opened 7 after the warm-up"
	fi
done <"$TEST_TMP/frames"
[ "$moving" -ge 1 ] || fail "no frame shows bytes coming in while a client was sending"
[ -z "$DIR" ] || grep -q '^steering: policy least-loaded' "$TEST_TMP/top.out" || fail "no steering line"
note "top -b: 3 frames, $lanes lanes each, 7 open, bytes moving in $moving, $(cut -d'|' -f5 "$TEST_TMP/frames" | tail -n 1) steered"

# ---- a pseudo-terminal -------------------------------------------------------
# sh traps SIGINT (a handler, reset for top by exec) so that Ctrl-C reaches
# top alone and the settings afterwards can still be read.
run_in_terminal() {
	local key=$1 label=$2
	rm -f "$TEST_TMP/rc" "$TEST_TMP/before" "$TEST_TMP/after"
	(sleep 2; printf '%b' "$key") | timeout -k 5 30 script -q -e -c "sh -c 'trap : INT; stty cols 80 rows 40; stty -g >$TEST_TMP/before; $TOOL top -d 0.3 --dir $STATS_DIR ${DIR:+--bpf-dir $DIR}; echo \$? >$TEST_TMP/rc; stty -g >$TEST_TMP/after'" /dev/null >"$TEST_TMP/screen.$label" 2>&1
	[ -s "$TEST_TMP/rc" ] || fail "$label: top did not end (or sh died): $(tail -c 300 "$TEST_TMP/screen.$label" | cat -v)"
	[ "$(cat "$TEST_TMP/rc")" = 0 ] || fail "$label: top exited with status $(cat "$TEST_TMP/rc")"
	cmp -s "$TEST_TMP/before" "$TEST_TMP/after" ||
		fail "$label: the terminal settings changed: $(cat "$TEST_TMP/before") -> $(cat "$TEST_TMP/after")"
	redraws=$(grep -o $'\033\\[Hringsteer top ' "$TEST_TMP/screen.$label" | wc -l)
	[ "$redraws" -ge 2 ] || fail "$label: $redraws redraws in 2 s at -d 0.3"
	grep -q "pid $SERVER_PID echo_threaded" "$TEST_TMP/screen.$label" || fail "$label: the screen does not show the server"
	grep -q $'\033\\[?25h' "$TEST_TMP/screen.$label" || fail "$label: the cursor was not shown again"
	wide=$(sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\r$//' "$TEST_TMP/screen.$label" | awk 'length > 80' | head -n 1)
	[ -z "$wide" ] || fail "$label: a line wider than 80 columns: $wide"
	note "$label: $redraws redraws, status 0, terminal settings restored"
}
run_in_terminal q "q"
run_in_terminal '\003' "Ctrl-C"
stop_server
