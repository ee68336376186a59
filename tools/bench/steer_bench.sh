#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The connection steering benchmark (issue 4): the pre-fork test server
# (tests/servers/steer_workers -P N) with 2 and 4 workers under
# tools/bench/steer_load, whose clients reconnect after a few requests (so
# placement keeps happening under load), 12.5 percent of sessions heavy
# (40 times the CPU per request) and 12.5 percent hot (10 times the
# requests).  In one run, side by side, configurations alternating:
#
#   shared        one shared listener, plain kernel (no shim)
#   hashing       BASELINE, emulated: the same server with -r, each worker
#                 its own SO_REUSEPORT listener, plain kernel (what the
#                 kernel's 4-tuple hashing does)
#   shim-hashing  under the shim with RINGSTEER_STEER=1 and no program:
#                 kernel hashing over the per-lane listeners, once the shim
#                 opens them (before that, the shared listener via the shim)
#   least-loaded, p2c, round-robin, hash
#                 under the shim with the program loaded with that policy
#
# For each: the max/mean connections per worker of 1000 equal held
# connections (tests/clients/steer_client), the max/mean sessions per
# worker under the load, and light-request p50/p99/p99.9 latency, with the
# ratios to hashing and to the shared listener next to the targets (light
# p99 <= 0.4x hashing and <= 0.8x shared, p99.9 <= 0.3x hashing, equal
# spread <= 1.05).  Then nginx with 4 workers under wrk, without and with
# steering (least-loaded).  Targets are printed, never asserted: this is a
# benchmark.  It exits non-zero only when a run fails.
#
# Runs as root in mount and network namespaces of its own (a private bpffs
# for the program, a loopback of its own).
#
# Environment:
#   QUICK=1            under a minute: 1 s runs, one repetition, 2 s of wrk
#   DURATION=S         measured seconds per run (default 5)
#   WARMUP=S           warm-up seconds per run (default 1)
#   REPEAT=N           runs per configuration (default 3); medians are shown
#   WORKER_COUNTS="2 4"
#   SLOTS=N            concurrent client sessions (default 32)
#   CONFIGS="..."      subset of the configurations above
#   NGINX=0            skip nginx
#   NGINX_SECONDS=S    wrk's whole seconds per nginx run (default 8; QUICK: 2)
#   RESULTS_DIR=DIR    default bench-results/ (each run in steer-<date>/)
#   BENCH_OUT=DIR      this run's directory itself, instead of one under
#                      RESULTS_DIR (tools/bench/report.sh uses it)
#
# The run directory holds summary.md, the same tables alone in steering.md
# and nginx.md, runs.tsv (one line per run; its last column the sessions
# each worker served), commands.tsv (the server and client commands of each
# configuration and worker count), latencies.tsv (naming each run's
# light-request latency histogram under latency/, and wrk's output of the
# nginx runs) and log.txt.

if [ -z "${RINGSTEER_BENCH_NAMESPACE:-}" ]; then
	[ "$(id -u)" = 0 ] || { echo "steer_bench: needs root (BPF, namespaces)" >&2; exit 1; }
	exec env RINGSTEER_BENCH_NAMESPACE=1 unshare -m -n --propagation private \
		bash -c 'ip link set lo up && mount -t bpf -o mode=0700 bpf /sys/fs/bpf && exec bash "$0" "$@"' "$0" "$@"
fi

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERVER=$REPO/tests/servers/steer_workers
CLIENT=$REPO/tests/clients/steer_client
LOAD=$REPO/tools/bench/steer_load
TOOL=$REPO/tools/ringsteer
SHIM=$REPO/preload/libringsteer.so

if [ "${QUICK:-0}" = 1 ]; then
	DURATION=${DURATION:-1}; WARMUP=${WARMUP:-0.2}; REPEAT=${REPEAT:-1}; NGINX_SECONDS=${NGINX_SECONDS:-2}
else
	DURATION=${DURATION:-5}; WARMUP=${WARMUP:-1}; REPEAT=${REPEAT:-3}; NGINX_SECONDS=${NGINX_SECONDS:-8}
fi
[[ $NGINX_SECONDS =~ ^[1-9][0-9]*$ ]] || { echo "steer_bench: NGINX_SECONDS='$NGINX_SECONDS' must be whole seconds" >&2; exit 1; }
WORKER_COUNTS=${WORKER_COUNTS:-"2 4"}
SLOTS=${SLOTS:-32}
CONFIGS=${CONFIGS:-"shared hashing shim-hashing least-loaded p2c round-robin hash"}
NGINX=${NGINX:-1}
BPF_DIR=/sys/fs/bpf/ringsteer-bench
NO_PROGRAM_DIR=/sys/fs/bpf/ringsteer-bench-none
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${BENCH_OUT:-${RESULTS_DIR:-$REPO/bench-results}/steer-$STAMP}
mkdir -p "$OUT/latency" || exit 1
LOG=$OUT/log.txt

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
fail() { say "steer_bench: $*"; exit 1; }

for program in "$SERVER" "$CLIENT" "$LOAD" "$TOOL" "$SHIM"; do
	[ -e "$program" ] || fail "$program is missing: run make and make test's build first (make all tests/servers/steer_workers tests/clients/steer_client tools/bench/steer_load)"
done
command -v jq >/dev/null || fail "jq is missing (make deps)"

SERVER_PID=
cleanup() {
	[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	[ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
	"$TOOL" unload --dir "$BPF_DIR" >/dev/null 2>&1
}
trap cleanup EXIT

"$TOOL" load --dir "$BPF_DIR" >>"$LOG" 2>&1 || fail "ringsteer load failed (see $LOG)"

# The words quoted as a shell would need them, with the tree's paths made
# relative, space-separated: for commands.tsv.
shell_words() {
	local words
	printf -v words '%q ' "$@"
	words=${words% }
	printf '%s\n' "${words//$REPO\//}"
}

# start_server CONFIG WORKERS: sets SERVER_PID, PORT and SERVER_COMMAND.
start_server() {
	local config=$1 workers=$2 tries=0 environment=() arguments
	arguments=(-p 0 -P "$workers")
	case $config in
	shared) ;;
	hashing) arguments+=(-r) ;;
	shim-hashing) environment=(LD_PRELOAD="$SHIM" RINGSTEER_STEER=1 RINGSTEER_BPF_DIR="$NO_PROGRAM_DIR") ;;
	*)
		"$TOOL" load --dir "$BPF_DIR" --policy "$config" >>"$LOG" 2>&1 || fail "ringsteer load --policy $config failed"
		environment=(LD_PRELOAD="$SHIM" RINGSTEER_BPF_DIR="$BPF_DIR")
		;;
	esac
	env "${environment[@]}" RINGSTEER_STATS_DIR="$OUT" "$SERVER" "${arguments[@]}" \
		>"$OUT/server.out" 2>>"$OUT/server.err" </dev/null &
	SERVER_PID=$!
	SERVER_COMMAND=$(shell_words "${environment[@]}" "$SERVER" "${arguments[@]}")
	PORT=
	while [ -z "$PORT" ] && [ $tries -lt 100 ]; do
		sleep 0.1
		PORT=$(sed -n 's/^listening //p' "$OUT/server.out")
		kill -0 "$SERVER_PID" 2>/dev/null || fail "$config: the server died: $(tail -n 3 "$OUT/server.err")"
		tries=$((tries + 1))
	done
	[ -n "$PORT" ] || fail "$config: the server did not listen within 10 s"
}

stop_server() {
	kill "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" 2>/dev/null
	SERVER_PID=
}

field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# One run: equal spread, then the load.  Appends a line to runs.tsv and
# latencies.tsv, and the commands to commands.tsv for the first round.
run_one() {
	local config=$1 workers=$2 round=$3 equal load latency
	local -a equal_client load_client
	latency=latency/$workers-$config-r$round.latency
	start_server "$config" "$workers"
	equal_client=("$CLIENT" -p "$PORT" -w "$workers" -b 50 hold:1000 report:equal)
	load_client=("$LOAD" -p "$PORT" -w "$workers" -c "$SLOTS" -d "$DURATION" -W "$WARMUP" --histogram "$OUT/$latency")
	equal=$(timeout 120 "${equal_client[@]}" | grep '^equal ') ||
		fail "$config/$workers: steer_client failed"
	load=$(timeout 120 "${load_client[@]}" 2>>"$LOG") ||
		fail "$config/$workers: steer_load failed (see $LOG)"
	stop_server
	[ "$round" = 1 ] && printf '%s\t%s\t%s\t%s\t%s\n' steering "$config" "$workers" "$SERVER_COMMAND" \
		"$(shell_words "${equal_client[@]}"); $(shell_words "${load_client[@]}")" >>"$OUT/commands.tsv"
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' steering "$config" "$workers" "$round" histogram "$latency" >>"$OUT/latencies.tsv"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workers" "$config" "$round" \
		"$(field "$equal" max_over_mean)" "$(field "$load" spread)" "$(field "$load" light_p50_us)" \
		"$(field "$load" light_p99_us)" "$(field "$load" light_p999_us)" "$(field "$load" rps)" \
		"$(field "$load" counts)" >>"$OUT/runs.tsv"
	say "  $workers workers, $config, round $round: equal $(field "$equal" max_over_mean), $load"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# column WORKERS CONFIG N: the median of column N over that configuration's runs.
column() { awk -F'\t' -v w="$1" -v c="$2" -v n="$3" '$1 == w && $2 == c { print $n }' "$OUT/runs.tsv" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }

say "steer_bench: $(uname -r), $(nproc) cores, DURATION=$DURATION WARMUP=$WARMUP REPEAT=$REPEAT SLOTS=$SLOTS, results in $OUT"
: >"$OUT/runs.tsv"
: >"$OUT/commands.tsv"
: >"$OUT/latencies.tsv"
read -r -a configs <<<"$CONFIGS"
for round in $(seq 1 "$REPEAT"); do
	for workers in $WORKER_COUNTS; do
		# Alternate the order between rounds, so drift hits all alike.
		order=("${configs[@]}")
		if [ $((round % 2)) = 0 ]; then
			order=()
			for ((i = ${#configs[@]} - 1; i >= 0; i--)); do order+=("${configs[$i]}"); done
		fi
		for config in "${order[@]}"; do
			run_one "$config" "$workers" "$round"
		done
	done
done

{
	echo "| workers | configuration | equal spread | load spread | light p50 us | light p99 us | light p99.9 us | rps | p99 / hashing | p99 / shared | p99.9 / hashing |"
	echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for workers in $WORKER_COUNTS; do
		hashing_p99=$(column "$workers" hashing 7)
		hashing_p999=$(column "$workers" hashing 8)
		shared_p99=$(column "$workers" shared 7)
		for config in "${configs[@]}"; do
			label=$config
			case $config in
			shared) label="shared listener (plain kernel)" ;;
			hashing) label="SO_REUSEPORT hashing (**baseline**, emulated: server -r, plain kernel)" ;;
			shim-hashing) label="shim, RINGSTEER_STEER=1, no program" ;;
			*) label="ringsteer $config" ;;
			esac
			p99=$(column "$workers" "$config" 7)
			p999=$(column "$workers" "$config" 8)
			printf '| %s | %s | %.3f | %.3f | %.0f | %.0f | %.0f | %.0f | %s | %s | %s |\n' "$workers" "$label" \
				"$(column "$workers" "$config" 4)" "$(column "$workers" "$config" 5)" \
				"$(column "$workers" "$config" 6)" "$p99" "$p999" "$(column "$workers" "$config" 9)" \
				"$(ratio "$p99" "$hashing_p99")" "$(ratio "$p99" "$shared_p99")" "$(ratio "$p999" "$hashing_p999")"
		done
	done
	echo "| target | ringsteer least-loaded | <= 1.05 | | | | | | <= 0.40x | <= 0.80x | <= 0.30x |"
	echo
	echo "Medians of $REPEAT run(s) of ${DURATION} s (after ${WARMUP} s warm-up) per configuration, $SLOTS concurrent sessions of 4 requests"
	echo "(12.5% heavy, 12.5% hot with 10x the requests), reconnecting after each session; equal spread: 1000 held connections, 50 at a time."
} >"$OUT/steering.md"

# ---- nginx with 4 workers under wrk ------------------------------------------
nginx_row() {
	local label=$1 shift_environment=$2 dir=$OUT/nginx-$3 output rps p50 p99 tries=0
	mkdir -p "$dir"
	user=nobody
	id www-data >/dev/null 2>&1 && user=www-data
	cat >"$dir/nginx.conf" <<-EOF
		user $user;
		worker_processes 4;
		daemon off;
		master_process on;
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events { worker_connections 4096; }
		http {
		    access_log off;
		    client_body_temp_path $dir/body;
		    proxy_temp_path $dir/proxy;
		    fastcgi_temp_path $dir/fastcgi;
		    uwsgi_temp_path $dir/uwsgi;
		    scgi_temp_path $dir/scgi;
		    server {
		        listen 127.0.0.1:8080;
		        location / { return 200 "ok\n"; }
		    }
		}
	EOF
	# shellcheck disable=SC2086
	env $shift_environment RINGSTEER_STATS_DIR="$OUT" nginx -p "$dir" -c "$dir/nginx.conf" </dev/null >>"$dir/out" 2>&1 &
	NGINX_PID=$!
	until (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; do
		sleep 0.1
		tries=$((tries + 1))
		[ $tries -lt 100 ] && kill -0 "$NGINX_PID" 2>/dev/null || fail "nginx did not start: $(tail -n 3 "$dir/error.log" "$dir/out" 2>/dev/null)"
	done
	local -a client=(wrk -t 2 -c 64 -d "${NGINX_SECONDS}s" --latency http://127.0.0.1:8080/)
	output=$("${client[@]}" 2>&1) || fail "wrk failed: $output"
	echo "$output" >"$dir/wrk.txt"
	printf '%s\t%s\t%s\t%s\t%s\n' nginx-steering "$3" 4 \
		"$(shell_words $shift_environment nginx -p "$dir" -c "$dir/nginx.conf")" "$(shell_words "${client[@]}")" >>"$OUT/commands.tsv"
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' nginx-steering "$3" 4 1 wrk "nginx-$3/wrk.txt" >>"$OUT/latencies.tsv"
	kill "$NGINX_PID" 2>/dev/null
	wait "$NGINX_PID" 2>/dev/null
	NGINX_PID=
	to_us() { awk '{ v = $1; if (v ~ /us$/) print v + 0; else if (v ~ /ms$/) print v * 1000; else if (v ~ /s$/) print v * 1000000 }'; }
	rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$output")
	p50=$(awk '$1 == "50%" { print $2 }' <<<"$output" | to_us)
	p99=$(awk '$1 == "99%" { print $2 }' <<<"$output" | to_us)
	printf '| %s | %.0f | %.0f | %.0f |\n' "$label" "$rps" "$p50" "$p99"
	say "  nginx, $label: rps $rps p50 ${p50}us p99 ${p99}us"
}

if [ "$NGINX" = 1 ] && command -v nginx >/dev/null && command -v wrk >/dev/null; then
	"$TOOL" load --dir "$BPF_DIR" --policy least-loaded >>"$LOG" 2>&1 || fail "ringsteer load failed"
	{
		echo
		echo "nginx, 4 workers, \`return 200\`, wrk -t 2 -c 64 -d ${NGINX_SECONDS}s:"
		echo
		echo "| nginx | rps | p50 us | p99 us |"
		echo "|---|---:|---:|---:|"
		nginx_row "plain kernel (shared listener)" "" plain
		nginx_row "shim + ringsteer least-loaded" "LD_PRELOAD=$SHIM RINGSTEER_BPF_DIR=$BPF_DIR" steered
	} >"$OUT/nginx.md"
else
	echo "(nginx or wrk missing, or NGINX=0: no nginx rows)" >"$OUT/nginx.md"
fi
cat "$OUT/steering.md" "$OUT/nginx.md" >"$OUT/summary.md"
cat "$OUT/summary.md"
