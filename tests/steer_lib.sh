# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Shared by the steering scenarios (tests/integration/steer_*.sh), sourced
# at their top instead of lib.sh (it sources lib.sh itself).
#
# Each scenario runs in mount and network namespaces of its own: a fresh
# bpffs on /sys/fs/bpf, so that whatever it pins vanishes with it even if
# it is killed, and its own loopback, so that its sysctls
# (net.ipv4.tcp_migrate_req) and ports touch nothing else on the machine.
# The program is loaded with `tools/ringsteer load --dir $BPF_DIR` and the
# servers find it through RINGSTEER_BPF_DIR.  steer_workers
# (tests/servers) names the worker that served each connection and
# steer_client (tests/clients) counts them; the helpers below read its
# report lines.
#
# RINGSTEER_TEST_NO_SHIM=1 (lib.sh) runs the servers on the plain kernel,
# where one shared listener decides placement: the placement assertions
# then show the imbalance that steering is there to fix, and fail.

if [ -z "${RINGSTEER_STEER_NAMESPACE:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
	command -v ip >/dev/null; then
	exec env RINGSTEER_STEER_NAMESPACE=1 unshare -m -n --propagation private \
		bash -c 'ip link set lo up && mount -t bpf -o mode=0700 bpf /sys/fs/bpf && exec bash "$0"' "$0"
fi
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" = 0 ] || skip "loading the steering program needs root"
[ -n "${RINGSTEER_STEER_NAMESPACE:-}" ] ||
	fail "cannot run in a namespace of its own (unshare and ip from util-linux and iproute2: make deps)"
need_program "$TOOL"
need_program "$SERVERS/steer_workers"
need_program "$CLIENTS/steer_client"

BPF_DIR=/sys/fs/bpf/ringsteer-test-$TEST_NAME
trap '"$TOOL" unload --dir "$BPF_DIR" >/dev/null 2>&1; cleanup' EXIT

# steer_load [load options]: loads (or reconfigures) the program; skips
# only where the kernel lacks sk_reuseport programs or sockarrays.
steer_load() {
	local output
	output=$("$TOOL" load --dir "$BPF_DIR" "$@" 2>&1) || {
		echo "$output"
		if ! bpftool feature probe kernel 2>/dev/null | grep -q "program_type sk_reuseport is available" ||
			! bpftool feature probe kernel 2>/dev/null | grep -q "map_type reuseport_sockarray is available"; then
			skip "this kernel lacks sk_reuseport programs or reuseport_sockarray maps (bpftool feature probe)"
		fi
		fail "ringsteer load $* failed"
	}
	note "ringsteer load $*: $output"
}

# start_workers [start_server options] ARGS...: steer_workers under the
# shim, finding the program in $BPF_DIR.
start_workers() {
	start_server --env RINGSTEER_BPF_DIR="$BPF_DIR" --env RINGSTEER_STATS_KEEP=1 steer_workers "$@"
}

# start_steered_nginx LABEL PORT [start_real_server options]...: nginx with
# 4 workers dropping root to www-data, answering "answered" to every
# request on 127.0.0.1:PORT, under the shim; returns once the 4 workers
# run.  Logs to the server's stderr.
start_steered_nginx() {
	local label=$1 port=$2 tries=0
	shift 2
	command -v nginx >/dev/null || fail "$label: nginx is not installed: run make deps"
	command -v curl >/dev/null || fail "$label: curl is not installed: run make deps"
	chmod 755 "$TEST_TMP"
	mkdir -p "$TEST_TMP/nginx-temp"
	cat >"$TEST_TMP/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 4;
user www-data;
pid $TEST_TMP/nginx.pid;
error_log stderr warn;
events {
	worker_connections 1024;
}
http {
	access_log off;
	client_body_temp_path $TEST_TMP/nginx-temp/body;
	proxy_temp_path $TEST_TMP/nginx-temp/proxy;
	fastcgi_temp_path $TEST_TMP/nginx-temp/fastcgi;
	uwsgi_temp_path $TEST_TMP/nginx-temp/uwsgi;
	scgi_temp_path $TEST_TMP/nginx-temp/scgi;
	server {
		listen 127.0.0.1:$port;
		location / { return 200 "answered\n"; }
	}
}
CONF
	start_real_server "$@" nginx "$port" nginx -c "$TEST_TMP/nginx.conf" -e stderr
	while [ "$(ps -o pid= --ppid "$SERVER_PID" | wc -l)" -lt 4 ]; do
		[ $tries -ge 100 ] && fail "$label: nginx did not start 4 workers within 10 s"
		sleep 0.1
		tries=$((tries + 1))
	done
}

# start_paused_client LABEL ARGS...: steer_client with ARGS, which include
# a `pause` step, in the background; output in $TEST_TMP/LABEL.out.  Returns
# once it printed `paused` (within 120 s), with CLIENT_PID set;
# finish_paused_client LABEL then lets it go on and waits for its success.
start_paused_client() {
	local label=$1 output=$TEST_TMP/$1.out tries=0
	shift
	mkfifo "$TEST_TMP/$label.gate"
	timeout -k 5 120 "$CLIENTS/steer_client" "$@" <"$TEST_TMP/$label.gate" >"$output" 2>&1 &
	CLIENT_PID=$!
	BACKGROUND_PIDS+=("$CLIENT_PID")
	exec 9>"$TEST_TMP/$label.gate"
	until grep -q '^paused$' "$output"; do
		process_alive "$CLIENT_PID" || fail "$label: steer_client ended early: $(tail -n 5 "$output" | tr '\n' ' ')"
		[ $tries -lt 2400 ] || fail "$label: steer_client did not reach its pause within 120 s"
		sleep 0.05
		tries=$((tries + 1))
	done
}

finish_paused_client() {
	echo >&9
	exec 9>&-
	wait "$CLIENT_PID" || fail "$1: steer_client failed: $(tail -n 5 "$TEST_TMP/$1.out" | tr '\n' ' ')"
}

# run_steer LABEL ARGS...: steer_client with ARGS; output in $TEST_TMP/LABEL.out.
run_steer() {
	local label=$1
	shift
	run_client "$label" steer_client "$@"
}

# report_line RUN LABEL [PORT]: the report line LABEL of client run RUN
# (for PORT, when the client talked to two).
report_line() {
	local line
	if [ -n "${3:-}" ]; then
		line=$(grep "^$2 port=$3 " "$TEST_TMP/$1.out" | tail -n 1)
	else
		line=$(grep "^$2 port=" "$TEST_TMP/$1.out" | tail -n 1)
	fi
	[ -n "$line" ] || fail "$1: no report '$2'${3:+ for port $3} ($(tail -n 3 "$TEST_TMP/$1.out" | tr '\n' ' '))"
	echo "$line"
}

# report_field RUN LABEL FIELD [PORT]: one field of a report line.
report_field() {
	report_line "$1" "$2" "${4:-}" | tr ' ' '\n' | sed -n "s/^$3=//p"
}

# count_of RUN LABEL WORKER [PORT]: connections worker WORKER served.
count_of() {
	report_field "$1" "$2" counts "${4:-}" | cut -d, -f$(($3 + 1))
}

# assert_no_failures RUN LABEL [PORT]: every connection was answered.
assert_no_failures() {
	local field value
	for field in resets refused unanswered; do
		value=$(report_field "$1" "$2" $field "${3:-}")
		[ "$value" = 0 ] || fail "$1/$2: $value connections $field ($(report_line "$1" "$2" "${3:-}"))"
	done
}

# assert_total RUN LABEL COUNT [PORT]
assert_total() {
	local total
	total=$(report_field "$1" "$2" connections "${4:-}")
	[ "$total" = "$3" ] || fail "$1/$2: $total connections answered, expected $3 ($(report_line "$1" "$2" "${4:-}"))"
}

# assert_spread RUN LABEL LIMIT [PORT]: max/mean connections per worker
# at most LIMIT.
assert_spread() {
	local spread
	spread=$(report_field "$1" "$2" max_over_mean "${4:-}")
	awk -v spread="$spread" -v limit="$3" 'BEGIN { exit !(spread != "" && spread + 0 <= limit + 0) }' ||
		fail "$1/$2: max/mean connections per worker is $spread, above $3 ($(report_line "$1" "$2" "${4:-}"))"
}

# ---- ringsteer status ---------------------------------------------------------

steer_status() {
	"$TOOL" status --json --dir "$BPF_DIR"
}

# group_slots PORT [HOST]: the status slots of the group on HOST:PORT
# (127.0.0.1 unless given), one JSON object a line.
group_slots() {
	local address="${2:-127.0.0.1}:$1"
	case ${2:-} in *:*) address="[$2]:$1" ;; esac
	steer_status | jq -c --arg address "$address" '.groups[] | select(.address == $address) | .slots[]'
}

# slot_sum PORT PID FIELD [HOST]: FIELD summed over the slots of PID in the group.
slot_sum() {
	group_slots "$1" "${4:-}" | jq -s --argjson pid "$2" --arg field "$3" \
		'[.[] | select(.pid == $pid) | .[$field]] | add // 0'
}

# assert_status_agrees RUN LABEL PORT HELD [HOST]: for each worker process the
# client saw (pids in the report), `ringsteer status` counts as many
# connections steered to its slots as the client saw it serve, and, when
# HELD is 1 (the client still holds them), as many open and none pending;
# and nothing was steered to any other process.  The lanes publish open
# from their loops: waits at most 10 s for it.
assert_status_agrees() {
	local run=$1 label=$2 port=$3 held=$4 host=${5:-} pids counts worker pid count steered open pending tries total
	pids=$(report_field "$run" "$label" pids)
	counts=$(report_field "$run" "$label" counts)
	total=$(report_field "$run" "$label" connections)
	steered=$(group_slots "$port" "$host" | jq -s '[.[].steered] | add // 0')
	[ "$steered" = "$total" ] ||
		fail "ringsteer status counts $steered connections steered on port $port, the client saw $total: $(group_slots "$port" "$host" | tr '\n' ' ')"
	worker=0
	for pid in ${pids//,/ }; do
		count=$(cut -d, -f$((worker + 1)) <<<"$counts")
		steered=$(slot_sum "$port" "$pid" steered "$host")
		[ "$steered" = "$count" ] ||
			fail "ringsteer status says $steered connections were steered to worker $worker (pid $pid), the client saw it serve $count"
		if [ "$held" = 1 ]; then
			tries=0
			while open=$(slot_sum "$port" "$pid" open "$host") && [ "$open" != "$count" ] && [ $tries -lt 100 ]; do
				sleep 0.1
				tries=$((tries + 1))
			done
			pending=$(slot_sum "$port" "$pid" pending "$host")
			[ "$open" = "$count" ] && [ "$pending" = 0 ] ||
				fail "ringsteer status shows worker $worker (pid $pid) with $open open and $pending pending, the client holds $count connections on it"
		fi
		worker=$((worker + 1))
	done
	if [ "$held" = 1 ]; then
		note "ringsteer status agrees with the client on port $port: steered, open $counts, none pending"
	else
		note "ringsteer status agrees with the client on port $port: steered $counts"
	fi
}

# assert_steered_traffic_carried CONNECTIONS [PID]: the shim carried the
# requests and answers of CONNECTIONS connections through its rings (each
# asked `who`: 4 bytes in, an answer out) and had every one of them as a
# socket of its own; over every process of the test, or the one PID.
assert_steered_traffic_carried() {
	local connections=$1 sockets
	shim_enabled || {
		note "stats not checked (RINGSTEER_TEST_NO_SHIM=1)"
		return 0
	}
	if [ -n "${2:-}" ]; then
		assert_carried "$2" $((connections * 4))
		sockets=$(wait_for_counter "$connections" stats_total sockets_total "$2")
	else
		assert_carried_all $((connections * 4))
		sockets=$(wait_for_counter "$connections" stats_all_total sockets_total)
	fi
	[ "$sockets" -ge "$connections" ] ||
		fail "the shim had $sockets sockets, fewer than the $connections connections the client made"
}
