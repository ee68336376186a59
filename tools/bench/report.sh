#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# make bench: the whole benchmark in one run, written up as one report.
# It runs tools/bench/run.sh (blocking echo, epoll echo, redis, nginx
# serving and proxying, haproxy; plain, under the shim and native) and
# tools/bench/steer_bench.sh (connection steering, as root), each into a
# directory of its own inside the report's directory, then writes report.md
# there: the machine it ran on, every table of both scripts with the
# commands that produced it, and PNG plots made with gnuplot: the latency
# distribution of each configuration and the per-worker connection
# placement under skewed load.
#
#   tools/bench/report.sh                run both, then write the report
#   tools/bench/report.sh --render DIR   write DIR/report.md and its plots
#                                        again from the data already in DIR
#
# The report's directory is bench-results/<date>/ (echo/ and steering/ hold
# the two scripts' own output, plots/ the PNGs with their gnuplot scripts
# and data), and bench-results/latest-report.md is a copy of the latest
# report whose links point into that directory.  Plots never make the
# report fail: without a gnuplot that writes PNG the report says, in one
# line, why it has none, and a plot gnuplot fails on is named instead of
# shown.  The exit status is that of the benchmarks: non-zero when a run of
# either failed (the report still shows what succeeded).
#
# Environment: every setting of run.sh and steer_bench.sh (QUICK, DURATION,
# WARMUP, REPEAT, ...), passed to both as they are, and:
#   BENCH_OUT=DIR   the report's directory itself; nothing is then written
#                   under bench-results/ (no latest-report.md)
#   STEER=0         no steering benchmark (it is also left out, with a line
#                   in the report, when not running as root)
#   GNUPLOT=PATH    gnuplot binary (default: gnuplot)

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH_DIR=$REPO/tools/bench
GNUPLOT=${GNUPLOT:-gnuplot}
STEER=${STEER:-1}

# The settings each script reads, for showing the command that produced a
# table exactly as it ran.
ECHO_SETTINGS="QUICK WORKLOADS DURATION WARMUP REPEAT EVENT_REPEAT CONNECTIONS EVENT_CONNECTIONS EPOLL_THREADS
	REDIS_CONNECTIONS REDIS_REQUESTS NGINX_CONNECTIONS NGINX_WORKERS NGINX_FILE_SIZE NGINX_OPEN_FILE_CACHE
	WRK_THREADS MESSAGE_SIZE LOADGEN_THREADS SERVER SERVER_ARGS SHIM_LIB RINGSTEER_TOOL PIN PERF"
STEER_SETTINGS="QUICK DURATION WARMUP REPEAT WORKER_COUNTS SLOTS CONFIGS NGINX NGINX_SECONDS"

say() { printf 'report: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

usage() {
	echo "usage: tools/bench/report.sh [--render DIR]" >&2
	exit 2
}

# ---- facts about the run -------------------------------------------------------

# key<TAB>value lines in FILE, read back with fact.
put_fact() { printf '%s\t%s\n' "$2" "$3" >>"$1"; }
fact() { awk -F'\t' -v key="$2" '$1 == key { value = $2 } END { print value }' "$1" 2>/dev/null; }

installed_version() {
	dpkg-query -W -f='${db:Status-Abbrev}|${Package} ${Version}\n' "$@" 2>/dev/null |
		awk -F'|' '$1 ~ /^ii/ { printf "%s%s", separator, $2; separator = ", " } END { print "" }'
}

# The machine as the run found it, written at its start: a report rendered
# later must describe the machine that ran it.
collect_machine() {
	local file=$1 commit dirty cpu_model cores memory_kib perf
	: >"$file"
	put_fact "$file" date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	commit=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
	dirty=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)
	[ -n "$dirty" ] && commit="$commit (with uncommitted changes)"
	put_fact "$file" commit "$commit"
	put_fact "$file" kernel "$(uname -r) ($(uname -m))"
	cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	[ -n "$cpu_model" ] || cpu_model=$(awk -F': *' '/^(Hardware|cpu model|CPU part)/ { print $2; exit }' /proc/cpuinfo)
	cores=$(grep -c '^processor' /proc/cpuinfo)
	put_fact "$file" cpu "${cpu_model:-unknown}, $cores cores in /proc/cpuinfo ($(nproc) usable)"
	memory_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
	put_fact "$file" memory "$(awk -v k="$memory_kib" 'BEGIN { printf "%.1f GiB", k / 1048576 }')"
	put_fact "$file" liburing "$(installed_version 'liburing*')"
	put_fact "$file" libbpf "$(installed_version 'libbpf*')"
	put_fact "$file" nginx "$(nginx -v 2>&1 | sed -n 's/^nginx version: //p')"
	put_fact "$file" redis "$( { redis-server --version 2>/dev/null || true; } | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^v=/) { sub(/^v=/, "", $i); print "redis-server " $i } }')"
	put_fact "$file" redis_benchmark "$( { redis-benchmark --version 2>/dev/null || true; } | head -n 1)"
	put_fact "$file" wrk "$( { wrk --version 2>&1 || true; } | awk 'NR == 1 { print $2 }')"
	put_fact "$file" gnuplot "$( { "$GNUPLOT" --version 2>/dev/null || true; } | head -n 1)"
	perf=$(command -v perf || ls /usr/bin/perf_* 2>/dev/null | sort -V | tail -n 1)
	[ -n "$perf" ] && put_fact "$file" perf_version "$( { "$perf" --version 2>/dev/null || true; } | head -n 1)"
	put_fact "$file" load "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# NAME=value words for the settings in $1 that are set, then the script.
command_line() {
	local names=$1 script=$2 name words=
	for name in $names; do
		[ -n "${!name+set}" ] && words+="$name=$(printf '%q' "${!name}") "
	done
	printf '%s%s\n' "$words" "$script"
}

# ---- running --------------------------------------------------------------------

run_benchmarks() {
	local dir=$1 started status command
	local run=$dir/run.tsv
	mkdir -p "$dir/echo" "$dir/steering" || fail "cannot create $dir"
	: >"$run"
	collect_machine "$dir/machine.tsv"
	started=$(date +%s)
	put_fact "$run" quick "${QUICK:-0}"

	command=$(command_line "$ECHO_SETTINGS" tools/bench/run.sh)
	put_fact "$run" echo_command "$command"
	say "running $command"
	BENCH_OUT=$dir/echo "$BENCH_DIR/run.sh"
	status=$?
	put_fact "$run" echo_status "$status"

	if [ "$STEER" = 0 ]; then
		put_fact "$run" steer_status "skipped: STEER=0"
	elif [ "$(id -u)" != 0 ]; then
		put_fact "$run" steer_status "skipped: the steering benchmark needs root (BPF, namespaces)"
	else
		command=$(command_line "$STEER_SETTINGS" tools/bench/steer_bench.sh)
		put_fact "$run" steer_command "$command"
		say "running $command"
		BENCH_OUT=$dir/steering "$BENCH_DIR/steer_bench.sh"
		status=$?
		put_fact "$run" steer_status "$status"
	fi
	put_fact "$run" seconds $(($(date +%s) - started))
}

# ---- latency data ---------------------------------------------------------------

# histogram_of FORMAT FILE: the run's latencies as "latency_us count" lines.
histogram_of() {
	case $1 in
	histogram) awk '!/^#/ && NF == 2' "$2" ;;
	redis-benchmark)
		# "50.000% <= 0.311 milliseconds (cumulative count 5029)": the
		# counts between two lines lie between their latencies.
		tr '\r' '\n' <"$2" | awk '
			/^Latency by percentile distribution:/ { inside = 1; next }
			inside && NF == 0 { inside = 0 }
			inside && $2 == "<=" && $4 == "milliseconds" {
				count = $7; sub(/\)$/, "", count); count += 0
				if (count > previous) { printf "%.3f %d\n", $3 * 1000, count - previous; previous = count }
			}' ;;
	wrk)
		# wrk prints four percentiles and the maximum: each stands for
		# the share of requests up to it.
		awk '
			function microseconds(value) {
				if (value ~ /us$/) return value + 0
				if (value ~ /ms$/) return value * 1000
				if (value ~ /s$/) return value * 1000000
				return -1
			}
			$1 == "Latency" && NF == 5 { maximum = microseconds($4) }
			$1 ~ /^[0-9]+%$/ && NF == 2 { at[$1 + 0] = microseconds($2) }
			/ requests in / { total = $1 + 0 }
			END {
				if (total <= 0 || !(50 in at) || !(75 in at) || !(90 in at) || !(99 in at)) exit
				printf "%.3f %.3f\n%.3f %.3f\n%.3f %.3f\n", at[50], total * 0.50, at[75], total * 0.25, at[90], total * 0.15
				if (maximum > at[99]) printf "%.3f %.3f\n%.3f %.3f\n", at[99], total * 0.09, maximum, total * 0.01
				else printf "%.3f %.3f\n", at[99], total * 0.10
			}' "$2" ;;
	esac
}

# Histograms on stdin (any number of runs) to a percentile curve: "x
# latency_us fraction" with x = 1 / (1 - fraction), so that the 99th and
# 99.9th percentiles get as much room as the median.  The slowest request
# stands at 1 - 1/(2N), not at 1, which has no place on that axis.
percentile_curve() {
	awk 'NF == 2 { sum[$1] += $2 } END { for (value in sum) print value, sum[value] }' | sort -g | awk '
		{ value[NR] = $1; count[NR] = $2; total += $2 }
		END {
			if (total <= 0) exit
			top = 1 - 1 / (2 * total)
			for (i = 1; i <= NR; i++) {
				cumulative += count[i]
				fraction = cumulative / total
				if (fraction > top) fraction = top
				printf "%.6g %s %.6f\n", 1 / (1 - fraction), value[i], fraction
			}
		}'
}

# ---- plots ----------------------------------------------------------------------

PLOT_TERMINAL=
PLOTS_SKIPPED=
PLOT_PROBLEMS=()

# A gnuplot that writes PNG, with cairo's anti-aliased terminal if it has it.
find_plot_terminal() {
	local terminal
	if ! command -v "$GNUPLOT" >/dev/null 2>&1; then
		PLOTS_SKIPPED="gnuplot ($GNUPLOT) is not installed (make deps installs gnuplot-nox)"
		return 1
	fi
	for terminal in pngcairo png; do
		if printf 'set terminal %s\n' "$terminal" | timeout 20 "$GNUPLOT" >/dev/null 2>&1; then
			PLOT_TERMINAL=$terminal
			return 0
		fi
	done
	PLOTS_SKIPPED="$GNUPLOT has neither the pngcairo nor the png terminal"
	return 1
}

is_png() {
	[ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]
}

# run_gnuplot NAME: plots/NAME.gp to plots/NAME.png; a failure is noted for
# the report, never fatal.
run_gnuplot() {
	local name=$1 plots=$REPORT_DIR/plots
	rm -f "$plots/$name.png"
	if (cd "$plots" && timeout 60 "$GNUPLOT" "$name.gp") >"$plots/$name.log" 2>&1 && is_png "$plots/$name.png"; then
		return 0
	fi
	PLOT_PROBLEMS+=("$name: gnuplot failed: $(grep -m 1 . "$plots/$name.log" || echo 'no PNG written') (plots/$name.log)")
	rm -f "$plots/$name.png"
	return 1
}

# Colours stay with a configuration from plot to plot.
config_colour() {
	case $1 in
	plain | shared) echo '#1f77b4' ;;
	shim | least-loaded | steered) echo '#d62728' ;;
	native | round-robin) echo '#2ca02c' ;;
	hashing) echo '#ff7f0e' ;;
	shim-hashing) echo '#8c564b' ;;
	p2c) echo '#9467bd' ;;
	hash) echo '#7f7f7f' ;;
	*) echo '#17becf' ;;
	esac
}

config_label() {
	case $1:$2 in
	*:native) echo "native (echo_uring)" ;;
	steering:hashing) echo "hashing (baseline)" ;;
	steering:shim-hashing) echo "shim, no program" ;;
	nginx-steering:plain) echo "plain kernel" ;;
	nginx-steering:steered) echo "shim + least-loaded" ;;
	*) echo "$2" ;;
	esac
}

panel_title() {
	case $1 in
	blocking) echo "blocking echo, $2 connection(s)" ;;
	epoll) echo "epoll echo, $2 connection(s)" ;;
	redis-get) echo "redis GET, $2 connections" ;;
	redis-set) echo "redis SET, $2 connections" ;;
	nginx) echo "nginx, $2 connections (wrk percentiles)" ;;
	proxy) echo "nginx as a reverse proxy, $2 connections (wrk percentiles)" ;;
	haproxy) echo "haproxy, $2 connections (wrk percentiles)" ;;
	steering) echo "steer_workers, $2 workers: light requests" ;;
	nginx-steering) echo "nginx, $2 workers (wrk percentiles)" ;;
	*) echo "$1, $2" ;;
	esac
}

# plot_latency NAME SOURCE_DIR TITLE WORKLOAD...: one PNG, a panel per
# workload and connection (or worker) count, a curve per configuration,
# from SOURCE_DIR/latencies.tsv.  Fails when there is nothing to plot or
# gnuplot failed.
plot_latency() {
	local name=$1 source=$2 title=$3
	local index=$source/latencies.tsv
	shift 3
	local workload group config data format file panels=0 curves script plots=$REPORT_DIR/plots
	[ -s "$index" ] || return 1
	local -a panel_plots=() panel_titles=()
	for workload in "$@"; do
		for group in $(awk -F'\t' -v w="$workload" '$1 == w { print $3 }' "$index" | sort -n -u); do
			curves=
			for config in $(awk -F'\t' -v w="$workload" -v g="$group" '$1 == w && $3 == g && !seen[$2]++ { print $2 }' "$index"); do
				data=data/$workload-$group-$config.dat
				awk -F'\t' -v w="$workload" -v g="$group" -v c="$config" '$1 == w && $3 == g && $2 == c { print $5 "\t" $6 }' "$index" |
					while IFS=$'\t' read -r format file; do
						[ -s "$source/$file" ] && histogram_of "$format" "$source/$file"
					done | percentile_curve >"$plots/$data"
				[ -s "$plots/$data" ] || continue
				curves+="${curves:+, }'$data' using 1:2 with linespoints pointtype 7 pointsize 0.4 linewidth 2 linecolor rgb '$(config_colour "$config")' title '$(config_label "$workload" "$config")'"
			done
			[ -n "$curves" ] || continue
			panels=$((panels + 1))
			panel_plots+=("$curves")
			panel_titles+=("$(panel_title "$workload" "$group")")
		done
	done
	[ "$panels" -gt 0 ] || return 1
	script=$plots/$name.gp
	{
		printf '# SPDX-License-Identifier: MIT\n# Written by tools/bench/report.sh: %s, one curve per configuration.\n' "$title"
		printf 'set terminal %s size %d,460 noenhanced\n' "$PLOT_TERMINAL" $((panels > 1 ? 600 * panels : 720))
		printf 'set output "%s.png"\n' "$name"
		printf 'set multiplot layout 1,%d title "%s"\n' "$panels" "$title"
		# The curves rise to the right: the lower right corner stays free.
		printf 'set logscale xy\nset grid xtics ytics mytics\nset key bottom right\n'
		printf 'set xtics ("" 1, "50" 2, "90" 10, "99" 100, "99.9" 1000, "99.99" 10000, "99.999" 100000, "99.9999" 1000000)\n'
		printf 'set format y "%%.0f"\nset xrange [1:*]\nset autoscale xfixmax\nset xlabel "percentile (%%)"\nset ylabel "latency (us)"\n'
		local i
		for ((i = 0; i < panels; i++)); do
			printf 'set title "%s"\nplot %s\n' "${panel_titles[$i]}" "${panel_plots[$i]}"
		done
		printf 'unset multiplot\n'
	} >"$script"
	run_gnuplot "$name"
}

# The sessions (each a new connection) every worker served under the
# skewed load, means over the rounds, a panel per worker count.
plot_placement() {
	local name=placement-steering runs=$REPORT_DIR/steering/runs.tsv plots=$REPORT_DIR/plots
	local workers panels=0 script data
	[ -s "$runs" ] || return 1
	local -a panel_data=() panel_workers=()
	for workers in $(cut -f1 "$runs" | sort -n -u); do
		data=data/placement-$workers.dat
		awk -F'\t' -v w="$workers" '
			$1 == w {
				if (!($2 in rounds)) order[++configs] = $2
				rounds[$2]++
				spreads[$2] = spreads[$2] " " $5
				n = split($10, count, ",")
				for (i = 1; i <= n; i++) sum[$2, i] += count[i]
			}
			function median(list,    n, i, j, swap, values) {
				n = split(list, values, " ")
				for (i = 2; i <= n; i++)
					for (j = i; j > 1 && values[j - 1] + 0 > values[j] + 0; j--) {
						swap = values[j]; values[j] = values[j - 1]; values[j - 1] = swap
					}
				return (n % 2) ? values[(n + 1) / 2] : (values[n / 2] + values[n / 2 + 1]) / 2
			}
			END {
				for (c = 1; c <= configs; c++) {
					config = order[c]
					line = sprintf("\"%s (%.2f)\"", config, median(spreads[config]))
					for (i = 1; i <= w; i++) line = line sprintf(" %.1f", sum[config, i] / rounds[config])
					print line
				}
			}' "$runs" >"$plots/$data"
		[ -s "$plots/$data" ] || continue
		panels=$((panels + 1))
		panel_data+=("$data")
		panel_workers+=("$workers")
	done
	[ "$panels" -gt 0 ] || return 1
	script=$plots/$name.gp
	{
		printf '# SPDX-License-Identifier: MIT\n# Written by tools/bench/report.sh: sessions per worker under the steering benchmark'"'"'s skewed load.\n'
		printf 'set terminal %s size %d,500 noenhanced\n' "$PLOT_TERMINAL" $((panels > 1 ? 620 * panels : 720))
		printf 'set output "%s.png"\n' "$name"
		printf 'set multiplot layout 1,%d title "connections (sessions) per worker under skewed load; load spread (max/mean) in brackets"\n' "$panels"
		printf 'set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n'
		printf 'set xtics rotate by 35 right scale 0\nset yrange [0:*]\nset grid ytics\nset key outside right top vertical\n'
		printf 'set ylabel "sessions served in the measured time"\nset bmargin 7\n'
		local i
		for ((i = 0; i < panels; i++)); do
			printf 'set title "%s workers"\n' "${panel_workers[$i]}"
			printf 'plot for [worker_column = 2:%d] "%s" using worker_column:xtic(1) title sprintf("worker %%d", worker_column - 2)\n' \
				$((panel_workers[i] + 1)) "${panel_data[$i]}"
		done
		printf 'unset multiplot\n'
	} >"$script"
	run_gnuplot "$name"
}

# ---- the report -----------------------------------------------------------------

# commands_block DIR WORKLOAD...: the server and client command of each
# configuration, as recorded by the scripts, folded away.
commands_block() {
	local dir=$1
	shift
	local commands=$dir/commands.tsv workload
	[ -s "$commands" ] || return 0
	printf '<details><summary>server and client commands of each configuration</summary>\n\n```\n'
	for workload in "$@"; do
		awk -F'\t' -v w="$workload" '$1 == w {
			printf "# %s, %s, %s\nserver: %s\nclient: %s\n", $1, $2, $3, $4, $5 }' "$commands"
	done
	printf '```\n\n</details>\n\n'
}

# table_section TITLE DIR TABLE COMMAND_KEY WORKLOADS INTRODUCTION
table_section() {
	local title=$1 dir=$2 table=$3 command_key=$4 workloads=$5 introduction=$6 status command
	printf '## %s\n\n%s\n\n' "$title" "$introduction"
	command=$(fact "$REPORT_DIR/run.tsv" "$command_key")
	if [ -s "$dir/$table" ]; then
		[ -n "$command" ] && printf 'Produced by, from the top of the tree, with its output (BENCH_OUT) in [%s](%s):\n\n```\n%s\n```\n\n' \
			"${dir#"$REPORT_DIR"/}/" "$LINK_PREFIX${dir#"$REPORT_DIR"/}/" "$command"
		# shellcheck disable=SC2086
		commands_block "$dir" $workloads
		cat "$dir/$table"
		printf '\n'
	else
		case $command_key in echo_command) status=$(fact "$REPORT_DIR/run.tsv" echo_status) ;; *) status=$(fact "$REPORT_DIR/run.tsv" steer_status) ;; esac
		printf '_No table: %s._\n\n' "$(case $status in
			skipped*) echo "${status#skipped: }" ;;
			'') echo "not run" ;;
			0) echo "this part was not selected (WORKLOADS, CONFIGS or NGINX)" ;;
			*) if [ -f "$dir/log.txt" ]; then
				echo "the benchmark exited with status $status before writing it; see ${LINK_PREFIX}${dir#"$REPORT_DIR"/}/log.txt"
			else
				echo "the benchmark exited with status $status before it started (its messages went to the terminal)"
			fi ;;
			esac)"
	fi
}

perf_fact() {
	local setup=$REPORT_DIR/echo/setup.txt events=$REPORT_DIR/echo/events.tsv runs=$REPORT_DIR/echo/runs.tsv perf counted total
	perf=$(sed -n 's/.* perf=\([^ ]*\).*/\1/p' "$setup" 2>/dev/null | head -n 1)
	if [ -z "$perf" ]; then
		echo "not known (run.sh did not run)"
	elif [ "$perf" = none ]; then
		echo "no: perf with the raw_syscalls:sys_enter tracepoint was not usable, so the syscalls/req columns read n/a"
	else
		# System calls are column 5 of runs.tsv and column 6 of events.tsv.
		counted=$({ awk -F'\t' '$5 ~ /^[0-9]+$/' "$runs" 2>/dev/null; awk -F'\t' '$6 ~ /^[0-9]+$/' "$events" 2>/dev/null; } | wc -l)
		total=$(cat "$runs" "$events" 2>/dev/null | wc -l)
		echo "yes: $perf ($(fact "$REPORT_DIR/machine.tsv" perf_version)) counted the servers' system calls (raw_syscalls:sys_enter) in $counted of $total runs"
	fi
}

write_report() {
	local quick seconds echo_status steer_status image name machine=$REPORT_DIR/machine.tsv
	quick=$(fact "$REPORT_DIR/run.tsv" quick)
	seconds=$(fact "$REPORT_DIR/run.tsv" seconds)
	echo_status=$(fact "$REPORT_DIR/run.tsv" echo_status)
	steer_status=$(fact "$REPORT_DIR/run.tsv" steer_status)

	printf '# ringsteer benchmark report, %s\n\n' "$(fact "$machine" date)"
	printf 'Written by `make bench%s` (`tools/bench/report.sh`)%s. ' "$([ "$quick" = 1 ] && echo ' QUICK=1')" \
		"$([ -n "$seconds" ] && echo ", which took $seconds s")"
	printf 'Throughput and latency move between runs on a shared machine: the ratio rows compare runs made next to each other, and system call counts are the stable figures.\n\n'
	if [ -n "$echo_status" ] && [ "$echo_status" != 0 ]; then
		printf '**run.sh exited with status %s**: some runs failed (see %secho/log.txt); the tables hold the runs that succeeded.\n\n' "$echo_status" "$LINK_PREFIX"
	fi
	case $steer_status in
	'' | 0 | skipped*) ;;
	*) printf '**steer_bench.sh exited with status %s** (see %ssteering/log.txt).\n\n' "$steer_status" "$LINK_PREFIX" ;;
	esac

	printf '## Machine\n\n| | |\n|---|---|\n'
	printf '| date | %s |\n' "$(fact "$machine" date)"
	printf '| git commit | %s |\n' "$(fact "$machine" commit)"
	printf '| kernel | %s |\n' "$(fact "$machine" kernel)"
	printf '| CPU | %s |\n' "$(fact "$machine" cpu)"
	printf '| memory | %s |\n' "$(fact "$machine" memory)"
	printf '| load average at start | %s |\n' "$(fact "$machine" load)"
	printf '| liburing | %s |\n' "$(fact "$machine" liburing)"
	printf '| libbpf | %s |\n' "$(fact "$machine" libbpf)"
	printf '| nginx | %s |\n' "$(fact "$machine" nginx)"
	printf '| redis | %s; %s |\n' "$(fact "$machine" redis)" "$(fact "$machine" redis_benchmark)"
	printf '| wrk | %s |\n' "$(fact "$machine" wrk)"
	printf '| gnuplot | %s |\n' "$(fact "$machine" gnuplot)"
	printf '| perf counted system calls | %s |\n\n' "$(perf_fact)"

	table_section "Blocking echo server (issue 2)" "$REPORT_DIR/echo" blocking.md echo_command blocking \
		'`tests/servers/echo_threaded` (thread per connection), plain and under the shim, driven by `tools/bench/loadgen` (closed loop, 64-byte messages).'
	table_section "Event-loop servers (issue 3)" "$REPORT_DIR/echo" events.md echo_command "epoll redis-get redis-set nginx proxy haproxy" \
		'`tools/bench/echo_epoll` plain and under the shim, with `tools/bench/echo_uring` (io_uring itself) as native; redis-server under redis-benchmark GET and SET; nginx with 4 workers under wrk; the same nginx as a reverse proxy (upstream connections kept alive, `RINGSTEER_CLIENT=1`) in front of a plain nginx; haproxy in front of that nginx, the same way.'
	table_section "Connection steering (issue 4)" "$REPORT_DIR/steering" steering.md steer_command steering \
		'The pre-fork test server `tests/servers/steer_workers` under `tools/bench/steer_load` (reconnecting sessions, 12.5 percent heavy, 12.5 percent hot): one shared listener, SO_REUSEPORT hashing, and the shim with each steering policy.'
	table_section "nginx with and without steering (issue 4)" "$REPORT_DIR/steering" nginx.md steer_command nginx-steering \
		'nginx, 4 workers answering `return 200`, under wrk: plain kernel against the shim with the least-loaded program.'

	printf '## Plots\n\n'
	if [ -n "$PLOTS_SKIPPED" ]; then
		printf 'Plots skipped: %s.\n\n' "$PLOTS_SKIPPED"
		return 0
	fi
	printf '### Latency distributions\n\n'
	printf 'One curve per configuration, the runs of all repetitions merged: latency (log scale) against the percentile, on a scale that gives each further nine (90%%, 99%%, 99.9%%) the same room. '
	printf 'loadgen and steer_load write every request into log-bucketed histograms (`--histogram`); for redis the curve is redis-benchmark'"'"'s own percentile distribution; wrk prints only its 50th, 75th, 90th and 99th percentiles and its maximum, so the nginx curves have those points alone.\n\n'
	for image in "${LATENCY_IMAGES[@]}"; do
		name=${image%%|*}
		printf '#### %s\n\n![%s](%splots/%s)\n\n' "${image#*|}" "${image#*|}" "$LINK_PREFIX" "$name"
	done
	if [ ${#LATENCY_IMAGES[@]} = 0 ]; then
		if [ ${#PLOT_PROBLEMS[@]} -gt 0 ]; then
			printf '_No latency plot could be drawn: see below._\n\n'
		else
			printf '_No latency data to plot._\n\n'
		fi
	fi
	printf '### Per-worker connection placement under skewed load\n\n'
	if [ -n "$PLACEMENT_IMAGE" ]; then
		printf 'The sessions each worker served in the measured time of the steering benchmark (means over its rounds). Every session is a new connection, so this is where each configuration placed the connections; the number after each configuration is its load spread, the max/mean of the table.\n\n'
		printf '![connections per worker under skewed load](%splots/%s)\n\n' "$LINK_PREFIX" "$PLACEMENT_IMAGE"
	elif printf '%s\n' "${PLOT_PROBLEMS[@]}" | grep -q '^placement-steering:'; then
		printf '_The placement chart could not be drawn: see below._\n\n'
	else
		printf '_No steering runs to plot._\n\n'
	fi
	for name in "${PLOT_PROBLEMS[@]}"; do
		printf -- '- Not shown: %s\n' "$name"
	done
	[ ${#PLOT_PROBLEMS[@]} -gt 0 ] && printf '\n'
	printf 'The plots'"'"' data and gnuplot scripts are in %splots/ (`gnuplot NAME.gp` there redraws one).\n' "$LINK_PREFIX"
}

# Makes the plots, then the report, for the data in REPORT_DIR.
render() {
	local entry name source title workloads
	LATENCY_IMAGES=()
	PLACEMENT_IMAGE=
	PLOT_PROBLEMS=()
	PLOTS_SKIPPED=
	if find_plot_terminal; then
		rm -rf "$REPORT_DIR/plots"
		mkdir -p "$REPORT_DIR/plots/data"
		for entry in \
			"latency-blocking|echo|blocking echo server|blocking" \
			"latency-epoll|echo|epoll echo server: plain, shim, native|epoll" \
			"latency-redis|echo|redis-server under redis-benchmark|redis-get redis-set" \
			"latency-nginx|echo|nginx and haproxy under wrk, serving and proxying|nginx proxy haproxy" \
			"latency-steering|steering|steering benchmark: light requests per configuration|steering" \
			"latency-nginx-steering|steering|nginx with and without steering|nginx-steering"; do
			IFS='|' read -r name source title workloads <<<"$entry"
			# shellcheck disable=SC2086
			plot_latency "$name" "$REPORT_DIR/$source" "$title" $workloads && LATENCY_IMAGES+=("$name.png|$title")
		done
		plot_placement && PLACEMENT_IMAGE=placement-steering.png
	else
		say "plots skipped: $PLOTS_SKIPPED"
	fi
	LINK_PREFIX=
	write_report >"$REPORT_DIR/report.md.tmp" && mv "$REPORT_DIR/report.md.tmp" "$REPORT_DIR/report.md"
}

case ${1:-} in
--render)
	[ $# = 2 ] || usage
	[ -d "$2" ] || fail "$2 is not a directory"
	REPORT_DIR=$(cd "$2" && pwd)
	[ -f "$REPORT_DIR/run.tsv" ] || fail "$REPORT_DIR has no run.tsv: not a report directory"
	render
	say "wrote $REPORT_DIR/report.md"
	exit 0
	;;
'') ;;
*) usage ;;
esac

if [ -n "${BENCH_OUT:-}" ]; then
	mkdir -p "$BENCH_OUT" || fail "cannot create $BENCH_OUT"
	REPORT_DIR=$(cd "$BENCH_OUT" && pwd)
	POINTER=
else
	RESULTS_ROOT=${RESULTS_DIR:-$REPO/bench-results}
	REPORT_DIR=$RESULTS_ROOT/$(date +%Y%m%d-%H%M%S)
	mkdir -p "$REPORT_DIR" || fail "cannot create $REPORT_DIR"
	REPORT_DIR=$(cd "$REPORT_DIR" && pwd)
	POINTER=$(cd "$RESULTS_ROOT" && pwd)/latest-report.md
fi
# The scripts' own BENCH_OUT is set per script below, never inherited.
unset BENCH_OUT
trap 'say "interrupted"; exit 130' INT TERM

run_benchmarks "$REPORT_DIR"
render
if [ -n "$POINTER" ]; then
	# A copy beside the run directories, its links leading into its own.
	LINK_PREFIX=$(basename "$REPORT_DIR")/
	write_report >"$POINTER.tmp" && mv "$POINTER.tmp" "$POINTER"
fi
say "wrote $REPORT_DIR/report.md${POINTER:+ (and $POINTER)}"
echo_status=$(fact "$REPORT_DIR/run.tsv" echo_status)
steer_status=$(fact "$REPORT_DIR/run.tsv" steer_status)
[ "$echo_status" = 0 ] || exit 1
case $steer_status in 0 | skipped*) ;; *) exit 1 ;; esac
exit 0
