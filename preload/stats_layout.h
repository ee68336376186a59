/* SPDX-License-Identifier: MIT */
/*
 * The layout of the counters a process under the shim publishes, shared by
 * the library (writer) and tools/ringsteer (reader).
 *
 * Each process maps one file, <stats dir>/ringsteer.<pid>.stats (mode 0600,
 * default directory /dev/shm), holding a header and one slot per lane.  Counters
 * are updated with relaxed atomic adds: no system call and no lock on the
 * hot path.  Readers take a consistent-enough snapshot by reading each
 * 64-bit value once.
 */
#ifndef RINGSTEER_STATS_LAYOUT_H
#define RINGSTEER_STATS_LAYOUT_H

#include <stdint.h>

#define RS_STATS_MAGIC     0x5253544154530002ull /* "RSTATS", layout 2 */
#define RS_STATS_MAX_LANES 256

/* One lane's counters (a slot is reused by the next lane once its thread
 * exits, so the counters of a slot only grow).  tools/ringsteer.c lists the
 * same names. */
struct rs_lane_stats {
	uint64_t tid;             /* thread that owns the lane, 0 if unused */
	int64_t  cpu;             /* pinned core, -1 if not pinned */
	uint64_t sockets_open;    /* accelerated sockets this lane opened, now open */
	uint64_t sockets_total;   /* accelerated sockets this lane ever opened */
	uint64_t accepts;         /* connections accepted through the ring */
	uint64_t bytes_received;  /* bytes received through the ring */
	uint64_t bytes_sent;      /* bytes sent through the ring */
	uint64_t ring_enters;     /* io_uring_enter system calls */
	uint64_t ring_ops;        /* operations submitted to the ring */
	uint64_t kernel_ops;      /* socket calls on accelerated sockets that went the kernel path */
	uint64_t fallbacks;       /* sockets handed back to the kernel after an internal failure */
	uint64_t send_queue_waits;/* writers that blocked on a full send queue */
	uint64_t flusher_sends;   /* kernel sends of queued bytes (the flusher, a close, a full queue) */
	/* Socket and readiness calls of the application the shim answered
	 * (reads, writes, accepts on accelerated sockets, epoll_wait, poll
	 * and select of sets with some): each one a system call without it. */
	uint64_t calls_answered;
	/* Bytes splice() took from receive buffers into pipes: received
	 * ahead, so the kernel no longer had them to splice. */
	uint64_t bytes_spliced;
	uint64_t reserved[1];
};

struct rs_stats_header {
	uint64_t magic;
	uint64_t pid;
	uint64_t start_time_ns;   /* CLOCK_REALTIME when the shim started */
	uint64_t exit_time_ns;    /* CLOCK_REALTIME when the process exited, or 0 */
	uint64_t lanes_used;      /* slots 0..lanes_used-1 may hold data */
	uint64_t io_uring_available; /* 0 if the shim runs everything on the kernel path */
	uint64_t keep;            /* RINGSTEER_STATS_KEEP: not removed once the process is gone */
	uint64_t reserved[9];
	/* Work done on no lane (the flusher's sends); part of the totals. */
	struct rs_lane_stats process;
	struct rs_lane_stats lanes[RS_STATS_MAX_LANES];
};

#endif
