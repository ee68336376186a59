// SPDX-License-Identifier: MIT
/*
 * ringsteer: the operator's tool.
 *
 *   ringsteer run [--policy P] [--] COMMAND [ARGS...]
 *                                          run COMMAND with the shim preloaded
 *                                          (with --policy, steering loaded)
 *   ringsteer stats [--json] [--all] [--dir DIR] [PID...]
 *                                          what the shim is doing, per process
 *                                          and per lane
 *
 * The counters come from the files each process under the shim publishes
 * (preload/stats_layout.h); reading them makes no request to the process.
 * The steering commands (load, unload, status) are in steer.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stats_layout.h"
#include "steer_commands.h"

#define COUNTER_FIELDS(X) \
	X(sockets_open) X(sockets_total) X(accepts) X(bytes_received) X(bytes_sent) \
	X(ring_enters) X(ring_ops) X(kernel_ops) X(fallbacks) X(send_queue_waits) X(flusher_sends) \
	X(calls_answered)

struct totals {
#define DECLARE(name) int64_t name;
	COUNTER_FIELDS(DECLARE)
#undef DECLARE
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: ringsteer run [--policy P] [--dir DIR] [--] COMMAND [ARGS...]\n"
		"       ringsteer stats [--json] [--all] [--dir DIR] [PID...]\n"
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

struct stats_options {
	bool json;
	bool all;
	const char *dir;
	pid_t *pids;
	int pid_count;
};

static bool process_alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

static int load(const char *path, struct rs_stats_header *header)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t got;

	if (fd < 0)
		return -1;
	got = read(fd, header, sizeof(*header));
	close(fd);
	if (got != (ssize_t)sizeof(*header) || header->magic != RS_STATS_MAGIC)
		return -1;
	if (header->lanes_used > RS_STATS_MAX_LANES)
		header->lanes_used = RS_STATS_MAX_LANES;
	return 0;
}

static void add_lane(struct totals *totals, const struct rs_lane_stats *lane)
{
#define ADD(name) totals->name += (int64_t)lane->name;
	COUNTER_FIELDS(ADD)
#undef ADD
}

static void add_totals(struct totals *into, const struct totals *from)
{
#define ADD(name) into->name += from->name;
	COUNTER_FIELDS(ADD)
#undef ADD
}

static void print_counters_json(const struct totals *totals)
{
	const char *separator = "";

#define PRINT(name) printf("%s\"" #name "\":%lld", separator, (long long)totals->name); separator = ",";
	COUNTER_FIELDS(PRINT)
#undef PRINT
}

static bool wanted(const struct stats_options *options, pid_t pid)
{
	if (!options->pid_count)
		return true;
	for (int i = 0; i < options->pid_count; i++)
		if (options->pids[i] == pid)
			return true;
	return false;
}

static int compare_names(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_stats_file(const struct dirent *entry)
{
	size_t length = strlen(entry->d_name);

	return !strncmp(entry->d_name, "ringsteer.", 10) && length > 16 &&
	       !strcmp(entry->d_name + length - 6, ".stats");
}

static int command_stats(int argc, char **argv)
{
	struct stats_options options = { .dir = getenv("RINGSTEER_STATS_DIR") };
	struct totals grand = { 0 };
	struct dirent **entries;
	int count, shown = 0, result = 0;
	bool *found;

	if (!options.dir || !*options.dir)
		options.dir = "/dev/shm";
	options.pids = calloc((size_t)argc, sizeof(pid_t));
	found = calloc((size_t)argc, sizeof(bool));
	if (!options.pids || !found) {
		free(options.pids);
		free(found);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		char *end;
		long pid;

		if (!strcmp(argv[i], "--json")) {
			options.json = true;
		} else if (!strcmp(argv[i], "--all")) {
			options.all = true;
		} else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
			options.dir = argv[++i];
		} else {
			pid = strtol(argv[i], &end, 10);
			if (*end || pid <= 0) {
				fprintf(stderr, "ringsteer stats: not a process id: %s\n", argv[i]);
				usage(stderr);
				free(options.pids);
				free(found);
				return 2;
			}
			options.pids[options.pid_count++] = (pid_t)pid;
		}
	}
	count = scandir(options.dir, &entries, is_stats_file, compare_names);
	if (count < 0) {
		fprintf(stderr, "ringsteer stats: cannot read %s: %s\n", options.dir, strerror(errno));
		free(options.pids);
		free(found);
		return 1;
	}
	if (options.json)
		printf("{\"processes\":[");
	else
		printf("%-8s %-5s %-8s %5s %9s %9s %14s %14s %11s %11s %10s\n", "PID", "LANE", "TID",
		       "CPU", "OPEN", "ACCEPTS", "BYTES_IN", "BYTES_OUT", "ENTERS", "RING_OPS",
		       "KERNEL_OPS");
	for (int e = 0; e < count; e++) {
		struct rs_stats_header header;
		struct totals process = { 0 };
		char path[PATH_MAX];
		bool exited;

		snprintf(path, sizeof(path), "%s/%s", options.dir, entries[e]->d_name);
		if (load(path, &header) < 0)
			continue;
		exited = header.exit_time_ns || !process_alive((pid_t)header.pid);
		if (!wanted(&options, (pid_t)header.pid) || (exited && !options.all))
			continue;
		for (int i = 0; i < options.pid_count; i++)
			if (options.pids[i] == (pid_t)header.pid)
				found[i] = true;
		add_lane(&process, &header.process);
		for (uint64_t lane = 0; lane < header.lanes_used; lane++)
			add_lane(&process, &header.lanes[lane]);
		add_totals(&grand, &process);
		if (options.json) {
			printf("%s{\"pid\":%llu,\"exited\":%s,\"io_uring\":%s,\"lanes\":[", shown ? "," : "",
			       (unsigned long long)header.pid, exited ? "true" : "false",
			       header.io_uring_available ? "true" : "false");
			for (uint64_t lane = 0; lane < header.lanes_used; lane++) {
				struct totals one = { 0 };

				add_lane(&one, &header.lanes[lane]);
				printf("%s{\"lane\":%llu,\"tid\":%llu,\"cpu\":%lld,", lane ? "," : "",
				       (unsigned long long)lane,
				       (unsigned long long)header.lanes[lane].tid,
				       (long long)header.lanes[lane].cpu);
				print_counters_json(&one);
				printf("}");
			}
			printf("],\"total\":{");
			print_counters_json(&process);
			printf("}}");
		} else {
			for (uint64_t lane = 0; lane < header.lanes_used; lane++) {
				const struct rs_lane_stats *slot = &header.lanes[lane];

				printf("%-8llu %-5llu %-8llu %5lld %9lld %9llu %14llu %14llu %11llu %11llu %10llu\n",
				       (unsigned long long)header.pid, (unsigned long long)lane,
				       (unsigned long long)slot->tid, (long long)slot->cpu,
				       (long long)slot->sockets_open, (unsigned long long)slot->accepts,
				       (unsigned long long)slot->bytes_received,
				       (unsigned long long)slot->bytes_sent,
				       (unsigned long long)slot->ring_enters,
				       (unsigned long long)slot->ring_ops,
				       (unsigned long long)slot->kernel_ops);
			}
			printf("%-8llu %-5s %-8s %5s %9lld %9lld %14lld %14lld %11lld %11lld %10lld%s%s\n",
			       (unsigned long long)header.pid, "all", "", "", (long long)process.sockets_open,
			       (long long)process.accepts, (long long)process.bytes_received,
			       (long long)process.bytes_sent, (long long)process.ring_enters,
			       (long long)process.ring_ops, (long long)process.kernel_ops,
			       header.io_uring_available ? "" : "  (io_uring unavailable: kernel path)",
			       exited ? "  (exited)" : "");
		}
		shown++;
	}
	for (int e = 0; e < count; e++)
		free(entries[e]);
	free(entries);
	if (options.json) {
		printf("],\"total\":{");
		print_counters_json(&grand);
		printf("}}\n");
	}
	for (int i = 0; i < options.pid_count; i++) {
		if (!found[i]) {
			fprintf(stderr, "ringsteer stats: no counters for process %d (not under the shim, or exited)\n",
				(int)options.pids[i]);
			result = 1;
			break;
		}
	}
	free(options.pids);
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
