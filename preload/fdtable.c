// SPDX-License-Identifier: MIT
/*
 * The fd table: which file descriptors are sockets the shim carries.
 *
 * Indexed by the real fd number (accelerated sockets keep their kernel fd, so
 * dup, fork, exec and fd_set users keep working).  The table is one lazily
 * touched mapping sized by the hard RLIMIT_NOFILE; fds past it simply take
 * the kernel path.
 *
 * Lookups take no lock.  Socket objects are type-stable: they are recycled
 * through a free list and never returned to malloc, so a lookup racing with
 * a close can always touch the object, and takes a reference only if the
 * count is not zero and the table still points to it afterwards.
 *
 * The shim's own descriptors (rings, wake eventfds, BPF maps, lanes'
 * listeners, private duplicates of sockets) live at high numbers and are
 * marked in a bitmap beside the table: the application's close, close_range
 * and closefrom pass them by, as they would pass numbers never opened, and
 * the numbers it is given are the ones it would get without the shim.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "ringsteer.h"

#define TABLE_MIN_SIZE 65536
#define TABLE_MAX_SIZE (1 << 24)

static _Atomic(struct rs_socket *) *table;
static int table_size;
static _Atomic uint64_t *private_bits;
static _Atomic int highest_private = -1;

int rs_fdtable_init(void)
{
	struct rlimit limit;
	size_t size = TABLE_MIN_SIZE;
	void *memory;

	if (!getrlimit(RLIMIT_NOFILE, &limit) && limit.rlim_max != RLIM_INFINITY &&
	    limit.rlim_max > size)
		size = limit.rlim_max;
	if (size > TABLE_MAX_SIZE)
		size = TABLE_MAX_SIZE;
	memory = mmap(NULL, size * sizeof(*table), PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (memory == MAP_FAILED)
		return -errno;
	table = memory;
	table_size = (int)size;
	rs_scan_for_leaks(memory, size * sizeof(*table));
	memory = mmap(NULL, size / 8, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (memory != MAP_FAILED)
		private_bits = memory;
	return 0;
}

int rs_fdtable_size(void)
{
	return table_size;
}

static bool ref_if_live(struct rs_socket *socket)
{
	int refs = atomic_load_explicit(&socket->refs, memory_order_relaxed);

	while (refs > 0) {
		if (atomic_compare_exchange_weak_explicit(&socket->refs, &refs, refs + 1,
							  memory_order_acquire,
							  memory_order_relaxed))
			return true;
	}
	return false;
}

struct rs_socket *rs_fd_get(int fd)
{
	struct rs_socket *socket;

	if (unlikely(fd < 0 || fd >= table_size))
		return NULL;
	socket = atomic_load_explicit(&table[fd], memory_order_acquire);
	if (likely(!socket))
		return NULL;
	if (!ref_if_live(socket))
		return NULL;
	if (atomic_load_explicit(&table[fd], memory_order_acquire) != socket ||
	    (socket->fd != fd && !socket->app_fds)) {
		rs_socket_unref(socket);
		return NULL;
	}
	return socket;
}

void rs_fd_install(int fd, struct rs_socket *socket)
{
	struct rs_socket *stale;

	if (fd < 0 || fd >= table_size) {
		rs_socket_unref(socket);
		return;
	}
	stale = atomic_exchange_explicit(&table[fd], socket, memory_order_acq_rel);
	if (stale) {
		/* The fd was closed behind our back (a raw system call, or
		 * close_range on an older C library): its state is meaningless. */
		rs_debug("fd %d: dropping state left from an unseen close", fd);
		rs_socket_forget(stale);
	}
}

struct rs_socket *rs_fd_remove(int fd)
{
	if (fd < 0 || fd >= table_size)
		return NULL;
	return atomic_exchange_explicit(&table[fd], NULL, memory_order_acq_rel);
}

/* ---- the shim's own descriptors ---------------------------------------------- */

/* Where the shim's own numbers start: above what a server of ordinary size
 * uses, below FD_SETSIZE's end under the common soft limit of 1024, and low
 * enough that the kernel's table for the process stays small. */
static int private_fd_base(void)
{
	struct rlimit limit;

	if (getrlimit(RLIMIT_NOFILE, &limit) || limit.rlim_cur == RLIM_INFINITY ||
	    limit.rlim_cur >= 2048)
		return 1024;
	return (int)(limit.rlim_cur * 3 / 4);
}

static void mark_private(int fd)
{
	int highest;

	if (!private_bits || fd < 0 || fd >= table_size)
		return;
	atomic_fetch_or_explicit(&private_bits[fd / 64], 1ull << (fd % 64), memory_order_release);
	highest = atomic_load_explicit(&highest_private, memory_order_relaxed);
	while (fd > highest &&
	       !atomic_compare_exchange_weak_explicit(&highest_private, &highest, fd,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

bool rs_fd_is_private(int fd)
{
	if (!private_bits || fd < 0 || fd >= table_size)
		return false;
	return atomic_load_explicit(&private_bits[fd / 64], memory_order_acquire) &
	       (1ull << (fd % 64));
}

int rs_fd_duplicate_private(int fd)
{
	int duplicate = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, private_fd_base());

	if (duplicate < 0)
		duplicate = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 3);
	if (duplicate < 0)
		return -errno;
	mark_private(duplicate);
	return duplicate;
}

int rs_fd_make_private(int fd)
{
	int saved_errno = errno;
	int moved;

	if (fd < 0)
		return fd;
	moved = rs_fd_duplicate_private(fd);
	if (moved >= 0) {
		REAL(close)(fd);
		fd = moved;
	} else {
		mark_private(fd);
	}
	errno = saved_errno;
	return fd;
}

void rs_fd_forget_private(int fd)
{
	if (!private_bits || fd < 0 || fd >= table_size)
		return;
	atomic_fetch_and_explicit(&private_bits[fd / 64], ~(1ull << (fd % 64)),
				  memory_order_release);
}

int rs_fd_close_private(int fd)
{
	rs_fd_forget_private(fd);
	return REAL(close)(fd);
}

int rs_fd_next_private(int from, int last)
{
	int highest = atomic_load_explicit(&highest_private, memory_order_relaxed);

	if (!private_bits || from < 0)
		return -1;
	if (last > highest)
		last = highest;
	for (int fd = from; fd <= last;) {
		uint64_t word = atomic_load_explicit(&private_bits[fd / 64], memory_order_acquire) >>
				(fd % 64);

		if (word) {
			int found = fd + __builtin_ctzll(word);

			return found <= last ? found : -1;
		}
		fd = (fd / 64 + 1) * 64;
	}
	return -1;
}
