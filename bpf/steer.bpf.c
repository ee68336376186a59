// SPDX-License-Identifier: MIT
/*
 * The steering program: for each new connection to a steered address, pick
 * the listener of the least-loaded lane of that address's group (or by
 * another policy), and when a listener closes with connections in its
 * queue, pick where each of them moves instead of being reset.
 *
 * Candidates are the slots of the group whose lane is alive and whose
 * listener is registered.  They fall in tiers, and the best non-empty tier
 * is used: 0 fine; 1 at the per-lane cap (it accepts, above its share);
 * 2 stalled (it may never accept); 3 both.  A selection can still fail (a
 * listener closed a moment ago): that slot is excluded and the choice made
 * again, so the program only gives up, and lets the kernel hash, when the
 * group has no live listener at all.  Every steered connection is counted
 * at once in the chosen member's pending figure, so a burst of SYNs spreads
 * before the lanes have accepted any of them.
 *
 * Slot scans run under bpf_loop so that the verifier checks the loop body
 * once, whatever RS_STEER_MAX_SLOTS is, and stop at the slots ever claimed.  Layouts and the load formula are
 * in steer.h.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "steer.h"

#define SK_DROP 0
#define SK_PASS 1
#define AF_INET 2
#define AF_INET6 10
#define TIER_NONE 4
/* Each failed selection excludes its slot: trying them all is bounded. */
/* Bounded by the verifier's budget; a stale slot is unregistered by the
 * attempt that finds it (below), so they do not pile up. */
#define SELECT_ATTEMPTS 16

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, RS_STEER_LISTENER_ENTRIES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u64));
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rs_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RS_STEER_MAX_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct rs_steer_slot);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rs_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct rs_steer_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rs_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RS_STEER_MEMBERS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct rs_steer_member);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rs_members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RS_STEER_MAX_GROUPS);
	__type(key, struct rs_steer_group_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rs_groups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RS_STEER_MAX_GROUPS);
	__type(key, __u32);
	__type(value, struct rs_steer_group);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rs_group_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rs_steer_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} rs_config SEC(".maps");

/* What one scan over the slots of a group knows and finds. */
struct scan {
	__u32 group;
	__u32 slot_limit;  /* slots at and above it were never claimed */
	__u64 now_ns;
	__u64 stall_ns;
	__u32 cap;
	__u32 busy_weight;
	__u64 excluded[RS_STEER_MAX_SLOTS / 64]; /* slots whose selection failed in this run */
	/* first pass: the best tier, its size and its least-loaded slot */
	__u32 best_tier;
	__u32 count;
	__u64 lowest_load;
	__u32 lowest_slot;
	/* second pass: the slots at positions wanted[0..1] of the best tier */
	__u32 wanted[2];
	__u32 position;
	__u32 found[2];
};

/* The tier and load of one slot, or false if it cannot be a candidate. */
static __always_inline bool evaluate(const struct scan *scan, __u32 slot, __u32 *tier,
				     __u64 *load)
{
	__u32 index = scan->group * RS_STEER_MAX_SLOTS + slot;
	struct rs_steer_member *member;
	struct rs_steer_slot *lane;
	__u32 connections;

	if (slot >= RS_STEER_MAX_SLOTS || (scan->excluded[slot / 64] & (1ull << (slot % 64))))
		return false;
	member = bpf_map_lookup_elem(&rs_members, &index);
	lane = bpf_map_lookup_elem(&rs_slots, &slot);
	if (!member || !lane || !member->listening || !lane->alive)
		return false;
	connections = lane->open + member->pending;
	*tier = 0;
	if (scan->cap && connections >= scan->cap)
		*tier |= 1;
	if (scan->stall_ns && scan->now_ns > lane->heartbeat_ns &&
	    scan->now_ns - lane->heartbeat_ns > scan->stall_ns)
		*tier |= 2;
	*load = 1000ull * connections + (__u64)scan->busy_weight * lane->busy;
	/* The busy share is smoothed over a window, too slow for one heavy
	 * request: a lane in the middle of a long loop turn (its heartbeat
	 * is the turn's start; a lane in its wait has none) also weighs a
	 * connection per millisecond of that turn. */
	if (lane->heartbeat_ns != ~0ull && scan->now_ns > lane->heartbeat_ns) {
		__u64 running_us = (scan->now_ns - lane->heartbeat_ns) / 1000;

		*load += running_us < RS_STEER_RUNNING_LOAD_MAX ? running_us
								: RS_STEER_RUNNING_LOAD_MAX;
	}
	return true;
}

static long rank_slot(__u32 slot, void *context)
{
	struct scan *scan = context;
	__u32 tier;
	__u64 load;

	if (!evaluate(scan, slot, &tier, &load))
		return 0;
	if (tier < scan->best_tier) {
		scan->best_tier = tier;
		scan->count = 0;
		scan->lowest_load = ~0ull;
	}
	if (tier == scan->best_tier) {
		scan->count++;
		if (load < scan->lowest_load) {
			scan->lowest_load = load;
			scan->lowest_slot = slot;
		}
	}
	return 0;
}

static long find_positions(__u32 slot, void *context)
{
	struct scan *scan = context;
	__u32 tier;
	__u64 load;

	if (!evaluate(scan, slot, &tier, &load) || tier != scan->best_tier)
		return 0;
	if (scan->position == scan->wanted[0])
		scan->found[0] = slot;
	if (scan->position == scan->wanted[1])
		scan->found[1] = slot;
	scan->position++;
	return 0;
}

/* The load of a slot known to be a candidate (for p2c). */
static __always_inline __u64 load_of(const struct scan *scan, __u32 slot)
{
	__u32 tier;
	__u64 load = ~0ull;

	if (!evaluate(scan, slot, &tier, &load))
		return ~0ull;
	return load;
}

/* The slot to try next, or -1 when no candidate is left. */
static __always_inline int choose(struct sk_reuseport_md *ctx, struct scan *scan,
				  __u32 policy, struct rs_steer_group *group)
{
	__u32 first, second;

	scan->best_tier = TIER_NONE;
	scan->count = 0;
	scan->lowest_load = ~0ull;
	scan->lowest_slot = 0;
	bpf_loop(scan->slot_limit, rank_slot, scan, 0);
	if (scan->best_tier == TIER_NONE || !scan->count)
		return -1;
	switch (policy) {
	case RS_STEER_P2C:
		if (scan->count == 1)
			return (int)scan->lowest_slot;
		first = bpf_get_prandom_u32() % scan->count;
		second = (first + 1 + bpf_get_prandom_u32() % (scan->count - 1)) % scan->count;
		break;
	case RS_STEER_ROUND_ROBIN:
		first = (__u32)(__sync_fetch_and_add(&group->next, 1) % scan->count);
		second = first;
		break;
	case RS_STEER_HASH:
		/* As the kernel spreads over a group: the 4-tuple hash scaled
		 * to the number of sockets. */
		first = (__u32)(((__u64)ctx->hash * scan->count) >> 32);
		second = first;
		break;
	default:
		return (int)scan->lowest_slot;
	}
	scan->wanted[0] = first;
	scan->wanted[1] = second;
	scan->position = 0;
	scan->found[0] = scan->found[1] = RS_STEER_MAX_SLOTS;
	bpf_loop(scan->slot_limit, find_positions, scan, 0);
	if (scan->found[0] >= RS_STEER_MAX_SLOTS)
		return (int)scan->lowest_slot;
	if (policy == RS_STEER_P2C && scan->found[1] < RS_STEER_MAX_SLOTS &&
	    load_of(scan, scan->found[1]) < load_of(scan, scan->found[0]))
		return (int)scan->found[1];
	return (int)scan->found[0];
}

/* The group of the address being connected to: from the listener the
 * kernel found (reuse->sk), which is bound to the group's own address. */
static __always_inline __u32 *find_group(struct sk_reuseport_md *ctx)
{
	struct rs_steer_group_key key = { 0 };
	struct bpf_sock *sk = ctx->sk;

	if (!sk)
		return 0;
	key.family = sk->family;
	key.port = sk->src_port;
	if (key.family == AF_INET) {
		key.address[0] = sk->src_ip4;
	} else if (key.family == AF_INET6) {
		key.address[0] = sk->src_ip6[0];
		key.address[1] = sk->src_ip6[1];
		key.address[2] = sk->src_ip6[2];
		key.address[3] = sk->src_ip6[3];
	} else {
		return 0;
	}
	return bpf_map_lookup_elem(&rs_groups, &key);
}

static __always_inline int steer(struct sk_reuseport_md *ctx)
{
	__u32 zero = 0, *group_id, index, policy, registration;
	struct rs_steer_config *config;
	struct rs_steer_state *state;
	struct rs_steer_member *member;
	struct rs_steer_group *group;
	struct scan scan = { 0 };
	int slot;

	config = bpf_map_lookup_elem(&rs_config, &zero);
	state = bpf_map_lookup_elem(&rs_state, &zero);
	group_id = find_group(ctx);
	if (!config || !state || !group_id || *group_id >= RS_STEER_MAX_GROUPS)
		return SK_PASS;
	group = bpf_map_lookup_elem(&rs_group_ids, group_id);
	if (!group)
		return SK_PASS;
	policy = config->policy;
	scan.group = *group_id;
	scan.slot_limit = state->slot_limit < RS_STEER_MAX_SLOTS ? state->slot_limit
								 : RS_STEER_MAX_SLOTS;
	scan.now_ns = bpf_ktime_get_ns();
	scan.stall_ns = (__u64)config->stall_ms * 1000000ull;
	scan.cap = config->max_conns_per_lane;
	scan.busy_weight = config->busy_weight;
	for (int attempt = 0; attempt < SELECT_ATTEMPTS; attempt++) {
		slot = choose(ctx, &scan, policy, group);
		if (slot < 0 || slot >= RS_STEER_MAX_SLOTS)
			break;
		index = scan.group * RS_STEER_MAX_SLOTS + (__u32)slot;
		member = bpf_map_lookup_elem(&rs_members, &index);
		if (!member)
			break;
		/* The lane fills the sockarray before it publishes a new
		 * registration, so a failure under this one means its listener
		 * is gone (a process that died without closing): unregister it,
		 * unless the lane registered again meanwhile. */
		registration = member->listening;
		if (bpf_sk_select_reuseport(ctx, &rs_listeners, &index, 0) == 0) {
			__sync_fetch_and_add(&member->pending, 1);
			__sync_fetch_and_add(&member->steered, 1);
			return SK_PASS;
		}
		if (registration)
			__sync_val_compare_and_swap(&member->listening, registration, 0);
		scan.excluded[(__u32)slot / 64] |= 1ull << ((__u32)slot % 64);
	}
	/* No live lane listener: the application's own, if it registered it;
	 * else the kernel's hashing is all that is left. */
	index = RS_STEER_FALLBACK(scan.group);
	bpf_sk_select_reuseport(ctx, &rs_listeners, &index, 0);
	return SK_PASS;
}

SEC("sk_reuseport")
int rs_select(struct sk_reuseport_md *ctx)
{
	return steer(ctx);
}

/* Attached with BPF_SK_REUSEPORT_SELECT_OR_MIGRATE: called for new
 * connections as rs_select is, and with ctx->migrating_sk set for each
 * request of a listener that closes. */
SEC("sk_reuseport/migrate")
int rs_migrate(struct sk_reuseport_md *ctx)
{
	return steer(ctx);
}
