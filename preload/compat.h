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

/* Kernel 6.15: epoll_wait as an operation. */
#define RS_IORING_OP_EPOLL_WAIT 57

#endif
