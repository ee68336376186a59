// SPDX-License-Identifier: MIT
/*
 * The shim's side of connection steering: a listener per lane, and the
 * load each lane publishes for the steering program (bpf/steer.bpf.c).
 *
 * At start the pinned maps are opened (RINGSTEER_BPF_DIR) and the load
 * maps mmapped, so that a lane publishes with plain stores and no system
 * call; the descriptors are the kernel's close-on-exec ones and survive
 * fork and setuid, so a worker that drops root still publishes.  Plain
 * bpf(2) calls, no libbpf: the library stays small.  When the application
 * listens, each lane that accepts on that listener gets its own listener
 * on the same address (SO_REUSEPORT), registered in the group's slot for
 * that lane.  Without the program (nothing pinned, or pins this user may
 * not open), the same listeners work with the kernel's hashing, provided
 * net.ipv4.tcp_migrate_req is on: nothing else moves the connections queued
 * on a lane's listener when its worker exits, so with the sysctl off the
 * application's listeners stay shared, as without the shim.  Either way one
 * warning line for the whole process tree says which: at its first listen
 * when they stay shared, else at the first lane listener it opens (or
 * fails to: a worker that dropped root cannot join root's group).
 *
 * RINGSTEER_STEER: auto (default: per-lane listeners when the program is
 * loaded, or pinned where this user cannot open it), 1 (always, kernel
 * hashing when it is not loaded), 0 (never).
 */
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ringsteer.h"
#include "../bpf/steer.h"

enum steer_mode { STEER_AUTO, STEER_ALWAYS, STEER_NEVER };

static struct {
	bool wanted;      /* per-lane listeners */
	bool loaded;      /* the program and maps are there */
	int listeners;    /* the sockarray */
	int groups;
	int group_ids;
	int program;      /* attached to every group we join (migrate if present) */
	struct rs_steer_slot *slots;     /* mmapped rs_slots */
	struct rs_steer_member *members; /* mmapped rs_members */
	struct rs_steer_state *state;    /* mmapped rs_state */
	size_t slots_size;
	size_t members_size;
	/* Why the program is not used, for that line: a process that never
	 * listens (a shell, env, a client) says nothing. */
	char without_program[448];
	/* One bit per kind of warning already given, in memory shared across
	 * fork, so that pre-forked workers do not each repeat their parent's
	 * (or each other's) line. */
	_Atomic uint32_t *warned;
} steer = { .listeners = -1, .groups = -1, .group_ids = -1, .program = -1 };

#define MIGRATE_REQUESTS_SYSCTL "/proc/sys/net/ipv4/tcp_migrate_req"

/* ---- bpf(2) ------------------------------------------------------------------ */

static int bpf_call(int command, union bpf_attr *attributes)
{
	long result = syscall(__NR_bpf, command, attributes, sizeof(*attributes));

	return result < 0 ? -errno : (int)result;
}

static int bpf_open_pinned(const char *dir, const char *name)
{
	union bpf_attr attributes;
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	memset(&attributes, 0, sizeof(attributes));
	attributes.pathname = (uint64_t)(uintptr_t)path;
	fd = bpf_call(BPF_OBJ_GET, &attributes);
	/* The kernel makes bpf descriptors close-on-exec; the move to a
	 * private number says so anyway. */
	return fd < 0 ? fd : rs_fd_make_private(fd);
}

static int bpf_update(int map, const void *key, const void *value, uint64_t flags)
{
	union bpf_attr attributes;

	memset(&attributes, 0, sizeof(attributes));
	attributes.map_fd = (uint32_t)map;
	attributes.key = (uint64_t)(uintptr_t)key;
	attributes.value = (uint64_t)(uintptr_t)value;
	attributes.flags = flags;
	return bpf_call(BPF_MAP_UPDATE_ELEM, &attributes);
}

static int bpf_lookup(int map, const void *key, void *value)
{
	union bpf_attr attributes;

	memset(&attributes, 0, sizeof(attributes));
	attributes.map_fd = (uint32_t)map;
	attributes.key = (uint64_t)(uintptr_t)key;
	attributes.value = (uint64_t)(uintptr_t)value;
	return bpf_call(BPF_MAP_LOOKUP_ELEM, &attributes);
}

static int bpf_delete(int map, const void *key)
{
	union bpf_attr attributes;

	memset(&attributes, 0, sizeof(attributes));
	attributes.map_fd = (uint32_t)map;
	attributes.key = (uint64_t)(uintptr_t)key;
	return bpf_call(BPF_MAP_DELETE_ELEM, &attributes);
}

static void *map_memory(int map, size_t size)
{
	void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, map, 0);

	return memory == MAP_FAILED ? NULL : memory;
}

/* ---- start --------------------------------------------------------------------- */

static void close_maps(void)
{
	int *fds[] = { &steer.listeners, &steer.groups, &steer.group_ids, &steer.program };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			rs_fd_close_private(*fds[i]);
		*fds[i] = -1;
	}
	if (steer.slots)
		munmap(steer.slots, steer.slots_size);
	if (steer.members)
		munmap(steer.members, steer.members_size);
	if (steer.state)
		munmap(steer.state, sizeof(*steer.state));
	steer.slots = NULL;
	steer.members = NULL;
	steer.state = NULL;
	steer.loaded = false;
}

static enum steer_mode steer_mode(void)
{
	const char *value = getenv("RINGSTEER_STEER");

	if (!value || !*value || !strcmp(value, "auto"))
		return STEER_AUTO;
	if (!strcmp(value, "1"))
		return STEER_ALWAYS;
	if (!strcmp(value, "0"))
		return STEER_NEVER;
	rs_error("RINGSTEER_STEER=\"%.32s\" is not valid (expected auto, 0 or 1); using the default, auto",
		 value);
	return STEER_AUTO;
}

static int open_maps(const char *dir)
{
	int slots, members, state, result;

	steer.listeners = bpf_open_pinned(dir, RS_STEER_PIN_LISTENERS);
	steer.groups = bpf_open_pinned(dir, RS_STEER_PIN_GROUPS);
	steer.group_ids = bpf_open_pinned(dir, RS_STEER_PIN_GROUP_IDS);
	steer.program = bpf_open_pinned(dir, RS_STEER_PIN_MIGRATE);
	if (steer.program < 0)
		steer.program = bpf_open_pinned(dir, RS_STEER_PIN_SELECT);
	slots = bpf_open_pinned(dir, RS_STEER_PIN_SLOTS);
	members = bpf_open_pinned(dir, RS_STEER_PIN_MEMBERS);
	state = bpf_open_pinned(dir, RS_STEER_PIN_STATE);
	result = steer.listeners < 0 ? steer.listeners : steer.groups < 0 ? steer.groups :
		 steer.group_ids < 0 ? steer.group_ids : steer.program < 0 ? steer.program :
		 slots < 0 ? slots : members < 0 ? members : state < 0 ? state : 0;
	if (!result) {
		steer.slots_size = sizeof(struct rs_steer_slot) * RS_STEER_MAX_SLOTS;
		steer.members_size = sizeof(struct rs_steer_member) * RS_STEER_MEMBERS;
		steer.slots = map_memory(slots, steer.slots_size);
		steer.members = map_memory(members, steer.members_size);
		steer.state = map_memory(state, sizeof(*steer.state));
		if (!steer.slots || !steer.members || !steer.state)
			result = -errno;
	}
	/* The mappings keep the maps alive. */
	if (slots >= 0)
		rs_fd_close_private(slots);
	if (members >= 0)
		rs_fd_close_private(members);
	if (state >= 0)
		rs_fd_close_private(state);
	if (result)
		close_maps();
	else
		steer.loaded = true;
	return result;
}

/* Whether the kernel moves the connections queued on a reuseport listener
 * that closes to the group's other listeners when no program picks: the
 * sysctl of this network namespace (5.14 on; unreadable means no). */
static bool kernel_migrates_requests(void)
{
	char value[8] = { 0 };
	int fd = open(MIGRATE_REQUESTS_SYSCTL, O_RDONLY | O_CLOEXEC);
	ssize_t length;

	if (fd < 0)
		return false;
	length = REAL(read)(fd, value, sizeof(value) - 1);
	REAL(close)(fd);
	return length > 0 && value[0] >= '1' && value[0] <= '9';
}

/* Why the program is not used, for the warning line. */
static void describe_without_program(const char *dir, int result)
{
	if (result == -ENOENT)
		snprintf(steer.without_program, sizeof(steer.without_program),
			 "nothing is loaded under %s (`ringsteer load`, as root, loads it)", dir);
	else if (result == -EACCES || result == -EPERM)
		snprintf(steer.without_program, sizeof(steer.without_program),
			 "this user may not open %s (%s; the steering pins are root-only)", dir,
			 strerror(-result));
	else
		snprintf(steer.without_program, sizeof(steer.without_program),
			 "the program under %s is not usable (%s)", dir, strerror(-result));
}

int rs_steer_init(void)
{
	int saved_errno = errno;
	const char *dir = getenv("RINGSTEER_BPF_DIR");
	enum steer_mode mode = steer_mode();
	int result;

	close_maps();
	steer.wanted = false;
	steer.without_program[0] = 0;
	if (!dir || !*dir)
		dir = RS_STEER_DEFAULT_DIR;
	if (mode == STEER_NEVER) {
		errno = saved_errno;
		return -ENODEV;
	}
	result = open_maps(dir);
	if (result == -ENOENT && mode == STEER_AUTO) {
		/* Nothing loaded: the application's listeners stay as they are. */
	} else if (result) {
		/* Without the program nothing but the kernel's migration keeps
		 * a worker that exits from resetting what its listener holds. */
		steer.wanted = kernel_migrates_requests();
		describe_without_program(dir, result);
	} else {
		steer.wanted = true;
	}
	/* Mapped now, before the application forks, where steering may
	 * have something to say. */
	if (!steer.warned && (steer.wanted || steer.without_program[0])) {
		void *page = mmap(NULL, sizeof(*steer.warned), PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		if (page != MAP_FAILED)
			steer.warned = page;
	}
	if (steer.warned)
		atomic_store(steer.warned, 0);
	errno = saved_errno;
	return result;
}

void rs_steer_warn_once(enum rs_steer_warning which, const char *format, ...)
{
	uint32_t bit = 1u << which;
	char line[768];
	va_list arguments;
	bool first;

	va_start(arguments, format);
	vsnprintf(line, sizeof(line), format, arguments);
	va_end(arguments);
	if (steer.warned) {
		first = !(atomic_fetch_or(steer.warned, bit) & bit);
	} else {
		static _Atomic uint32_t warned_here;

		first = !(atomic_fetch_or(&warned_here, bit) & bit);
	}
	if (first)
		rs_warn("%s", line);
	else
		rs_debug("%s", line);
}

void rs_steer_listening(void)
{
	if (steer.without_program[0] && !steer.wanted)
		rs_steer_warn_once(RS_STEER_WARNED_MODE,
				   "connection steering without the program: %s: listeners stay shared, "
				   "because net.ipv4.tcp_migrate_req is 0 and a worker's own listener would "
				   "reset its queued connections when it exits (set it to 1 for a listener "
				   "per lane with the kernel's hashing)",
				   steer.without_program);
}

void rs_steer_without_program(int opened)
{
	if (!steer.without_program[0])
		return;
	if (opened >= 0)
		rs_steer_warn_once(RS_STEER_WARNED_MODE,
				   "connection steering without the program: %s: each lane gets its own "
				   "listener and the kernel hashes new connections over them, ignoring load",
				   steer.without_program);
	else if (opened == -EADDRINUSE)
		rs_steer_warn_once(RS_STEER_WARNED_MODE,
				   "connection steering without the program: %s: a process that is no "
				   "longer the user that listened (a worker that dropped root) cannot open "
				   "listeners of its own, and none is opened ahead without the program: its "
				   "lanes accept on the application's listener",
				   steer.without_program);
	else
		rs_steer_warn_once(RS_STEER_WARNED_MODE,
				   "connection steering without the program: %s: a lane's listener "
				   "cannot be opened (%s): it accepts on the application's",
				   steer.without_program, strerror(-opened));
}

void rs_steer_shutdown(void)
{
	close_maps();
	steer.wanted = false;
}

bool rs_steer_wanted(void)
{
	return steer.wanted;
}

bool rs_steer_loaded(void)
{
	return steer.loaded;
}

/* ---- slots ------------------------------------------------------------------------ */

static bool process_alive(uint32_t pid)
{
	return pid && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

/* A slot left by a dead owner may still look registered in some groups:
 * the program would only waste attempts on it. */
static void reset_members(unsigned slot)
{
	for (unsigned group = 0; group < RS_STEER_MAX_GROUPS; group++) {
		struct rs_steer_member *member = &steer.members[group * RS_STEER_MAX_SLOTS + slot];

		__atomic_store_n(&member->listening, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&member->pending, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&member->steered, 0, __ATOMIC_RELAXED);
	}
}

/* The program scans slots below the limit only: raised before the slot's
 * listeners can be registered, so it never misses one. */
static void raise_slot_limit(uint32_t limit)
{
	uint32_t seen = __atomic_load_n(&steer.state->slot_limit, __ATOMIC_ACQUIRE);

	while (seen < limit &&
	       !__atomic_compare_exchange_n(&steer.state->slot_limit, &seen, limit, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
}

int rs_steer_slot_claim(unsigned lane, int cpu)
{
	int saved_errno = errno;
	uint32_t pid = (uint32_t)getpid();

	if (!steer.loaded)
		return (int)(lane % RS_STEER_MAX_SLOTS);
	for (unsigned slot = 0; slot < RS_STEER_MAX_SLOTS; slot++) {
		struct rs_steer_slot *entry = &steer.slots[slot];
		uint32_t owner = __atomic_load_n(&entry->owner_pid, __ATOMIC_ACQUIRE);

		if (owner && (owner == pid || process_alive(owner)))
			continue;
		if (!__atomic_compare_exchange_n(&entry->owner_pid, &owner, pid, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			continue;
		__atomic_store_n(&entry->alive, 0, __ATOMIC_RELEASE);
		reset_members(slot);
		entry->lane = lane;
		entry->cpu = cpu;
		entry->open = 0;
		entry->busy = 0;
		entry->heartbeat_ns = rs_now_ns();
		__atomic_store_n(&entry->alive, 1, __ATOMIC_RELEASE);
		raise_slot_limit(slot + 1);
		errno = saved_errno;
		return (int)slot;
	}
	errno = saved_errno;
	return -ENOSPC;
}

void rs_steer_slot_release(unsigned slot)
{
	struct rs_steer_slot *entry;

	if (!steer.loaded || slot >= RS_STEER_MAX_SLOTS)
		return;
	entry = &steer.slots[slot];
	__atomic_store_n(&entry->alive, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&entry->owner_pid, 0, __ATOMIC_RELEASE);
}

void rs_steer_publish(unsigned slot, unsigned open, unsigned busy_permille)
{
	struct rs_steer_slot *entry;

	if (!steer.loaded || slot >= RS_STEER_MAX_SLOTS)
		return;
	entry = &steer.slots[slot];
	__atomic_store_n(&entry->open, open, __ATOMIC_RELAXED);
	__atomic_store_n(&entry->busy, busy_permille > 1000 ? 1000 : busy_permille, __ATOMIC_RELAXED);
	__atomic_store_n(&entry->heartbeat_ns, rs_now_ns(), __ATOMIC_RELAXED);
}

/* Dead, or dead and not yet reaped: a zombie still takes signals, and a
 * stopped or busy parent can leave one for long. */
static bool process_gone(uint32_t pid)
{
	char path[32], stat[128];
	const char *state;
	ssize_t length;
	int fd;

	if (kill((pid_t)pid, 0) < 0)
		return errno == ESRCH;
	snprintf(path, sizeof(path), "/proc/%u/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	length = REAL(read)(fd, stat, sizeof(stat) - 1);
	REAL(close)(fd);
	if (length <= 0)
		return false;
	stat[length] = 0;
	/* "pid (comm) S ...": comm may hold anything, the state follows its
	 * last parenthesis. */
	state = strrchr(stat, ')');
	return state && state[1] == ' ' && (state[2] == 'Z' || state[2] == 'X');
}

/* How often a process looks for slots whose owner died. */
#define DEAD_OWNER_SWEEP_NS 1000000000ull

/* A process killed in its wait leaves its slot looking alive and idle.
 * Most of its listeners close with it, and the program skips those; but a
 * listener opened ahead by a root parent stays open there, so the program
 * would keep choosing it and nobody would accept (until a new worker
 * claims it).  Any live lane retires such a slot: it takes the slot over
 * (so no claim can race it), marks it not alive, and frees it. */
static void retire_dead_owners(void)
{
	static _Atomic uint64_t last_sweep_ns;
	uint64_t now = rs_now_ns(), last = atomic_load_explicit(&last_sweep_ns, memory_order_relaxed);
	uint32_t self = (uint32_t)getpid();
	int saved_errno = errno;

	if (now - last < DEAD_OWNER_SWEEP_NS ||
	    !atomic_compare_exchange_strong(&last_sweep_ns, &last, now))
		return;
	for (unsigned slot = 0; slot < RS_STEER_MAX_SLOTS; slot++) {
		struct rs_steer_slot *entry = &steer.slots[slot];
		uint32_t owner = __atomic_load_n(&entry->owner_pid, __ATOMIC_ACQUIRE);
		uint64_t heartbeat = __atomic_load_n(&entry->heartbeat_ns, __ATOMIC_RELAXED);

		/* Only slots that look idle or stalled can have a dead owner. */
		if (!owner || owner == self || !__atomic_load_n(&entry->alive, __ATOMIC_ACQUIRE) ||
		    (heartbeat != UINT64_MAX && now - heartbeat < DEAD_OWNER_SWEEP_NS) ||
		    !process_gone(owner))
			continue;
		if (!__atomic_compare_exchange_n(&entry->owner_pid, &owner, self, false,
						 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			continue;
		__atomic_store_n(&entry->alive, 0, __ATOMIC_RELEASE);
		reset_members(slot);
		__atomic_store_n(&entry->owner_pid, 0, __ATOMIC_RELEASE);
		rs_info("steering slot %u: its process %u is gone; no new connection goes there", slot,
			owner);
	}
	errno = saved_errno;
}

void rs_steer_waiting(unsigned slot)
{
	/* A heartbeat in the future: a thread in its wait is idle, not
	 * stalled, however long it waits. */
	if (!steer.loaded || slot >= RS_STEER_MAX_SLOTS)
		return;
	__atomic_store_n(&steer.slots[slot].heartbeat_ns, UINT64_MAX, __ATOMIC_RELAXED);
	retire_dead_owners();
}

void rs_steer_heartbeat(unsigned slot)
{
	if (!steer.loaded || slot >= RS_STEER_MAX_SLOTS)
		return;
	__atomic_store_n(&steer.slots[slot].heartbeat_ns, rs_now_ns(), __ATOMIC_RELAXED);
}

void rs_steer_accepted(const struct rs_steer_listener *listener)
{
	struct rs_steer_member *member;
	uint32_t pending;

	if (!steer.loaded || !listener || listener->fd < 0 || listener->group >= RS_STEER_MAX_GROUPS ||
	    listener->slot >= RS_STEER_MAX_SLOTS)
		return;
	member = &steer.members[listener->group * RS_STEER_MAX_SLOTS + listener->slot];
	/* Never below zero: a connection steered before this slot was
	 * claimed, or migrated here, was not counted for it. */
	pending = __atomic_load_n(&member->pending, __ATOMIC_RELAXED);
	while (pending && !__atomic_compare_exchange_n(&member->pending, &pending, pending - 1, true,
						       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	/* Counted as open until the lane publishes its own figure. */
	__atomic_store_n(&steer.slots[listener->slot].open,
			 __atomic_load_n(&steer.slots[listener->slot].open, __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELAXED);
}

/* ---- listeners ------------------------------------------------------------------- */

static bool is_tcp_socket(int fd)
{
	int type = 0, protocol = 0;
	socklen_t length = sizeof(type);

	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &length) < 0 || type != SOCK_STREAM)
		return false;
	length = sizeof(protocol);
	return REAL(getsockopt)(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &length) == 0 &&
	       protocol == IPPROTO_TCP;
}

int rs_steer_prepare_bind(int fd, const struct sockaddr *address, socklen_t length)
{
	int saved_errno = errno, one = 1, result = 0;

	if (!steer.wanted || !address || length < sizeof(sa_family_t) ||
	    (address->sa_family != AF_INET && address->sa_family != AF_INET6) || !is_tcp_socket(fd))
		return 0;
	if (REAL(setsockopt)(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		result = -errno;
	errno = saved_errno;
	return result;
}

static void group_key_of(const struct sockaddr_storage *address, struct rs_steer_group_key *key)
{
	memset(key, 0, sizeof(*key));
	key->family = address->ss_family;
	if (address->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)address;

		key->port = ntohs(in->sin_port);
		memcpy(key->address, &in->sin_addr, sizeof(in->sin_addr));
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)address;

		key->port = ntohs(in6->sin6_port);
		memcpy(key->address, &in6->sin6_addr, sizeof(in6->sin6_addr));
	}
}

static bool group_has_listeners(uint32_t id)
{
	for (unsigned slot = 0; slot < RS_STEER_MAX_SLOTS; slot++)
		if (__atomic_load_n(&steer.members[id * RS_STEER_MAX_SLOTS + slot].listening,
				    __ATOMIC_ACQUIRE))
			return true;
	return false;
}

/* Frees the ids of groups nobody listens on any more (servers that
 * stopped, ephemeral ports).  Racing with a process about to register in
 * such a group costs that process its steering (its connections get the
 * kernel's hashing), never a wrong choice: the program cannot select a
 * listener of another reuseport group.  Returns how many were freed. */
static int reclaim_groups(void)
{
	struct rs_steer_group group;
	uint32_t mapped;
	int freed = 0;

	for (uint32_t id = 0; id < RS_STEER_MAX_GROUPS; id++) {
		if (bpf_lookup(steer.group_ids, &id, &group) < 0 || group_has_listeners(id))
			continue;
		if (bpf_lookup(steer.groups, &group.key, &mapped) == 0 && mapped == id)
			bpf_delete(steer.groups, &group.key);
		if (bpf_delete(steer.group_ids, &id) == 0)
			freed++;
	}
	return freed;
}

/* Claims a group id for key by probing from its hash.  Two processes
 * racing for one address probe the same ids in the same order, and
 * BPF_NOEXIST lets exactly one claim each id: both end with the same. */
static int claim_group(const struct rs_steer_group_key *key)
{
	uint32_t id, start = 2166136261u;
	const unsigned char *bytes = (const unsigned char *)key;
	struct rs_steer_group group;
	int result;

	for (size_t i = 0; i < sizeof(*key); i++)
		start = (start ^ bytes[i]) * 16777619u;
	for (unsigned probe = 0; probe < RS_STEER_MAX_GROUPS; probe++) {
		id = (start + probe) % RS_STEER_MAX_GROUPS;
		memset(&group, 0, sizeof(group));
		group.key = *key;
		result = bpf_update(steer.group_ids, &id, &group, BPF_NOEXIST);
		if (result == -EEXIST) {
			if (bpf_lookup(steer.group_ids, &id, &group) < 0 ||
			    memcmp(&group.key, key, sizeof(*key)))
				continue;
		} else if (result < 0) {
			return result;
		}
		result = bpf_update(steer.groups, key, &id, BPF_ANY);
		return result < 0 ? result : (int)id;
	}
	return -ENOSPC;
}

/* The group id of an address, claimed if it has none yet. */
static int group_of(const struct rs_steer_group_key *key)
{
	uint32_t id;
	int result;

	if (bpf_lookup(steer.groups, key, &id) == 0 && id < RS_STEER_MAX_GROUPS)
		return (int)id;
	result = claim_group(key);
	if (result == -ENOSPC && reclaim_groups() > 0)
		result = claim_group(key);
	return result;
}

/* Options of the application's listener that its connections inherit, or
 * that decide what it accepts: copied when they differ from a fresh
 * socket's, so nothing needing a privilege is set unless it was set. */
static const struct copied_option {
	int level, name;
} copied_options[] = {
	{ SOL_SOCKET, SO_REUSEADDR }, { SOL_SOCKET, SO_KEEPALIVE }, { SOL_SOCKET, SO_OOBINLINE },
	{ SOL_SOCKET, SO_PRIORITY }, { SOL_SOCKET, SO_MARK }, { SOL_SOCKET, SO_BINDTOIFINDEX },
	{ SOL_SOCKET, SO_RCVLOWAT }, { IPPROTO_TCP, TCP_NODELAY }, { IPPROTO_TCP, TCP_DEFER_ACCEPT },
	{ IPPROTO_TCP, TCP_FASTOPEN }, { IPPROTO_TCP, TCP_KEEPIDLE }, { IPPROTO_TCP, TCP_KEEPINTVL },
	{ IPPROTO_TCP, TCP_KEEPCNT }, { IPPROTO_TCP, TCP_MAXSEG }, { IPPROTO_TCP, TCP_USER_TIMEOUT },
	{ IPPROTO_TCP, TCP_CORK },
};
static const struct copied_option ipv4_options[] = {
	{ IPPROTO_IP, IP_FREEBIND }, { IPPROTO_IP, IP_TRANSPARENT }, { IPPROTO_IP, IP_TOS },
};
static const struct copied_option ipv6_options[] = {
	{ IPPROTO_IPV6, IPV6_V6ONLY }, { IPPROTO_IPV6, IPV6_FREEBIND },
	{ IPPROTO_IPV6, IPV6_TRANSPARENT }, { IPPROTO_IPV6, IPV6_TCLASS },
};

static void copy_options(int from, int to, const struct copied_option *options, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		int wanted = 0, current = 0;
		socklen_t length = sizeof(wanted);

		if (REAL(getsockopt)(from, options[i].level, options[i].name, &wanted, &length) < 0)
			continue;
		length = sizeof(current);
		if (REAL(getsockopt)(to, options[i].level, options[i].name, &current, &length) < 0 ||
		    current == wanted)
			continue;
		(void)REAL(setsockopt)(to, options[i].level, options[i].name, &wanted, sizeof(wanted));
	}
}

static void copy_linger(int from, int to)
{
	struct linger linger;
	socklen_t length = sizeof(linger);

	if (REAL(getsockopt)(from, SOL_SOCKET, SO_LINGER, &linger, &length) == 0 && linger.l_onoff)
		(void)REAL(setsockopt)(to, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger));
}

/* The application's backlog: a listener's TCP_INFO carries it in
 * tcpi_sacked. */
static int backlog_of(int fd)
{
	struct tcp_info info;
	socklen_t length = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (REAL(getsockopt)(fd, IPPROTO_TCP, TCP_INFO, &info, &length) < 0 ||
	    info.tcpi_state != TCP_LISTEN || !info.tcpi_sacked)
		return SOMAXCONN;
	return (int)info.tcpi_sacked;
}

/* A registration number no earlier registration of any slot had (in
 * practice): the program only unregisters the one it saw fail. */
static uint32_t new_registration(void)
{
	static _Atomic uint32_t counter;
	uint32_t value = ((uint32_t)getpid() << 12) ^ (atomic_fetch_add(&counter, 1) + 1);

	return value ? value : 1;
}

/* Joins the group's steering: the program (attaching it again is harmless
 * and covers a group that formed before the program was loaded) and the
 * sockarray slot; returns the group id. */
static int register_listener(int fd, const struct rs_steer_group_key *key, unsigned slot)
{
	uint32_t index;
	uint64_t value = (uint64_t)fd;
	struct rs_steer_member *member;
	int group, result;

	group = group_of(key);
	if (group < 0)
		return group;
	if (REAL(setsockopt)(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &steer.program,
			     sizeof(steer.program)) < 0)
		return -errno;
	index = (uint32_t)group * RS_STEER_MAX_SLOTS + slot;
	member = &steer.members[index];
	__atomic_store_n(&member->pending, 0, __ATOMIC_RELAXED);
	result = bpf_update(steer.listeners, &index, &value, BPF_ANY);
	if (result < 0)
		return result;
	__atomic_store_n(&member->listening, new_registration(), __ATOMIC_RELEASE);
	return group;
}

int rs_steer_fallback_register(int application_listener)
{
	int saved_errno = errno, group, result = 0;
	struct sockaddr_storage address;
	socklen_t length = sizeof(address);
	struct rs_steer_group_key key;
	uint64_t value = (uint64_t)application_listener;
	uint32_t index;

	if (!steer.loaded)
		return -ENODEV;
	if (getsockname(application_listener, (struct sockaddr *)&address, &length) < 0) {
		result = -errno;
		goto out;
	}
	group_key_of(&address, &key);
	group = group_of(&key);
	if (group < 0) {
		result = group;
		goto out;
	}
	if (REAL(setsockopt)(application_listener, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF,
			     &steer.program, sizeof(steer.program)) < 0) {
		result = -errno;
		goto out;
	}
	index = RS_STEER_FALLBACK((uint32_t)group);
	result = bpf_update(steer.listeners, &index, &value, BPF_ANY);
out:
	errno = saved_errno;
	return result;
}

int rs_steer_listener_register(struct rs_steer_listener *listener, unsigned slot)
{
	int saved_errno = errno, result;
	struct sockaddr_storage address;
	socklen_t length = sizeof(address);
	struct rs_steer_group_key key;

	if (!listener || listener->fd < 0 || slot >= RS_STEER_MAX_SLOTS)
		return -EINVAL;
	if (!steer.loaded)
		return -ENODEV;
	if (getsockname(listener->fd, (struct sockaddr *)&address, &length) < 0) {
		result = -errno;
		errno = saved_errno;
		return result;
	}
	group_key_of(&address, &key);
	result = register_listener(listener->fd, &key, slot);
	errno = saved_errno;
	if (result < 0)
		return result;
	listener->group = (unsigned)result;
	listener->slot = slot;
	return 0;
}

int rs_steer_listener_open(int application_listener, unsigned slot, struct rs_steer_listener *listener)
{
	int saved_errno = errno, fd = -1, one = 1, result;
	struct sockaddr_storage address;
	socklen_t length = sizeof(address);

	listener->fd = -1;
	listener->group = RS_STEER_MAX_GROUPS;
	listener->slot = RS_STEER_UNREGISTERED;
	if (slot >= RS_STEER_MAX_SLOTS && slot != RS_STEER_UNREGISTERED)
		return -EINVAL;
	if (getsockname(application_listener, (struct sockaddr *)&address, &length) < 0) {
		result = -errno;
		goto fail;
	}
	if ((address.ss_family != AF_INET && address.ss_family != AF_INET6) ||
	    !is_tcp_socket(application_listener)) {
		result = -EAFNOSUPPORT;
		goto fail;
	}
	fd = REAL(socket)(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0) {
		result = -errno;
		goto fail;
	}
	copy_options(application_listener, fd, copied_options,
		     sizeof(copied_options) / sizeof(copied_options[0]));
	if (address.ss_family == AF_INET)
		copy_options(application_listener, fd, ipv4_options,
			     sizeof(ipv4_options) / sizeof(ipv4_options[0]));
	else
		copy_options(application_listener, fd, ipv6_options,
			     sizeof(ipv6_options) / sizeof(ipv6_options[0]));
	copy_linger(application_listener, fd);
	if (REAL(setsockopt)(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    REAL(bind)(fd, (struct sockaddr *)&address, length) < 0 ||
	    REAL(listen)(fd, backlog_of(application_listener)) < 0) {
		result = -errno;
		goto fail;
	}
	listener->fd = rs_fd_make_private(fd);
	if (steer.loaded && slot != RS_STEER_UNREGISTERED) {
		result = rs_steer_listener_register(listener, slot);
		if (result < 0)
			rs_steer_warn_once(RS_STEER_WARNED_REGISTER,
					   "cannot register a lane's listener with the steering program (%s): it accepts on the application's",
					   strerror(-result));
	}
	errno = saved_errno;
	return fd;
fail:
	if (fd >= 0)
		REAL(close)(fd);
	errno = saved_errno;
	return result;
}

void rs_steer_listener_close(struct rs_steer_listener *listener)
{
	int saved_errno = errno;

	if (!listener || listener->fd < 0)
		return;
	/* Out of the choice first; the close then moves what is queued to
	 * the other listeners (the migrate program), and the kernel drops the
	 * sockarray entry. */
	if (steer.loaded && listener->group < RS_STEER_MAX_GROUPS && listener->slot < RS_STEER_MAX_SLOTS) {
		struct rs_steer_member *member =
			&steer.members[listener->group * RS_STEER_MAX_SLOTS + listener->slot];

		__atomic_store_n(&member->listening, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&member->pending, 0, __ATOMIC_RELAXED);
	}
	rs_fd_close_private(listener->fd);
	listener->fd = -1;
	errno = saved_errno;
}
