/* SPDX-License-Identifier: MIT */
/*
 * The layouts shared by the steering program (bpf/steer.bpf.c), its loader
 * (tools/steer.c) and the shim (preload/steer.c): map names, sizes and the
 * values of every map, pinned under one bpffs directory.
 *
 * Words.  A *group* is one reuseport group: every listener of one TCP
 * address (family, local address, local port).  A *slot* is one lane of one
 * process, system-wide: the lane claims a slot once, then owns one listener
 * per group it accepts on, at index group * RS_STEER_MAX_SLOTS + slot of
 * the sockarray.  Load is a property of the lane (its thread is busy for
 * every port at once); what is steered and not yet accepted is per listener.
 *
 * Load of a slot for a group, in thousandths of a connection:
 *
 *     load = 1000 * (open + pending) + busy_weight * busy
 *            + min(running_us, RS_STEER_RUNNING_LOAD_MAX)
 *
 * open: connections the lane has open (published by the lane); pending:
 * connections the program steered to this listener that the lane has not
 * accepted yet (added by the program, subtracted by the lane); busy: the
 * share of time the lane's thread spends outside its wait, smoothed, per
 * mille; busy_weight (config, default RS_STEER_DEFAULT_BUSY_WEIGHT): how
 * many connections a fully busy thread is worth; running_us: how long the
 * lane's current loop turn has run (0 while it waits), since the smoothed
 * busy share is too slow to see one heavy request.
 *
 * This header is included by BPF code too: fixed-size types only, no libc.
 */
#ifndef RINGSTEER_STEER_H
#define RINGSTEER_STEER_H

#include <linux/types.h>

/* 256 lanes: one per core of a large machine, over all its servers.  The
 * program's scans stop at rs_state's slot_limit: each slot costs a SYN
 * about 13 ns, and all 256 of them 3.5 us where 4 lanes are in use. */
#define RS_STEER_MAX_GROUPS 256
#define RS_STEER_MAX_SLOTS  256
#define RS_STEER_MEMBERS    (RS_STEER_MAX_GROUPS * RS_STEER_MAX_SLOTS)
/* After the members, one entry per group: the application's own listener,
 * chosen when no lane's listener is live, so that the group's other
 * sockets (lane listeners opened ahead for workers that drop root) never
 * receive the kernel's hashing. */
#define RS_STEER_FALLBACK(group) (RS_STEER_MEMBERS + (group))
#define RS_STEER_LISTENER_ENTRIES (RS_STEER_MEMBERS + RS_STEER_MAX_GROUPS)

/* Pinned names, relative to the bpffs directory (maps are pinned by libbpf
 * under their own names). */
#define RS_STEER_PIN_LISTENERS "rs_listeners"
#define RS_STEER_PIN_SLOTS     "rs_slots"
#define RS_STEER_PIN_MEMBERS   "rs_members"
#define RS_STEER_PIN_GROUPS    "rs_groups"
#define RS_STEER_PIN_GROUP_IDS "rs_group_ids"
#define RS_STEER_PIN_CONFIG    "rs_config"
#define RS_STEER_PIN_STATE     "rs_state"
#define RS_STEER_PIN_SELECT    "select"
#define RS_STEER_PIN_MIGRATE   "migrate"
#define RS_STEER_DEFAULT_DIR   "/sys/fs/bpf/ringsteer"

enum rs_steer_policy {
	RS_STEER_LEAST_LOADED = 0, /* the lowest load wins; ties go to the lowest slot */
	RS_STEER_P2C = 1,          /* the lower load of two random candidates */
	RS_STEER_ROUND_ROBIN = 2,  /* candidates in slot order, one after the other, per group */
	RS_STEER_HASH = 3,         /* the kernel's 4-tuple hash over the candidates; ignores load */
	RS_STEER_POLICY_COUNT
};

#define RS_STEER_DEFAULT_STALL_MS    1000
#define RS_STEER_DEFAULT_BUSY_WEIGHT 2
/* A long loop turn weighs at most 20 connections; past stall_ms the lane
 * is in a tier of its own. */
#define RS_STEER_RUNNING_LOAD_MAX    20000ull

/* rs_config[0], written by `ringsteer load`.  stall_ms 0: no stall
 * detection; max_conns_per_lane 0: no cap. */
struct rs_steer_config {
	__u32 policy;
	__u32 stall_ms;
	__u32 max_conns_per_lane;
	__u32 busy_weight;
};

/*
 * rs_slots[slot] (BPF_F_MMAPABLE): one lane.  The lane writes everything
 * here with plain stores, except owner_pid (claimed by compare-and-swap,
 * so that two processes cannot take one slot) and is read by the program.
 * Stall: heartbeat_ns (CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns)
 * older than stall_ms.
 */
struct rs_steer_slot {
	__u32 owner_pid;    /* 0: free */
	__u32 alive;        /* 1 while the lane runs */
	__u32 lane;         /* the lane's index in its process */
	__s32 cpu;          /* its core, -1 unknown */
	__u32 open;         /* connections the lane has open */
	__u32 busy;         /* per mille, smoothed */
	__u64 heartbeat_ns; /* last time its thread came back to its loop */
	__u64 reserved[4];
} __attribute__((aligned(64)));

/* rs_state[0] (BPF_F_MMAPABLE): what the lanes keep for the whole
 * directory.  slot_limit: one more than the highest slot ever claimed
 * (raised by compare-and-swap, never lowered; slots are claimed lowest
 * first, so it stays near the number of lanes at once). */
struct rs_steer_state {
	__u32 slot_limit;
	__u32 reserved[15];
};

/*
 * rs_members[group * RS_STEER_MAX_SLOTS + slot] (BPF_F_MMAPABLE): one
 * lane's listener in one group.  listening is the registration: 0 none,
 * else a number new for each registration, stored by the lane after the
 * listener is in the sockarray and cleared before it closes; the program
 * clears it (compare-and-swap, so never a newer one) when the listener
 * turns out to be gone.  pending and steered are atomic: the program adds,
 * the lane subtracts.
 */
struct rs_steer_member {
	__u32 listening;
	__u32 pending;      /* steered here, not yet accepted */
	__u64 steered;      /* connections steered here, ever (migrations included) */
};

/* rs_groups: (family, local address, local port) -> group id.  For AF_INET
 * the address is in address[0]; bytes in network order, port in host order
 * (as struct bpf_sock gives them).  A listener bound to the any address has
 * an all-zero address. */
struct rs_steer_group_key {
	__u32 family;
	__u32 port;
	__u32 address[4];
};

/* rs_group_ids: group id -> its key and state, to claim ids atomically
 * (BPF_NOEXIST) and to show them; next is the round-robin position. */
struct rs_steer_group {
	struct rs_steer_group_key key;
	__u64 next;
};

#endif
