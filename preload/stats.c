// SPDX-License-Identifier: MIT
/*
 * Publishes per-lane counters in a shared memory file that tools/ringsteer
 * reads (layout in stats_layout.h).
 *
 * The file is created with O_EXCL and O_NOFOLLOW, mode 0600, so nothing else
 * can read or plant it.  Each lane owns one slot and updates it with plain
 * stores.  If the file cannot be created the counters still run in private
 * memory, and one warning says so.  At exit, with RINGSTEER_LOG=info, one
 * line gives the process's totals.
 *
 * A process killed by a signal cannot remove its file, and tmpfs keeps it
 * (33 KB each) for good: the first lane of every process removes the files
 * of this user's dead processes, unless they asked to be kept.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringsteer.h"

static struct rs_stats_header *header;
static struct rs_stats_header private_header;
static char path[320];
static bool published;
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static bool io_uring_available = true;
static bool swept;

RS_HIDDEN struct rs_lane_stats *rs_process_stats = &private_header.process;
/* Slots whose lane's thread exited, for the next lane to continue. */
static unsigned free_slots[RS_STATS_MAX_LANES];
static unsigned free_slot_count;
static unsigned next_shared_slot;

static uint64_t realtime_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

static void publish(void)
{
	int fd = -1;
	void *memory;

	published = false;
	header = &private_header;
	memset(header, 0, sizeof(*header));
	snprintf(path, sizeof(path), "%s/ringsteer.%d.stats", rs_config.stats_dir, (int)getpid());
	for (int attempt = 0; attempt < 4 && fd < 0; attempt++) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0 || errno != EEXIST)
			break;
		/* Left by an earlier process with our pid.  Another user's,
		 * in a sticky directory, cannot be removed: a name of our
		 * own then (the tools read the pid from the file). */
		if (unlink(path) < 0 && (errno == EPERM || errno == EACCES))
			snprintf(path, sizeof(path), "%s/ringsteer.%d.%u.stats", rs_config.stats_dir,
				 (int)getpid(), (unsigned)getuid());
	}
	if (fd < 0) {
		rs_warn("cannot create %s (%s): counters will not be visible to ringsteer stats",
			path, strerror(errno));
		goto fill;
	}
	if (ftruncate(fd, sizeof(*header)) < 0)
		goto fail;
	memory = mmap(NULL, sizeof(*header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (memory == MAP_FAILED)
		goto fail;
	REAL(close)(fd);
	header = memory;
	published = true;
	goto fill;
fail:
	rs_warn("cannot map %s (%s): counters will not be visible to ringsteer stats", path,
		strerror(errno));
	REAL(close)(fd);
	unlink(path);
fill:
	rs_process_stats = &header->process;
	free_slot_count = 0;
	next_shared_slot = 0;
	header->pid = (uint64_t)getpid();
	header->start_time_ns = realtime_ns();
	header->keep = rs_config.stats_keep;
	header->io_uring_available = io_uring_available;
	for (int i = 0; i < RS_STATS_MAX_LANES; i++)
		header->lanes[i].cpu = -1;
	atomic_store_explicit((_Atomic uint64_t *)&header->magic, RS_STATS_MAGIC,
			      memory_order_release);
}

void rs_stats_init(void)
{
	publish();
}

void rs_stats_set_io_uring(bool available)
{
	io_uring_available = available;
	if (header)
		header->io_uring_available = available;
}

void rs_stats_atfork_child(void)
{
	/* The parent's mapping is shared with us: leave it to the parent. */
	if (published)
		munmap(header, sizeof(*header));
	pthread_mutex_init(&slot_lock, NULL);
	publish();
}

/* The pid a counters file's name gives (ringsteer.PID.stats or
 * ringsteer.PID.UID.stats), or 0 if the name is not one of ours. */
static pid_t pid_of_name(const char *name)
{
	const char *rest;
	char *end;
	long pid;

	if (strncmp(name, "ringsteer.", 10))
		return 0;
	rest = name + 10;
	if (*rest < '1' || *rest > '9')
		return 0;
	pid = strtol(rest, &end, 10);
	if (*end == '.' && end[1] >= '0' && end[1] <= '9')
		strtol(end + 1, &end, 10);
	if (strcmp(end, ".stats") || pid > INT32_MAX)
		return 0;
	return (pid_t)pid;
}

/* Whether the file at name, in directory, is a counters file of its pid
 * that nobody asked to keep. */
static bool left_by(int directory, const char *name, pid_t pid)
{
	struct rs_stats_header prefix;
	ssize_t got;
	int fd;

	fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return false;
	got = pread(fd, &prefix, offsetof(struct rs_stats_header, process), 0);
	REAL(close)(fd);
	return got == (ssize_t)offsetof(struct rs_stats_header, process) &&
	       prefix.magic == RS_STATS_MAGIC && prefix.pid == (uint64_t)pid && !prefix.keep;
}

static void sweep_dead_files(void)
{
	int saved_errno = errno, directory, removed = 0;
	uid_t user = geteuid();
	pid_t self = getpid();
	struct dirent *entry;
	DIR *listing;

	listing = opendir(rs_config.stats_dir);
	if (!listing)
		goto out;
	directory = dirfd(listing);
	while ((entry = readdir(listing))) {
		pid_t pid = pid_of_name(entry->d_name);
		struct stat status;

		if (!pid || pid == self ||
		    fstatat(directory, entry->d_name, &status, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(status.st_mode) || status.st_uid != user)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		if (left_by(directory, entry->d_name, pid) &&
		    unlinkat(directory, entry->d_name, 0) == 0)
			removed++;
	}
	closedir(listing);
	if (removed)
		rs_debug("removed the counters files of %d dead processes from %s", removed,
			 rs_config.stats_dir);
out:
	errno = saved_errno;
}

struct rs_lane_stats *rs_stats_lane_slot(unsigned *index)
{
	pthread_mutex_lock(&slot_lock);
	/* Once per process: a child forked after its parent's first lane
	 * inherits the flag, as the parent already swept. */
	if (!swept) {
		swept = true;
		sweep_dead_files();
	}
	if (free_slot_count) {
		*index = free_slots[--free_slot_count];
	} else if (header->lanes_used < RS_STATS_MAX_LANES) {
		*index = (unsigned)header->lanes_used;
		atomic_store_explicit((_Atomic uint64_t *)&header->lanes_used, header->lanes_used + 1,
				      memory_order_release);
	} else {
		/* More live lanes than slots: share, the adds are atomic. */
		*index = next_shared_slot++ % RS_STATS_MAX_LANES;
	}
	pthread_mutex_unlock(&slot_lock);
	return &header->lanes[*index];
}

void rs_stats_lane_release(unsigned index)
{
	pthread_mutex_lock(&slot_lock);
	if (index < RS_STATS_MAX_LANES && free_slot_count < RS_STATS_MAX_LANES) {
		bool listed = false;

		for (unsigned i = 0; i < free_slot_count; i++)
			listed |= free_slots[i] == index;
		if (!listed)
			free_slots[free_slot_count++] = index;
	}
	pthread_mutex_unlock(&slot_lock);
}

/* With RINGSTEER_LOG=info, one line of the process's totals, so that what
 * the shim did survives a counters file that is removed now.  Runs from
 * atexit, also in forked children: nothing here allocates, and errno is
 * the application's again on return. */
static void log_exit_summary(void)
{
	struct rs_lane_stats total = { 0 };

	if (rs_config.log_level < RS_LOG_INFO || !header)
		return;
	for (uint64_t i = 0; i <= header->lanes_used && i <= RS_STATS_MAX_LANES; i++) {
		const struct rs_lane_stats *lane = i == 0 ? &header->process : &header->lanes[i - 1];

		total.accepts += lane->accepts;
		total.bytes_received += lane->bytes_received;
		total.bytes_sent += lane->bytes_sent;
		total.ring_enters += lane->ring_enters;
		total.ring_ops += lane->ring_ops;
		total.calls_answered += lane->calls_answered;
		total.kernel_ops += lane->kernel_ops;
		total.fallbacks += lane->fallbacks;
		total.sockets_total += lane->sockets_total;
	}
	rs_info("exit: lanes=%llu sockets_total=%llu accepts=%llu bytes_received=%llu "
		"bytes_sent=%llu calls_answered=%llu ring_enters=%llu ring_ops=%llu "
		"kernel_ops=%llu fallbacks=%llu",
		(unsigned long long)header->lanes_used, (unsigned long long)total.sockets_total,
		(unsigned long long)total.accepts, (unsigned long long)total.bytes_received,
		(unsigned long long)total.bytes_sent, (unsigned long long)total.calls_answered,
		(unsigned long long)total.ring_enters, (unsigned long long)total.ring_ops,
		(unsigned long long)total.kernel_ops, (unsigned long long)total.fallbacks);
}

/* exec keeps the pid, and the new image's counters replace this file
 * (publish).  One to be kept moves aside first, under a name of its own
 * (the tools read the pid inside), marked exited, and unmarked if the exec
 * fails. */
void rs_stats_exec(bool failed)
{
	static unsigned execs;
	char moved[sizeof(path)];
	int saved_errno = errno;

	if (!published)
		goto out;
	if (failed) {
		header->exit_time_ns = 0;
		goto out;
	}
	if (!rs_config.stats_keep)
		goto out;
	header->exit_time_ns = realtime_ns();
	for (int attempt = 0; attempt < 16; attempt++) {
		snprintf(moved, sizeof(moved), "%s/ringsteer.%d.%u.stats", rs_config.stats_dir,
			 (int)getpid(), 1000000u + execs++);
		if (link(path, moved) == 0) {
			unlink(path);
			memcpy(path, moved, sizeof(path));
			break;
		}
		if (errno != EEXIST)
			break;
	}
out:
	errno = saved_errno;
}

void rs_stats_exit(void)
{
	int saved_errno = errno;

	log_exit_summary();
	if (published) {
		if (rs_config.stats_keep)
			header->exit_time_ns = realtime_ns();
		else
			unlink(path);
	}
	errno = saved_errno;
}
