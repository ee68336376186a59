/* SPDX-License-Identifier: MIT */
/*
 * Reading the counters files the processes under the shim publish
 * (preload/stats_layout.h), shared by `ringsteer stats` and `ringsteer top`.
 * COUNTER_FIELDS is the one list of counter names the tool prints: the JSON
 * keys, the Prometheus metric names and the columns all come from it.
 */
#ifndef RINGSTEER_TOOL_COUNTERS_H
#define RINGSTEER_TOOL_COUNTERS_H

#include <stdbool.h>
#include <stdint.h>

#include "stats_layout.h"

/* X(name, help): help is the meaning, for Prometheus' HELP lines. */
#define COUNTER_FIELDS(X) \
	X(sockets_open, "Accelerated sockets open now (a gauge).") \
	X(sockets_total, "Accelerated sockets ever opened.") \
	X(accepts, "Connections accepted through the ring.") \
	X(bytes_received, "Bytes received through the ring.") \
	X(bytes_sent, "Bytes sent through the ring.") \
	X(ring_enters, "io_uring_enter system calls.") \
	X(ring_ops, "Operations submitted to the ring.") \
	X(kernel_ops, "Socket calls on accelerated sockets that went the kernel path.") \
	X(fallbacks, "Sockets handed back to the kernel after an internal failure.") \
	X(send_queue_waits, "Writers that blocked on a full send queue.") \
	X(flusher_sends, "Kernel sends of queued bytes by the flusher thread.") \
	X(calls_answered, "Application socket and readiness calls the shim answered, each a system call without it.") \
	X(bytes_spliced, "Bytes splice() moved from receive buffers into pipes.")

/* Signed, as differences of them (rates) are. */
struct totals {
#define DECLARE(name, help) int64_t name;
	COUNTER_FIELDS(DECLARE)
#undef DECLARE
};

struct counters_process {
	struct rs_stats_header header;
	bool exited;
};

void totals_add_lane(struct totals *totals, const struct rs_lane_stats *lane);
void totals_add(struct totals *into, const struct totals *from);
/* A process's totals: its lanes and the work done on no lane. */
void totals_of_process(struct totals *totals, const struct counters_process *process);

/* Reads every counters file under dir, in name order; exited processes
 * (exit time set, or no such process) only with include_exited.  Sets
 * *processes (free() it) and returns how many, or -errno. */
int counters_read_dir(const char *dir, bool include_exited, struct counters_process **processes);

/* RINGSTEER_STATS_DIR, else /dev/shm. */
const char *counters_default_dir(void);

#endif
