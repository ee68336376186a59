// SPDX-License-Identifier: MIT
/*
 * ringsteer: the operator's tool.
 *
 *   ringsteer run [--policy P] [--] COMMAND [ARGS...]
 *                                          run COMMAND with the shim preloaded
 *                                          (with --policy, steering loaded;
 *                                          without root, RINGSTEER_STEER=1)
 *   ringsteer stats [--json | --prometheus] [--all] [--dir DIR] [PID...]
 *                                          what the shim is doing, per process
 *                                          and per lane
 *   ringsteer top [-b] [-d S] [-n N] ...   the same live, with rates (top.c)
 *
 * The counters come from the files each process under the shim publishes
 * (preload/stats_layout.h); reading them makes no request to the process.
 * The steering commands (load, unload, status) are in steer.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"
#include "steer_commands.h"
#include "top.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ringsteer run [--policy P] [--dir DIR] [--] COMMAND [ARGS...]\n"
		"       ringsteer stats [--json | --prometheus] [--all] [--dir DIR] [PID...]\n"
		"       ringsteer top [-b] [-d SECONDS] [-n ITERATIONS] [--all] [--dir DIR]\n"
		"                     [--bpf-dir DIR] [PID...]\n"
		STEER_USAGE
		"       ringsteer --version\n");
}

/* ---- run ------------------------------------------------------------------ */

static bool readable(const char *path)
{
	return access(path, R_OK) == 0;
}

/* The library next to this tool: the build tree (tools/../preload) or an
 * installation (bin/../lib). */
static int find_library(char *path, size_t size)
{
	const char *configured = getenv("RINGSTEER_LIB");
	char self[PATH_MAX - 64];
	ssize_t length;
	char *slash;

	if (configured && *configured) {
		snprintf(path, size, "%s", configured);
		return readable(path) ? 0 : -1;
	}
	length = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (length < 0)
		return -1;
	self[length] = 0;
	slash = strrchr(self, '/');
	if (!slash)
		return -1;
	*slash = 0;
	snprintf(path, size, "%s/../preload/libringsteer.so", self);
	if (readable(path))
		return 0;
	snprintf(path, size, "%s/../lib/libringsteer.so", self);
	if (readable(path))
		return 0;
	snprintf(path, size, "%s/../lib/ringsteer/libringsteer.so", self);
	return readable(path) ? 0 : -1;
}

static int command_run(int argc, char **argv)
{
	char library[PATH_MAX], resolved[PATH_MAX];
	const char *existing = getenv("LD_PRELOAD");
	char *preload;
	int first = 1;

	if (first < argc && !strcmp(argv[first], "--"))
		first++;
	if (first >= argc) {
		usage(stderr);
		return 2;
	}
	if (find_library(library, sizeof(library)) < 0) {
		fprintf(stderr, "ringsteer: cannot find libringsteer.so (set RINGSTEER_LIB)\n");
		return 1;
	}
	if (realpath(library, resolved))
		snprintf(library, sizeof(library), "%s", resolved);
	if (existing && *existing) {
		if (asprintf(&preload, "%s:%s", existing, library) < 0)
			return 1;
	} else {
		preload = library;
	}
	setenv("LD_PRELOAD", preload, 1);
	execvp(argv[first], argv + first);
	fprintf(stderr, "ringsteer: cannot run %s: %s\n", argv[first], strerror(errno));
	return 127;
}

/* ---- stats ---------------------------------------------------------------- */

enum stats_format { FORMAT_TABLE, FORMAT_JSON, FORMAT_PROMETHEUS };

static void print_counters_json(const struct totals *totals)
{
	const char *separator = "";

#define PRINT(name, help) printf("%s\"" #name "\":%lld", separator, (long long)totals->name); separator = ",";
	COUNTER_FIELDS(PRINT)
#undef PRINT
}

static void print_json(const struct counters_process *processes, int count, const struct totals *grand)
{
	printf("{\"processes\":[");
	for (int p = 0; p < count; p++) {
		const struct rs_stats_header *header = &processes[p].header;
		struct totals process;

		totals_of_process(&process, &processes[p]);
		printf("%s{\"pid\":%llu,\"exited\":%s,\"io_uring\":%s,\"lanes\":[", p ? "," : "",
		       (unsigned long long)header->pid, processes[p].exited ? "true" : "false",
		       header->io_uring_available ? "true" : "false");
		for (uint64_t lane = 0; lane < header->lanes_used; lane++) {
			struct totals one = { 0 };

			totals_add_lane(&one, &header->lanes[lane]);
			printf("%s{\"lane\":%llu,\"tid\":%llu,\"cpu\":%lld,", lane ? "," : "",
			       (unsigned long long)lane, (unsigned long long)header->lanes[lane].tid,
			       (long long)header->lanes[lane].cpu);
			print_counters_json(&one);
			printf("}");
		}
		printf("],\"total\":{");
		print_counters_json(&process);
		printf("}}");
	}
	printf("],\"total\":{");
	print_counters_json(grand);
	printf("}}\n");
}

/* One family per counter, every sample of it together (the exposition
 * format wants a family's samples contiguous).  Per lane with labels pid
 * and lane; lane="none" is the work done on no lane, so that summing a
 * pid's lanes gives its total.  The ringsteer_all_ families are the sums
 * over every process shown, which survive processes coming and going. */
static void print_prometheus_family(const struct counters_process *processes, int count,
				    const struct totals *grand, const char *name, const char *help,
				    size_t offset)
{
	bool gauge = !strcmp(name, "sockets_open");
	bool has_suffix = strlen(name) > 6 && !strcmp(name + strlen(name) - 6, "_total");
	const char *suffix = gauge || has_suffix ? "" : "_total";
	const char *type = gauge ? "gauge" : "counter";

	printf("# HELP ringsteer_%s%s %s\n# TYPE ringsteer_%s%s %s\n", name, suffix, help, name,
	       suffix, type);
	for (int p = 0; p < count; p++) {
		const struct rs_stats_header *header = &processes[p].header;

		for (uint64_t lane = 0; lane <= header->lanes_used; lane++) {
			const struct rs_lane_stats *slot =
				lane < header->lanes_used ? &header->lanes[lane] : &header->process;
			struct totals one = { 0 };
			char label[24];

			totals_add_lane(&one, slot);
			if (lane < header->lanes_used)
				snprintf(label, sizeof(label), "%llu", (unsigned long long)lane);
			else
				snprintf(label, sizeof(label), "none");
			printf("ringsteer_%s%s{pid=\"%llu\",lane=\"%s\"} %lld\n", name, suffix,
			       (unsigned long long)header->pid, label,
			       (long long)*(const int64_t *)((const char *)&one + offset));
		}
	}
	printf("# HELP ringsteer_all_%s%s %s Sum over every process shown.\n"
	       "# TYPE ringsteer_all_%s%s %s\nringsteer_all_%s%s %lld\n",
	       name, suffix, help, name, suffix, type, name, suffix,
	       (long long)*(const int64_t *)((const char *)grand + offset));
}

static void print_prometheus(const struct counters_process *processes, int count,
			     const struct totals *grand)
{
#define FAMILY(name, help) \
	print_prometheus_family(processes, count, grand, #name, help, offsetof(struct totals, name));
	COUNTER_FIELDS(FAMILY)
#undef FAMILY
	printf("# HELP ringsteer_process_exited 1 if the process has exited (shown with --all).\n"
	       "# TYPE ringsteer_process_exited gauge\n");
	for (int p = 0; p < count; p++)
		printf("ringsteer_process_exited{pid=\"%llu\"} %d\n",
		       (unsigned long long)processes[p].header.pid, processes[p].exited);
	printf("# HELP ringsteer_process_io_uring 0 if io_uring was unavailable to the process "
	       "(everything on the kernel path).\n# TYPE ringsteer_process_io_uring gauge\n");
	for (int p = 0; p < count; p++)
		printf("ringsteer_process_io_uring{pid=\"%llu\"} %d\n",
		       (unsigned long long)processes[p].header.pid,
		       processes[p].header.io_uring_available ? 1 : 0);
	printf("# HELP ringsteer_processes Processes shown.\n# TYPE ringsteer_processes gauge\n"
	       "ringsteer_processes %d\n", count);
}

static void print_table(const struct counters_process *processes, int count)
{
	printf("%-8s %-5s %-8s %5s %9s %9s %14s %14s %11s %11s %10s\n", "PID", "LANE", "TID",
	       "CPU", "OPEN", "ACCEPTS", "BYTES_IN", "BYTES_OUT", "ENTERS", "RING_OPS",
	       "KERNEL_OPS");
	for (int p = 0; p < count; p++) {
		const struct rs_stats_header *header = &processes[p].header;
		struct totals process;

		totals_of_process(&process, &processes[p]);
		for (uint64_t lane = 0; lane < header->lanes_used; lane++) {
			const struct rs_lane_stats *slot = &header->lanes[lane];

			printf("%-8llu %-5llu %-8llu %5lld %9lld %9llu %14llu %14llu %11llu %11llu %10llu\n",
			       (unsigned long long)header->pid, (unsigned long long)lane,
			       (unsigned long long)slot->tid, (long long)slot->cpu,
			       (long long)slot->sockets_open, (unsigned long long)slot->accepts,
			       (unsigned long long)slot->bytes_received,
			       (unsigned long long)slot->bytes_sent,
			       (unsigned long long)slot->ring_enters,
			       (unsigned long long)slot->ring_ops,
			       (unsigned long long)slot->kernel_ops);
		}
		printf("%-8llu %-5s %-8s %5s %9lld %9lld %14lld %14lld %11lld %11lld %10lld%s%s\n",
		       (unsigned long long)header->pid, "all", "", "", (long long)process.sockets_open,
		       (long long)process.accepts, (long long)process.bytes_received,
		       (long long)process.bytes_sent, (long long)process.ring_enters,
		       (long long)process.ring_ops, (long long)process.kernel_ops,
		       header->io_uring_available ? "" : "  (io_uring unavailable: kernel path)",
		       processes[p].exited ? "  (exited)" : "");
	}
}

static int command_stats(int argc, char **argv)
{
	enum stats_format format = FORMAT_TABLE;
	const char *dir = counters_default_dir();
	struct counters_process *processes;
	struct totals grand = { 0 };
	pid_t *pids;
	bool *found, all = false;
	int pid_count = 0, count, shown = 0, result = 0;

	pids = calloc((size_t)argc, sizeof(pid_t));
	found = calloc((size_t)argc, sizeof(bool));
	if (!pids || !found) {
		free(pids);
		free(found);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		char *end;
		long pid;

		if (!strcmp(argv[i], "--json")) {
			format = FORMAT_JSON;
		} else if (!strcmp(argv[i], "--prometheus")) {
			format = FORMAT_PROMETHEUS;
		} else if (!strcmp(argv[i], "--all")) {
			all = true;
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			dir = argv[++i];
		} else {
			pid = strtol(argv[i], &end, 10);
			if (*end || pid <= 0) {
				fprintf(stderr, "ringsteer stats: not a process id: %s\n", argv[i]);
				usage(stderr);
				free(pids);
				free(found);
				return 2;
			}
			pids[pid_count++] = (pid_t)pid;
		}
	}
	count = counters_read_dir(dir, all, &processes);
	if (count < 0) {
		fprintf(stderr, "ringsteer stats: cannot read %s: %s\n", dir, strerror(-count));
		free(pids);
		free(found);
		return 1;
	}
	/* Keep the processes asked for, in place. */
	for (int p = 0; p < count; p++) {
		bool keep = pid_count == 0;

		for (int i = 0; i < pid_count; i++) {
			if (pids[i] == (pid_t)processes[p].header.pid) {
				found[i] = true;
				keep = true;
			}
		}
		if (!keep)
			continue;
		if (shown != p)
			processes[shown] = processes[p];
		shown++;
	}
	for (int p = 0; p < shown; p++) {
		struct totals process;

		totals_of_process(&process, &processes[p]);
		totals_add(&grand, &process);
	}
	if (format == FORMAT_JSON)
		print_json(processes, shown, &grand);
	else if (format == FORMAT_PROMETHEUS)
		print_prometheus(processes, shown, &grand);
	else
		print_table(processes, shown);
	for (int i = 0; i < pid_count; i++) {
		if (!found[i]) {
			fprintf(stderr, "ringsteer stats: no counters for process %d (not under the shim, or exited)\n",
				(int)pids[i]);
			result = 1;
			break;
		}
	}
	free(processes);
	free(pids);
	free(found);
	return result;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "run")) {
		int consumed = steer_run_options(argc - 1, argv + 1);

		if (consumed < 0)
			return -consumed;
		return command_run(argc - 1 - consumed, argv + 1 + consumed);
	}
	if (!strcmp(argv[1], "load") || !strcmp(argv[1], "unload") || !strcmp(argv[1], "status"))
		return steer_command(argc - 1, argv + 1);
	if (!strcmp(argv[1], "stats"))
		return command_stats(argc - 1, argv + 1);
	if (!strcmp(argv[1], "top"))
		return command_top(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version")) {
		printf("ringsteer %s\n", RINGSTEER_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "ringsteer: unknown command: %s\n", argv[1]);
	usage(stderr);
	return 2;
}
