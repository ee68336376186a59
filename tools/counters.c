// SPDX-License-Identifier: MIT
/*
 * Reading the counters files of the processes under the shim, for
 * `ringsteer stats` and `ringsteer top` (see counters.h).  A file is read
 * with one read(): each 64-bit counter is then one value the writer
 * stored, which is as consistent as relaxed counters get, and the process
 * is never asked for anything.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"

void totals_add_lane(struct totals *totals, const struct rs_lane_stats *lane)
{
#define ADD(name, help) totals->name += (int64_t)lane->name;
	COUNTER_FIELDS(ADD)
#undef ADD
}

void totals_add(struct totals *into, const struct totals *from)
{
#define ADD(name, help) into->name += from->name;
	COUNTER_FIELDS(ADD)
#undef ADD
}

void totals_of_process(struct totals *totals, const struct counters_process *process)
{
	memset(totals, 0, sizeof(*totals));
	totals_add_lane(totals, &process->header.process);
	for (uint64_t lane = 0; lane < process->header.lanes_used; lane++)
		totals_add_lane(totals, &process->header.lanes[lane]);
}

const char *counters_default_dir(void)
{
	const char *dir = getenv("RINGSTEER_STATS_DIR");

	return dir && *dir ? dir : "/dev/shm";
}

static bool process_alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

static int read_file(const char *path, struct rs_stats_header *header)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t got;

	if (fd < 0)
		return -errno;
	got = read(fd, header, sizeof(*header));
	close(fd);
	if (got != (ssize_t)sizeof(*header) || header->magic != RS_STATS_MAGIC)
		return -EINVAL;
	if (header->lanes_used > RS_STATS_MAX_LANES)
		header->lanes_used = RS_STATS_MAX_LANES;
	return 0;
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

int counters_read_dir(const char *dir, bool include_exited, struct counters_process **processes)
{
	struct dirent **entries;
	struct counters_process *list;
	int count, kept = 0;

	*processes = NULL;
	count = scandir(dir, &entries, is_stats_file, compare_names);
	if (count < 0)
		return -errno;
	list = calloc(count ? (size_t)count : 1, sizeof(*list));
	for (int e = 0; e < count; e++) {
		char path[PATH_MAX];
		struct counters_process *process = list ? &list[kept] : NULL;

		snprintf(path, sizeof(path), "%s/%s", dir, entries[e]->d_name);
		if (process && read_file(path, &process->header) == 0) {
			process->exited = process->header.exit_time_ns ||
					  !process_alive((pid_t)process->header.pid);
			if (include_exited || !process->exited)
				kept++;
		}
		free(entries[e]);
	}
	free(entries);
	if (!list)
		return -ENOMEM;
	*processes = list;
	return kept;
}
