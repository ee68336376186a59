// SPDX-License-Identifier: MIT
/*
 * poll and select: in this version they only make the calling thread's
 * queued sends leave before it blocks, because an application that waits
 * for readiness is often waiting for the answer to what it just wrote.
 * Readiness itself is the kernel's, exact for sockets that are not in event
 * mode, whose received bytes stay in the kernel until read (epoll.c puts a
 * socket in event mode).
 */
#include "ringsteer.h"

static inline long kernel_result(long result)
{
	return result < 0 ? -errno : result;
}

long rs_poll(struct pollfd *fds, nfds_t count, int timeout)
{
	rs_lane_flush_before_block();
	return kernel_result(REAL(poll)(fds, count, timeout));
}

long rs___poll_chk(struct pollfd *fds, nfds_t count, int timeout, size_t fds_length)
{
	rs_lane_flush_before_block();
	return kernel_result(REAL(__poll_chk)(fds, count, timeout, fds_length));
}

long rs_ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout,
	      const sigset_t *mask)
{
	rs_lane_flush_before_block();
	return kernel_result(REAL(ppoll)(fds, count, timeout, mask));
}

long rs_select(int count, fd_set *readable, fd_set *writable, fd_set *exceptional,
	       struct timeval *timeout)
{
	rs_lane_flush_before_block();
	return kernel_result(REAL(select)(count, readable, writable, exceptional, timeout));
}

long rs_pselect(int count, fd_set *readable, fd_set *writable, fd_set *exceptional,
		const struct timespec *timeout, const sigset_t *mask)
{
	rs_lane_flush_before_block();
	return kernel_result(REAL(pselect)(count, readable, writable, exceptional, timeout, mask));
}
