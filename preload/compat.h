/* SPDX-License-Identifier: MIT */
/*
 * io_uring definitions newer than the liburing 2.3 headers Debian ships.
 *
 * Everything here is probed at run time before use (ring setup flags by
 * retrying without them on -EINVAL, opcodes with io_uring_get_probe_ring,
 * features from params.features), so a newer constant on an older kernel
 * only costs a fallback.  liburing.h brings liburing/io_uring.h, which shares
 * its include guard with <linux/io_uring.h>: include only liburing.h.
 */
#ifndef RINGSTEER_COMPAT_H
#define RINGSTEER_COMPAT_H

#include <liburing.h>

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

/* Kernel 6.10: send and receive bundles (several buffers in one operation). */
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif

/* Kernel 6.12: incremental consumption of provided buffers. */
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

/* Kernel 6.12: a wait for several completions may end early once one has
 * come and min_wait_usec (the pad of io_uring_getevents_arg) has passed. */
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif

/* Makes the prepared SQEs visible to the kernel and returns how many wait
 * for submission: what liburing 2.3 does inside io_uring_submit, kept
 * internal there.  Its SQ array is filled once at setup, so only the tail
 * moves (no SQPOLL here). */
static inline unsigned rs_compat_flush_sq(struct io_uring *ring)
{
	struct io_uring_sq *sq = &ring->sq;
	unsigned tail = sq->sqe_tail;

	if (sq->sqe_head != tail) {
		sq->sqe_head = tail;
		io_uring_smp_store_release(sq->ktail, tail);
	}
	return tail - *sq->khead;
}

/* Kernel 6.3: io_uring_register naming the ring by its registered index. */
#ifndef IORING_REGISTER_USE_REGISTERED_RING
#define IORING_REGISTER_USE_REGISTERED_RING (1U << 31)
#endif

/* Kernel 6.15: epoll_wait as an operation. */
#define RS_IORING_OP_EPOLL_WAIT 57

#endif
