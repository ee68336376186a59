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
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "ringsteer.h"

#define TABLE_MIN_SIZE 65536
#define TABLE_MAX_SIZE (1 << 24)

static _Atomic(struct rs_socket *) *table;
static int table_size;

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
