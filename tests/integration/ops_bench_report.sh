#!/bin/bash
# SPDX-License-Identifier: MIT
#
# make bench QUICK=1, in its shortest form (half-second runs), written into
# a temporary directory (BENCH_OUT): it must succeed and leave bench-results/
# as it was.  Its report.md must have the Machine section with every fact
# filled in, each table's section with the command that produced it, its
# header and rows with numbers for every configuration, and every image it
# references must be a file next to it that is a PNG (the 8-byte signature,
# more than a few bytes), one for each latency plot and the placement chart;
# each loadgen histogram must count exactly the requests its run reported.
# The same data rendered without gnuplot must still give every table, and
# one line saying why there are no plots.  Without BENCH_OUT the report goes
# to RESULTS_DIR/<date>/ with a latest-report.md beside it whose images
# resolve from there.  Last, the checks must reject a copy of the report
# with one image emptied and another replaced by text, so that they can
# fail.
#
# Needs root (the steering part loads BPF in namespaces of its own) and the
# servers and tools `make deps` installs.
. "$(dirname "$0")/../lib.sh"

[ "$(id -u)" = 0 ] || skip "the steering half of make bench needs root (BPF, namespaces)"
# ASan needs its runtime ahead of the shim in LD_PRELOAD, which the bench
# scripts do not arrange: a sanitized bench would measure ASan anyway.
[ -z "${RINGSTEER_ASAN_LIB:-}" ] || skip "make bench does not run under SANITIZE=1 (the shim needs the ASan runtime preloaded)"
for program in nginx wrk curl redis-server redis-benchmark redis-cli jq gnuplot ss; do
	command -v "$program" >/dev/null || fail "$program is missing: make deps installs it"
done
need_program "$REPO/tools/bench/loadgen"
need_program "$REPO/tools/bench/steer_load"

# The shortest runs that still give every table a number.
export DURATION=0.5 WARMUP=0.2 REDIS_REQUESTS=10000 NGINX_SECONDS=1

PROBLEMS=()
problem() { PROBLEMS+=("$*"); }

# section FILE HEADING: the lines under "## HEADING..." up to the next "## ".
section() {
	awk -v heading="## $2" 'index($0, heading) == 1 { inside = 1; next } inside && /^## / { exit } inside' "$1"
}

# rows FILE HEADING: the section's table rows as fields separated by tabs,
# spaces trimmed, the leading and trailing bars dropped.
rows() {
	section "$1" "$2" | awk -F'|' '/^\|/ && !/^\|---/ {
		line = ""
		for (i = 2; i < NF; i++) { gsub(/^ +| +$/, "", $i); line = line (i > 2 ? "\t" : "") $i }
		print line
	}'
}

is_positive() {
	[[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v value="$1" 'BEGIN { exit !(value > 0) }'
}

# check_row FILE HEADING WHAT KEY_COLUMNS KEY COLUMN...: the row whose
# first KEY_COLUMNS fields are KEY (tab-separated) has a positive number in
# each COLUMN (1-based).
check_row() {
	local file=$1 heading=$2 what=$3 key_columns=$4 key=$5 column row value
	shift 5
	row=$(rows "$file" "$heading" | awk -F'\t' -v n="$key_columns" -v key="$key" '{
		line = $1; for (i = 2; i <= n; i++) line = line "\t" $i
		if (line == key) { print; exit }
	}')
	if [ -z "$row" ]; then
		problem "$heading: no row for $what"
		return
	fi
	for column in "$@"; do
		value=$(cut -f "$column" <<<"$row")
		is_positive "$value" || problem "$heading: $what: column $column is '$value', not a number"
	done
}

# check_report DIR: every check on DIR/report.md, problems into PROBLEMS.
# With --no-plots the report must say it has none instead of showing them.
check_report() {
	local plots=1
	[ "$1" = --no-plots ] && { plots=0; shift; }
	local dir=$1 report=$1/report.md fact value heading header image path connections config workers
	[ -s "$report" ] || { problem "no report.md in $dir"; return; }

	grep -qx '## Machine' "$report" || problem "no Machine section"
	for fact in date 'git commit' kernel CPU memory liburing libbpf nginx redis 'perf counted system calls'; do
		value=$(section "$report" Machine | awk -F'|' -v key="$fact" '{ k = $2; gsub(/^ +| +$/, "", k); if (k == key) { v = $3; gsub(/^ +| +$/, "", v); print v; exit } }')
		[ -n "$value" ] || problem "Machine: no value for $fact"
	done
	section "$report" Machine | grep -qF "| kernel | $(uname -r) " || problem "Machine: the kernel is not $(uname -r)"
	section "$report" Machine | grep -q "| CPU | .*$(grep -c '^processor' /proc/cpuinfo) cores" ||
		problem "Machine: the CPU line lacks the core count"
	section "$report" Machine | grep -q '| liburing | .*liburing' || problem "Machine: no liburing package version"
	section "$report" Machine | grep -q '| libbpf | .*libbpf' || problem "Machine: no libbpf package version"

	for heading in "Blocking echo server" "Event-loop servers" "Connection steering" "nginx with and without steering"; do
		grep -q "^## $heading" "$report" || { problem "no section $heading"; continue; }
		section "$report" "$heading" | grep -q '^tools/bench/\(run\|steer_bench\)\.sh$\|^[A-Z_]*=.* tools/bench/\(run\|steer_bench\)\.sh$' ||
			problem "$heading: no command that produced it"
	done
	while IFS='|' read -r heading header; do
		section "$report" "$heading" | grep -qxF "$header" || problem "$heading: no table header '$header'"
	done <<-'EOF'
		Blocking echo server|| config | conns | rps | rps range | p50 us | p99 us | CPU us/req | syscalls/req |
		Event-loop servers|| workload | conns | config | rps | rps range | p50 us | p99 us | CPU us/req | syscalls/req |
		Connection steering|| workers | configuration | equal spread | load spread | light p50 us | light p99 us | light p99.9 us | rps | p99 / hashing | p99 / shared | p99.9 / hashing |
		nginx with and without steering|| nginx | rps | p50 us | p99 us |
	EOF

	# Rows: requests/s and latencies of every configuration are numbers.
	for connections in 1 50; do
		for config in plain shim; do
			check_row "$report" "Blocking echo server" "$config at $connections" 2 "$config	$connections" 3 5 6
		done
	done
	for connections in 1 50 500; do
		for config in plain shim native; do
			check_row "$report" "Event-loop servers" "epoll $config at $connections" 3 "epoll	$connections	$config" 4 6 7
		done
	done
	for workload in redis-get redis-set nginx proxy haproxy; do
		for config in plain shim; do
			check_row "$report" "Event-loop servers" "$workload $config" 3 "$workload	50	$config" 4 6 7
		done
	done
	for workers in 2 4; do
		for config in "shared listener (plain kernel)" "SO_REUSEPORT hashing (**baseline**, emulated: server -r, plain kernel)" \
			"shim, RINGSTEER_STEER=1, no program" "ringsteer least-loaded" "ringsteer p2c" "ringsteer round-robin" "ringsteer hash"; do
			check_row "$report" "Connection steering" "$config, $workers workers" 2 "$workers	$config" 3 4 5 6 7 8
		done
	done
	check_row "$report" "nginx with and without steering" "plain" 1 "plain kernel (shared listener)" 2 3 4
	check_row "$report" "nginx with and without steering" "steered" 1 "shim + ringsteer least-loaded" 2 3 4

	if [ "$plots" = 0 ]; then
		[ "$(grep -c '^Plots skipped: ' "$report")" = 1 ] || problem "no single 'Plots skipped:' line"
		grep -q '!\[' "$report" && problem "images referenced although the plots were skipped"
		return
	fi
	grep -q '^Plots skipped' "$report" && problem "plots skipped: $(grep '^Plots skipped' "$report")"
	grep -q '^- Not shown: ' "$report" && problem "plots failed: $(grep '^- Not shown: ' "$report" | tr '\n' ' ')"
	for image in latency-blocking latency-epoll latency-redis latency-nginx latency-steering latency-nginx-steering placement-steering; do
		grep -qF "](plots/$image.png)" "$report" || problem "the report does not show plots/$image.png"
	done
	while read -r path; do
		case $path in /* | *://*) problem "image $path is not a relative path"; continue ;; esac
		if [ ! -f "$dir/$path" ]; then
			problem "image $path does not exist"
		elif [ "$(head -c 8 "$dir/$path" | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]; then
			problem "image $path is not a PNG"
		elif [ "$(stat -c %s "$dir/$path")" -lt 1000 ]; then
			problem "image $path has only $(stat -c %s "$dir/$path") bytes"
		fi
	done < <(grep -o '!\[[^]]*\]([^)]*)' "$report" | sed 's/.*](\(.*\))$/\1/')
}

report_problems() {
	local problem
	for problem in "${PROBLEMS[@]}"; do echo "  problem: $problem"; done
}

# ---- make bench QUICK=1 into BENCH_OUT ------------------------------------------
RESULTS_BEFORE=$(ls -A "$REPO/bench-results" 2>/dev/null)
OUT=$TEST_TMP/bench
start=$(date +%s)
status=0
timeout -k 10 240 make -s -C "$REPO" bench QUICK=1 BENCH_OUT="$OUT" >"$TEST_TMP/bench.out" 2>&1 || status=$?
[ $status = 0 ] || fail "make bench QUICK=1 exited with $status: $(tail -n 30 "$TEST_TMP/bench.out")"
note "make bench QUICK=1 (0.5 s runs) took $(($(date +%s) - start)) s"
[ "$(ls -A "$REPO/bench-results" 2>/dev/null)" = "$RESULTS_BEFORE" ] || fail "make bench with BENCH_OUT wrote into bench-results/"

check_report "$OUT"
# loadgen's histogram holds every request its result line counted.
while IFS=$'\t' read -r config connections repetition _ _ _ _ _ _ result; do
	file=$OUT/echo/$config-c$connections-r$repetition.latency
	requests=$(sed -n 's/^requests=\([0-9]*\) .*/\1/p' <<<"$result")
	counted=$(awk '!/^#/ { sum += $2 } END { print sum + 0 }' "$file" 2>/dev/null)
	[ -n "$requests" ] && [ "$requests" = "$counted" ] ||
		problem "$(basename "$file"): the histogram counts ${counted:-nothing}, loadgen reported ${requests:-nothing} requests"
done <"$OUT/echo/runs.tsv"
[ ${#PROBLEMS[@]} = 0 ] || { report_problems; fail "the report of make bench QUICK=1 is incomplete (see above; kept in $OUT)"; }
note "report.md: Machine, 4 tables with numbers, $(grep -c '!\[' "$OUT/report.md") PNG images"

# ---- the same data, without gnuplot -----------------------------------------------
cp -a "$OUT" "$TEST_TMP/no-gnuplot"
GNUPLOT=$TEST_TMP/no-such-gnuplot "$REPO/tools/bench/report.sh" --render "$TEST_TMP/no-gnuplot" >"$TEST_TMP/render.out" 2>&1 ||
	fail "report.sh --render without gnuplot failed: $(tail -n 5 "$TEST_TMP/render.out")"
check_report --no-plots "$TEST_TMP/no-gnuplot"
[ ${#PROBLEMS[@]} = 0 ] || { report_problems; fail "the report rendered without gnuplot is wrong"; }
note "without gnuplot: $(grep '^Plots skipped: ' "$TEST_TMP/no-gnuplot/report.md")"

# ---- the pointer beside the run directories ----------------------------------------
status=0
QUICK=1 REPEAT=1 WORKLOADS=blocking CONNECTIONS=1 STEER=0 RESULTS_DIR=$TEST_TMP/results \
	timeout -k 10 120 "$REPO/tools/bench/report.sh" >"$TEST_TMP/pointer.out" 2>&1 || status=$?
[ $status = 0 ] || fail "report.sh with RESULTS_DIR exited with $status: $(tail -n 20 "$TEST_TMP/pointer.out")"
latest=$TEST_TMP/results/latest-report.md
[ -s "$latest" ] || fail "no latest-report.md in RESULTS_DIR"
run_dirs=$(find "$TEST_TMP/results" -mindepth 1 -maxdepth 1 -type d | wc -l)
[ "$run_dirs" = 1 ] || fail "RESULTS_DIR holds $run_dirs directories, expected the one run's"
grep -q '^_No table: STEER=0._$' "$latest" || fail "latest-report.md does not say why the steering tables are missing"
images=0
while read -r path; do
	[ -f "$TEST_TMP/results/$path" ] || fail "latest-report.md shows $path, which does not resolve from $TEST_TMP/results"
	images=$((images + 1))
done < <(grep -o '!\[[^]]*\]([^)]*)' "$latest" | sed 's/.*](\(.*\))$/\1/')
[ $images -ge 1 ] || fail "latest-report.md shows no image"
note "latest-report.md: $images image(s) resolving into its run directory"

# ---- the checks can fail ----------------------------------------------------------
broken=$TEST_TMP/broken
cp -a "$OUT" "$broken"
: >"$broken/plots/latency-epoll.png"
echo "not a picture" >"$broken/plots/placement-steering.png"
check_report "$broken"
found=$(printf '%s\n' "${PROBLEMS[@]}")
grep -q 'latency-epoll.png' <<<"$found" && grep -q 'placement-steering.png is not a PNG' <<<"$found" ||
	fail "the checks accepted an empty and a non-PNG image: ${found:-no problem found}"
note "an empty and a non-PNG image are rejected"
