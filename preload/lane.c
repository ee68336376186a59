// SPDX-License-Identifier: MIT
/*
 * Lanes: one io_uring per thread, created lazily on the thread that first
 * does accelerated I/O, and driven only by that thread.
 *
 * A lane batches: write() only queues bytes and marks the socket dirty; the
 * next blocking call of the thread (a read, an accept) puts every dirty
 * socket's send and its own operation in one io_uring_enter, which also waits.
 * Queued bytes must still leave when the thread blocks somewhere the shim
 * does not see (sleep, a condition variable): a per-process flusher thread
 * services any lane whose owner has been away for longer than
 * RINGSTEER_FLUSH_US.  It takes the lane's lock (the owner holds it inside
 * the shim), reaps completions from the shared CQ memory and pushes queued
 * bytes with non-blocking kernel sends; it never submits to the ring, which
 * with SINGLE_ISSUER only the owner may do.
 *
 * Rings defer their task work (DEFER_TASKRUN, RINGSTEER_DEFER_TASKRUN=1)
 * where the kernel has it: completions run only when the owner enters, so
 * sends go with MSG_DONTWAIT and one that cannot finish is the flusher's.
 */
#include <limits.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ringsteer.h"

RS_HIDDEN __thread struct rs_lane *rs_current_lane;
static __thread bool lane_failed;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rs_lane *registry;
static unsigned lane_count;
static pthread_key_t lane_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* -1 unknown, 0 unavailable (everything takes the kernel path), 1 available. */
static _Atomic int io_uring_state = -1;
static unsigned setup_flags_supported;
static unsigned setup_flags_rejected;

static pthread_t flusher_thread;
static _Atomic bool flusher_running;
static _Atomic uint32_t flusher_sleeping;
static _Atomic bool flusher_stop;

uint64_t rs_now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

bool rs_io_uring_available(void)
{
	return rs_active && atomic_load_explicit(&io_uring_state, memory_order_relaxed) != 0;
}

static void lane_destroy(void *argument);

/* Whether io_uring_register takes a registered ring's index (6.3): then a
 * registered lane needs no descriptor at all.  -1: not known yet. */
static _Atomic int register_by_index_works = -1;

/* io_uring_register on the lane's ring named by its registered index.
 * Returns a negative errno on failure. */
static int register_by_index(struct rs_lane *lane, unsigned opcode, void *argument,
			     unsigned count)
{
	int saved_errno = errno;
	long ret = syscall(__NR_io_uring_register, lane->ring.enter_ring_fd,
			   opcode | IORING_REGISTER_USE_REGISTERED_RING, argument, count);

	if (ret < 0)
		ret = -errno;
	errno = saved_errno;
	return (int)ret;
}

/* io_uring_register on the lane's ring, by its fd or, once that is closed,
 * by its registered index.  Returns a negative errno on failure. */
static int lane_register(struct rs_lane *lane, unsigned opcode, void *argument, unsigned count)
{
	int saved_errno = errno;
	long ret;

	if (lane->ring.ring_fd < 0)
		return register_by_index(lane, opcode, argument, count);
	ret = syscall(__NR_io_uring_register, lane->ring.ring_fd, opcode, argument, count);
	if (ret < 0)
		ret = -errno;
	errno = saved_errno;
	return (int)ret;
}

/* Asks once, with a probe by index, which answers only where the kernel
 * understands the flag (older ones refuse the opcode). */
static bool kernel_registers_by_index(struct rs_lane *lane)
{
	int known = atomic_load(&register_by_index_works);

	if (known < 0) {
		size_t size = sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op);
		struct io_uring_probe *probe = calloc(1, size);

		known = probe && register_by_index(lane, IORING_REGISTER_PROBE, probe, 256) >= 0;
		free(probe);
		atomic_store(&register_by_index_works, known);
	}
	return known;
}

/* A thread-per-connection server would otherwise hold two descriptors
 * more per connection (the ring and the eventfd): it could run out of
 * descriptors where it would not without the shim.  Registered, and with
 * a kernel that registers by index, the ring needs its fd no more: the
 * thread's registration holds it, and goes with the thread (or an exec). */
static void drop_ring_fd(struct rs_lane *lane)
{
	if (!lane->ring_registered || !kernel_registers_by_index(lane)) {
		rs_debug("lane %u keeps its ring's descriptor (%s)", lane->index,
			 lane->ring_registered ? "the kernel registers by index from 6.3"
					       : "the ring is not registered");
		return;
	}
	rs_fd_close_private(lane->ring.ring_fd);
	lane->ring.ring_fd = -1;
}

static void make_key(void)
{
	pthread_key_create(&lane_key, lane_destroy);
}

/* Sets up the ring with the best flags this kernel has: the first failure
 * with -EINVAL drops the optional flags, and what worked is remembered. */
static int setup_ring(struct rs_lane *lane, bool defer)
{
	/* CLAMP: sixteen times the largest RINGSTEER_RING_ENTRIES is past
	 * the kernel's largest CQ (65536), which it would refuse outright. */
	unsigned wanted = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
			  IORING_SETUP_SUBMIT_ALL;
	struct io_uring_params params;
	int ret;

	if (defer)
		wanted |= IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	wanted &= ~setup_flags_rejected;
	for (;;) {
		memset(&params, 0, sizeof(params));
		params.flags = wanted;
		params.cq_entries = rs_config.ring_entries * 16;
		ret = io_uring_queue_init_params(rs_config.ring_entries, &lane->ring, &params);
		if (ret != -EINVAL || !(wanted & ~(IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP)))
			break;
		/* Drop the newest flag first. */
		if (wanted & IORING_SETUP_DEFER_TASKRUN)
			setup_flags_rejected |= IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
		else if (wanted & IORING_SETUP_SINGLE_ISSUER)
			setup_flags_rejected |= IORING_SETUP_SINGLE_ISSUER;
		else
			setup_flags_rejected |= IORING_SETUP_SUBMIT_ALL;
		wanted &= ~setup_flags_rejected;
	}
	if (ret < 0)
		return ret;
	setup_flags_supported = wanted;
	lane->cq_entries = params.cq_entries;
	lane->overflow_kept = params.features & IORING_FEAT_NODROP;
	lane->deferred = wanted & IORING_SETUP_DEFER_TASKRUN;
	/* POLL_FIRST came in 5.19, before SINGLE_ISSUER (6.0); older kernels
	 * fail a receive that asks for it. */
	lane->receive_poll_first = wanted & IORING_SETUP_SINGLE_ISSUER;
	io_uring_ring_dontfork(&lane->ring);
	return 0;
}

static void pin_lane(struct rs_lane *lane)
{
	cpu_set_t set;
	int cpu;

	lane->cpu = -1;
	if (!rs_config.pin)
		return;
	if (rs_config.cpu_count)
		cpu = rs_config.cpus[lane->index % (unsigned)rs_config.cpu_count];
	else
		cpu = (int)(lane->index % (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set)) {
		rs_warn("cannot pin lane %u to core %d", lane->index, cpu);
		return;
	}
	lane->cpu = cpu;
}

static void start_flusher(void);
static int enter_ring(struct rs_lane *lane, unsigned wait);

static struct rs_lane *lane_create(void)
{
	struct rs_lane *lane = calloc(1, sizeof(*lane));
	int ret;

	if (!lane)
		return NULL;
	ret = setup_ring(lane, rs_config.defer_taskrun);
	if (ret < 0) {
		int expected = -1;

		free(lane);
		if (atomic_compare_exchange_strong(&io_uring_state, &expected, 0)) {
			rs_stats_set_io_uring(false);
			rs_warn("io_uring is not available (%s): every socket takes the kernel path",
				strerror(-ret));
		} else if (atomic_load(&io_uring_state) == 1) {
			/* Rings worked before: a limit such as RLIMIT_NOFILE or
			 * memory.  This thread goes the kernel path. */
			rs_warn("cannot create a lane for thread %d (%s): its sockets take the kernel path",
				(int)gettid(), strerror(-ret));
		}
		return NULL;
	}
	atomic_store(&io_uring_state, 1);
	pthread_mutex_init(&lane->lock, NULL);
	/* The ring's number goes high, out of the numbers the application
	 * would be given and out of reach of its closes, for as long as the
	 * ring keeps one. */
	lane->ring.ring_fd = lane->ring.enter_ring_fd = rs_fd_make_private(lane->ring.ring_fd);
	/* Entered by index, the kernel skips looking the ring's file up on
	 * every enter.  Only the owner enters (SINGLE_ISSUER), and the index
	 * is the owner's; a full table (16 per thread) leaves the fd in use. */
	lane->ring_registered = io_uring_register_ring_fd(&lane->ring) == 1;
	drop_ring_fd(lane);
	/* Made at the first readiness wait: blocking threads never need it. */
	lane->wake_fd = -1;
	lane->wake_op.kind = RS_OP_WAKE;
	pthread_mutex_init(&lane->handoff_lock, NULL);
	lane->steer_slot = -1;
	lane->tid = gettid();
	lane->stats = rs_stats_lane_slot(&lane->index);
	lane->stats->tid = (uint64_t)lane->tid;
	pin_lane(lane);
	lane->stats->cpu = lane->cpu;

	pthread_mutex_lock(&registry_lock);
	lane->next_lane = registry;
	registry = lane;
	lane_count++;
	pthread_mutex_unlock(&registry_lock);

	pthread_once(&key_once, make_key);
	pthread_setspecific(lane_key, lane);
	rs_debug("lane %u created for thread %d (ring flags 0x%x)", lane->index, (int)lane->tid,
		 setup_flags_supported);
	start_flusher();
	return lane;
}

struct rs_lane *rs_lane_get(void)
{
	if (likely(rs_current_lane))
		return rs_current_lane;
	if (lane_failed || !rs_active || !rs_io_uring_available())
		return NULL;
	rs_current_lane = lane_create();
	if (!rs_current_lane)
		lane_failed = true;
	return rs_current_lane;
}

void rs_lane_enter(struct rs_lane *lane)
{
	pthread_mutex_lock(&lane->lock);
	atomic_store_explicit(&lane->owner_entries,
			      atomic_load_explicit(&lane->owner_entries, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

/* Leaving work behind (queued bytes, sends in flight) arms the flusher's
 * deadline for this lane. */
void rs_lane_leave(struct rs_lane *lane)
{
	/* A prepared SQE names its socket by fd number: it must not wait for
	 * submission while another thread could close and reuse that number. */
	if (lane->unsubmitted)
		enter_ring(lane, 0);
	/* A hand-off that came while we were in here counts too: its wake
	 * found no wait to end. */
	if (lane->dirty_count || lane->sends_in_flight ||
	    atomic_load_explicit(&lane->handoff_pending, memory_order_acquire)) {
		if (!atomic_load_explicit(&lane->work_left, memory_order_relaxed))
			atomic_store_explicit(&lane->work_left, true, memory_order_relaxed);
		if (atomic_load_explicit(&flusher_sleeping, memory_order_relaxed))
			rs_flusher_kick();
	} else if (atomic_load_explicit(&lane->work_left, memory_order_relaxed)) {
		atomic_store_explicit(&lane->work_left, false, memory_order_relaxed);
	}
	pthread_mutex_unlock(&lane->lock);
}

/* Counts one io_uring_enter and the SQEs it submits. */
static void count_enter(struct rs_lane *lane)
{
	RS_STAT_ADD(lane->stats, ring_ops, lane->unsubmitted);
	RS_STAT_ADD(lane->stats, ring_enters, 1);
	lane->unsubmitted = 0;
	lane->sends_prepared = 0;
}

static int enter_ring(struct rs_lane *lane, unsigned wait)
{
	int ret;

	count_enter(lane);
	if (!wait) {
		ret = io_uring_submit(&lane->ring);
		return ret < 0 ? ret : 0;
	}
	ret = io_uring_submit_and_wait(&lane->ring, wait);
	if (ret < 0)
		return ret;
	/* io_uring_enter reports what it submitted even when a signal cut
	 * its wait short; fewer completions than asked for means that. */
	if (io_uring_cq_ready(&lane->ring) < wait)
		return -EINTR;
	return 0;
}

struct io_uring_sqe *rs_lane_sqe(struct rs_lane *lane)
{
	struct io_uring_sqe *sqe;

	/* Completions should not outrun the CQ.  But receives ahead and
	 * writable polls stay in flight for as long as their peers are quiet:
	 * with more of them than the CQ holds, a wait for room would never
	 * end.  Nor may completions be handled here, inside a caller that
	 * holds a socket's lock or walks one of the lane's lists.  So the
	 * kernel keeps what finds the CQ full until it is reaped
	 * (IORING_FEAT_NODROP), bounded by the operations in flight; only a
	 * kernel without that waits, as before. */
	while (!lane->overflow_kept && lane->in_flight + 1 >= lane->cq_entries) {
		enter_ring(lane, 1);
		rs_lane_reap(lane);
	}
	sqe = io_uring_get_sqe(&lane->ring);
	while (!sqe) {
		enter_ring(lane, 0);
		sqe = io_uring_get_sqe(&lane->ring);
	}
	lane->unsubmitted++;
	lane->in_flight++;
	return sqe;
}

int rs_lane_submit(struct rs_lane *lane)
{
	rs_lane_prepare_sends(lane);
	if (!lane->unsubmitted)
		return 0;
	return enter_ring(lane, 0);
}

static void complete(struct rs_lane *lane, struct io_uring_cqe *cqe, bool can_submit)
{
	struct rs_op *op = io_uring_cqe_get_data(cqe);
	struct rs_socket *socket;

	/* A multishot operation is in flight until its last completion. */
	if (!(cqe->flags & IORING_CQE_F_MORE))
		lane->in_flight--;
	if (!op)
		return;
	switch (op->kind) {
	case RS_OP_WAIT:
		op->result = cqe->res;
		op->cqe_flags = cqe->flags;
		op->done = true;
		break;
	case RS_OP_SEND:
		lane->sends_in_flight--;
		socket = op->socket;
		pthread_mutex_lock(&socket->lock);
		rs_socket_send_done(socket, lane, can_submit, cqe->res);
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
		break;
	case RS_OP_RECEIVE:
	case RS_OP_WRITABLE:
		socket = op->socket;
		pthread_mutex_lock(&socket->lock);
		if (op->kind == RS_OP_RECEIVE)
			rs_socket_receive_done(socket, lane, cqe->res, cqe->flags);
		else
			rs_socket_writable_done(socket, lane, cqe->res);
		pthread_mutex_unlock(&socket->lock);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			rs_socket_unref(socket);
		break;
	case RS_OP_EPOLL:
		rs_epoll_kernel_poll_done(op->epoll, cqe->res);
		lane->readiness_changes++;
		break;
	case RS_OP_WAKE: {
		uint64_t count;

		lane->wake_armed = false;
		if (REAL(read)(lane->wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
			rs_debug("lane %u: reading its wake eventfd: %s", lane->index, strerror(errno));
		lane->readiness_changes++;
		break;
	}
	case RS_OP_IGNORE:
		break;
	}
}

/*
 * The waiter says it waits before it looks at readiness, and the waker
 * looks whether anyone waits after it changed readiness (both with full
 * fences): either the waiter's look sees the change or the waker sees the
 * waiter, and writes the eventfd whose poll ends the wait.
 */
void rs_lane_begin_readiness_wait(struct rs_lane *lane)
{
	if (lane->wake_fd < 0 && !lane->wake_fd_failed) {
		int saved_errno = errno;
		int fd = rs_fd_make_private(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));

		if (fd < 0) {
			rs_warn("lane %u: no wake eventfd (%s): its waits look again every few milliseconds for other threads' changes",
				lane->index, strerror(errno));
			lane->wake_fd_failed = true;
		}
		errno = saved_errno;
		/* Wakers read it under this lock. */
		pthread_mutex_lock(&lane->handoff_lock);
		lane->wake_fd = fd < 0 ? -1 : fd;
		pthread_mutex_unlock(&lane->handoff_lock);
	}
	if (lane->wake_fd < 0)
		return;
	atomic_store(&lane->waiting_for_readiness, true);
	atomic_thread_fence(memory_order_seq_cst);
	if (!lane->wake_armed) {
		struct io_uring_sqe *sqe = rs_lane_sqe(lane);

		io_uring_prep_poll_add(sqe, lane->wake_fd, POLLIN);
		io_uring_sqe_set_data(sqe, &lane->wake_op);
		lane->wake_armed = true;
	}
}

void rs_lane_end_readiness_wait(struct rs_lane *lane)
{
	atomic_store_explicit(&lane->waiting_for_readiness, false, memory_order_relaxed);
}

void rs_lane_wake(struct rs_lane *lane)
{
	uint64_t one = 1;
	int saved_errno;

	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&lane->waiting_for_readiness, memory_order_relaxed))
		return;
	saved_errno = errno;
	/* Under the hand-off lock, which the lane's exit takes before it
	 * closes the eventfd: its number is never another file's here. */
	pthread_mutex_lock(&lane->handoff_lock);
	/* Non-blocking: a full counter already means a wake is pending. */
	if (!atomic_load(&lane->dead) && lane->wake_fd >= 0 &&
	    REAL(write)(lane->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		rs_debug("lane %u: writing its wake eventfd: %s", lane->index, strerror(errno));
	pthread_mutex_unlock(&lane->handoff_lock);
	errno = saved_errno;
}

static void reap(struct rs_lane *lane, bool can_submit)
{
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;

	/* io_uring_for_each_cqe reads shared memory only: the flusher may use
	 * it on a lane it does not own. */
	io_uring_for_each_cqe(&lane->ring, head, cqe) {
		complete(lane, cqe, can_submit);
		seen++;
	}
	if (seen)
		io_uring_cq_advance(&lane->ring, seen);
}

void rs_lane_reap(struct rs_lane *lane)
{
	reap(lane, true);
}

void rs_lane_reap_now(struct rs_lane *lane)
{
	/* With DEFER_TASKRUN, completions wait for the owner to ask: the
	 * kernel flags that some do.  So it flags completions it kept aside
	 * from a full CQ.  A wait asks anyway; a look that does not wait
	 * must. */
	unsigned flags = IO_URING_READ_ONCE(*lane->ring.sq.kflags);

	if ((lane->deferred && (flags & IORING_SQ_TASKRUN)) || (flags & IORING_SQ_CQ_OVERFLOW)) {
		RS_STAT_ADD(lane->stats, ring_enters, 1);
		io_uring_get_events(&lane->ring);
	}
	reap(lane, true);
}


void rs_lane_run_task_work(struct rs_lane *lane)
{
	count_enter(lane);
	io_uring_submit_and_get_events(&lane->ring);
	reap(lane, true);
}

/* Appends socket, with a reference, to one of the lane's lists of work for
 * its next enter; false if the list cannot grow. */
static bool list_push(struct rs_socket ***list, unsigned *count, unsigned *capacity,
		      struct rs_socket *socket)
{
	if (*count == *capacity) {
		unsigned grown_capacity = *capacity ? *capacity * 2 : 16;
		struct rs_socket **grown = realloc(*list, grown_capacity * sizeof(*grown));

		if (!grown)
			return false;
		*list = grown;
		*capacity = grown_capacity;
	}
	rs_socket_ref(socket);
	(*list)[(*count)++] = socket;
	return true;
}

void rs_lane_mark_dirty(struct rs_lane *lane, struct rs_socket *socket)
{
	/* Cannot remember it: send it now instead. */
	if (!list_push(&lane->dirty, &lane->dirty_count, &lane->dirty_capacity, socket))
		rs_socket_start_send(socket, lane);
}

/* ---- hand-offs from other threads ----------------------------------------- */

/*
 * A thread that writes to a socket whose event loop runs on another thread
 * (nginx's aio threads send files from a pool) must not send it on its own
 * lane: that thread then waits out of the shim's sight, and the room its
 * send makes would reach the loop's epoll_wait only through the flusher.
 * The bytes join the socket's queue; the socket goes to its loop's lane,
 * which sends them with its next submission, woken if it waits.
 */
bool rs_lane_hand_off(struct rs_lane *home, struct rs_socket *socket)
{
	bool listed;

	if (socket->handed_off)
		return true;
	pthread_mutex_lock(&home->handoff_lock);
	listed = !atomic_load(&home->dead) &&
		 list_push(&home->handoff, &home->handoff_count, &home->handoff_capacity, socket);
	if (listed)
		atomic_store_explicit(&home->handoff_pending, true, memory_order_release);
	pthread_mutex_unlock(&home->handoff_lock);
	if (!listed)
		return false;
	socket->handed_off = true;
	/* Busy, the owner takes it at its next submission; away, the flusher
	 * does after its interval. */
	if (!atomic_load_explicit(&home->work_left, memory_order_relaxed))
		atomic_store_explicit(&home->work_left, true, memory_order_relaxed);
	if (atomic_load_explicit(&flusher_sleeping, memory_order_relaxed))
		rs_flusher_kick();
	rs_lane_wake(home);
	return true;
}

/* Lane locked (by its owner or the flusher). */
static void take_handoffs(struct rs_lane *lane)
{
	struct rs_socket **taken;
	unsigned count;

	if (!atomic_load_explicit(&lane->handoff_pending, memory_order_acquire))
		return;
	pthread_mutex_lock(&lane->handoff_lock);
	taken = lane->handoff;
	count = lane->handoff_count;
	lane->handoff = NULL;
	lane->handoff_count = lane->handoff_capacity = 0;
	atomic_store_explicit(&lane->handoff_pending, false, memory_order_relaxed);
	pthread_mutex_unlock(&lane->handoff_lock);
	for (unsigned i = 0; i < count; i++) {
		struct rs_socket *socket = taken[i];

		pthread_mutex_lock(&socket->lock);
		socket->handed_off = false;
		rs_socket_handed_over(socket, lane);
		/* A kernel send from that thread found no room: the poll for it. */
		if (socket->kernel_full && !socket->writable_poll_in_flight)
			rs_socket_want_writable(socket, lane);
		if (socket->fd >= 0 && socket->txq.bytes && !socket->tx_in_flight &&
		    !(socket->tx_lane == lane && socket->tx_listed)) {
			socket->tx_lane = lane;
			socket->tx_listed = true;
			rs_lane_mark_dirty(lane, socket);
		}
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
	}
	free(taken);
}

/* ---- provided buffers ------------------------------------------------------ */

/* liburing 2.3 has no io_uring_setup_buf_ring: the ring is mapped here,
 * registered, then filled.  Set up by the lane's thread (a registration,
 * which SINGLE_ISSUER reserves to it). */
bool rs_lane_receive_buffers(struct rs_lane *lane)
{
	size_t ring_size = RS_RECEIVE_BUFFERS * sizeof(struct io_uring_buf);
	struct io_uring_buf_reg registration = { 0 };
	struct io_uring_buf_ring *ring;
	char *memory;
	int mask = io_uring_buf_ring_mask(RS_RECEIVE_BUFFERS);

	if (lane->receive_ring || lane->receive_ring_tried)
		return lane->receive_ring != NULL;
	lane->receive_ring_tried = true;
	ring = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ring == MAP_FAILED)
		return false;
	memory = malloc((size_t)RS_RECEIVE_BUFFERS * RS_RECEIVE_BUFFER_SIZE);
	registration.ring_addr = (uint64_t)(uintptr_t)ring;
	registration.ring_entries = RS_RECEIVE_BUFFERS;
	registration.bgid = 0;
	if (!memory || lane_register(lane, IORING_REGISTER_PBUF_RING, &registration, 1) < 0) {
		rs_debug("lane %u: no provided buffers: single receives ahead", lane->index);
		free(memory);
		munmap(ring, ring_size);
		return false;
	}
	io_uring_buf_ring_init(ring);
	for (unsigned id = 0; id < RS_RECEIVE_BUFFERS; id++)
		io_uring_buf_ring_add(ring, memory + (size_t)id * RS_RECEIVE_BUFFER_SIZE,
				      RS_RECEIVE_BUFFER_SIZE, (unsigned short)id, mask, (int)id);
	io_uring_buf_ring_advance(ring, RS_RECEIVE_BUFFERS);
	lane->receive_ring = ring;
	lane->receive_memory = memory;
	return true;
}

const char *rs_lane_receive_buffer(struct rs_lane *lane, unsigned id)
{
	return lane->receive_memory + (size_t)(id % RS_RECEIVE_BUFFERS) * RS_RECEIVE_BUFFER_SIZE;
}

void rs_lane_return_receive_buffer(struct rs_lane *lane, unsigned id)
{
	id %= RS_RECEIVE_BUFFERS;
	io_uring_buf_ring_add(lane->receive_ring, lane->receive_memory + (size_t)id * RS_RECEIVE_BUFFER_SIZE,
			      RS_RECEIVE_BUFFER_SIZE, (unsigned short)id,
			      io_uring_buf_ring_mask(RS_RECEIVE_BUFFERS), 0);
	io_uring_buf_ring_advance(lane->receive_ring, 1);
}

void rs_lane_mark_arming(struct rs_lane *lane, struct rs_socket *socket)
{
	/* Cannot remember it: arm it now instead. */
	if (!list_push(&lane->arming, &lane->arming_count, &lane->arming_capacity, socket))
		rs_socket_arm(socket, lane);
}

static void prepare_arming(struct rs_lane *lane)
{
	unsigned count = lane->arming_count;

	lane->arming_count = 0;
	for (unsigned i = 0; i < count; i++) {
		struct rs_socket *socket = lane->arming[i];

		pthread_mutex_lock(&socket->lock);
		rs_socket_arm(socket, lane);
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
	}
}

void rs_lane_prepare_sends(struct rs_lane *lane)
{
	struct rs_socket **sending;
	unsigned sending_capacity;
	unsigned count;

	take_handoffs(lane);
	sending = lane->dirty;
	sending_capacity = lane->dirty_capacity;
	count = lane->dirty_count;
	if (lane->arming_count)
		prepare_arming(lane);
	if (!count)
		return;

	lane->dirty = lane->dirty_spare;
	lane->dirty_capacity = lane->dirty_spare_capacity;
	lane->dirty_count = 0;
	for (unsigned i = 0; i < count; i++) {
		struct rs_socket *socket = sending[i];

		pthread_mutex_lock(&socket->lock);
		if (socket->tx_lane == lane && socket->tx_awaiting_room && socket->txq.bytes &&
		    socket->fd >= 0 &&
		    list_push(&lane->dirty, &lane->dirty_count, &lane->dirty_capacity, socket)) {
			/* Stays listed, unsent, until its writable poll fires:
			 * listed, it is also the flusher's while we are away. */
		} else if (socket->tx_lane == lane) {
			socket->tx_listed = false;
			if (!socket->tx_in_flight && socket->txq.bytes)
				rs_socket_start_send(socket, lane);
		}
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
	}
	lane->dirty_spare = sending;
	lane->dirty_spare_capacity = sending_capacity;
}

/* A receive submitted with its socket's send mostly completes after it:
 * waiting for both CQEs at once saves waking up for the send's alone. */
static unsigned op_completions_pending(struct rs_op *op)
{
	struct rs_socket *socket = op->paired_send;
	unsigned count = 1;

	if (socket) {
		pthread_mutex_lock(&socket->lock);
		if (socket->tx_in_flight && socket->tx_with_receive)
			count = 2;
		pthread_mutex_unlock(&socket->lock);
	}
	return count;
}

/* io_uring_enter with an extended argument, through the registered ring
 * when there is one, as liburing's own calls go. */
static int enter_with_argument(struct rs_lane *lane, unsigned submit, unsigned wait,
			       struct io_uring_getevents_arg *argument)
{
	unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;

	if (lane->ring_registered)
		flags |= IORING_ENTER_REGISTERED_RING;
	return io_uring_enter2(lane->ring.enter_ring_fd, submit, wait, flags,
			       (sigset_t *)argument, sizeof(*argument));
}

/* How long a wait that also asked for this submission's sends may go on
 * once some completion has come. */
#define PREDICTED_SENDS_WAIT_US 250

/* Fewer sends than this are not counted into a wait: the kernel's
 * min_wait timer costs more than the second enter a lone send's
 * completion causes.  Measured on the epoll echo at 1 connection (main
 * thread's CPU per request): 28 us instead of 35; at 2 and 5 connections
 * a little less too, and no worse at 50, where submissions carry many. */
#define COUNTED_SENDS_MIN 2

/* Submits and waits for wait completions.  A deferred ring's sends
 * complete during the submission (MSG_DONTWAIT), ahead of what the caller
 * waits for: counting them in keeps their completions from ending the wait,
 * which would cost a second enter.  Only with the kernel's min_wait, which
 * ends the wait PREDICTED_SENDS_WAIT_US after the first completion: a send
 * that says EAGAIN needs a writable poll armed before the peer can move,
 * and only the next submission arms it. */
static int enter_ring_counting_sends(struct rs_lane *lane, unsigned wait)
{
	struct io_uring_getevents_arg argument = { .pad = PREDICTED_SENDS_WAIT_US };
	unsigned sends = lane->sends_prepared, submit;
	uint64_t started;
	int ret;

	if (!lane->deferred || sends < COUNTED_SENDS_MIN ||
	    !(lane->ring.features & IORING_FEAT_MIN_TIMEOUT) ||
	    !(lane->ring.features & IORING_FEAT_EXT_ARG))
		return enter_ring(lane, wait);
	count_enter(lane);
	submit = rs_compat_flush_sq(&lane->ring);
	started = rs_now_ns();
	ret = enter_with_argument(lane, submit, wait + sends, &argument);
	if (ret < 0)
		return ret;
	/* Short of the count before min_wait ran out: only a signal ends a
	 * wait that early. */
	if (io_uring_cq_ready(&lane->ring) < wait + sends &&
	    rs_now_ns() - started < PREDICTED_SENDS_WAIT_US * 1000ull)
		return -EINTR;
	return 0;
}

int rs_lane_wait(struct rs_lane *lane, struct rs_op *op)
{
	for (;;) {
		int ret;

		rs_lane_reap(lane);
		if (op->done)
			return 0;
		rs_lane_prepare_sends(lane);
		ret = enter_ring_counting_sends(lane, op_completions_pending(op));
		rs_lane_reap(lane);
		if (op->done)
			return 0;
		if (ret == -EINTR)
			return -EINTR;
		if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME) {
			rs_error("io_uring_enter failed: %s", strerror(-ret));
			return ret;
		}
	}
}

int rs_lane_wait_timeout(struct rs_lane *lane, struct __kernel_timespec *timeout,
			 const sigset_t *mask)
{
	struct io_uring_getevents_arg argument = { 0 };
	unsigned wait_for = 1, submit;
	uint64_t started;
	struct io_uring_cqe *cqe;
	int ret;

	rs_lane_prepare_sends(lane);
	if (!(lane->ring.features & IORING_FEAT_EXT_ARG)) {
		count_enter(lane);
		ret = io_uring_submit_and_wait_timeout(&lane->ring, &cqe, 1, timeout,
						       (sigset_t *)mask);
		rs_lane_reap(lane);
		return ret == -ETIME || ret == -EINTR || ret < 0 ? ret : 0;
	}
	submit = rs_compat_flush_sq(&lane->ring);
	if (!submit && io_uring_cq_ready(&lane->ring)) {
		rs_lane_reap(lane);
		return 0;
	}
	/* The sends of this submission mostly complete during it, ahead of
	 * what the caller waits for: counting them in keeps their completions
	 * from ending the wait, which would cost a second enter.  Where the
	 * kernel has min_wait, a send that does not complete at once delays
	 * the return by at most PREDICTED_SENDS_WAIT_US. */
	if (lane->sends_prepared >= COUNTED_SENDS_MIN &&
	    (lane->ring.features & IORING_FEAT_MIN_TIMEOUT)) {
		wait_for += lane->sends_prepared;
		argument.pad = PREDICTED_SENDS_WAIT_US;
	}
	argument.sigmask = (uint64_t)(uintptr_t)mask;
	argument.sigmask_sz = _NSIG / 8;
	argument.ts = (uint64_t)(uintptr_t)timeout;
	count_enter(lane);
	started = timeout ? rs_now_ns() : 0;
	ret = enter_with_argument(lane, submit, wait_for, &argument);
	if (ret >= 0 && !io_uring_cq_ready(&lane->ring)) {
		/* An enter that submitted reports that count even when a
		 * signal or the timeout ended its wait: with nothing
		 * completed, the time tells which. */
		uint64_t waited = timeout ? rs_now_ns() - started : 0;
		uint64_t limit = timeout ? (uint64_t)timeout->tv_sec * 1000000000ull +
						(uint64_t)timeout->tv_nsec : 0;

		ret = timeout && waited >= limit ? -ETIME : -EINTR;
	}
	rs_lane_reap(lane);
	if (ret == -ETIME || ret == -EINTR)
		return ret;
	return ret < 0 ? ret : 0;
}

int rs_lane_wait_any(struct rs_lane *lane)
{
	int ret;

	rs_lane_prepare_sends(lane);
	ret = enter_ring(lane, 1);
	rs_lane_reap(lane);
	return ret;
}

void rs_lane_cancel(struct rs_lane *lane, struct rs_op *op)
{
	struct io_uring_sqe *sqe;

	if (op->done)
		return;
	sqe = rs_lane_sqe(lane);
	io_uring_prep_cancel(sqe, op, 0);
	io_uring_sqe_set_data(sqe, NULL);
	/* The operation's CQE always comes: completed, or -ECANCELED.  A
	 * second signal cannot stop us waiting for it, or the kernel could
	 * later write into a buffer the caller has reused. */
	while (!op->done) {
		enter_ring(lane, 1);
		rs_lane_reap(lane);
	}
}

void rs_lane_cancel_send(struct rs_lane *lane, struct rs_socket *socket)
{
	struct io_uring_sqe *sqe = rs_lane_sqe(lane);
	bool in_flight = true;

	io_uring_prep_cancel(sqe, &socket->tx_op, 0);
	io_uring_sqe_set_data(sqe, NULL);
	/* The send's CQE says how much left before the cancel took effect. */
	while (in_flight) {
		enter_ring(lane, 1);
		rs_lane_reap(lane);
		pthread_mutex_lock(&socket->lock);
		in_flight = socket->tx_in_flight && socket->tx_lane == lane;
		pthread_mutex_unlock(&socket->lock);
	}
}

void rs_lane_flush_before_block(void)
{
	struct rs_lane *lane = rs_current_lane;

	if (!lane || (!lane->dirty_count && !lane->arming_count))
		return;
	rs_lane_enter(lane);
	rs_lane_submit(lane);
	rs_lane_leave(lane);
}

/* Thread exit: queued bytes go out, and nothing may stay in flight on a
 * ring that is about to be torn down. */
static void lane_destroy(void *argument)
{
	struct rs_lane *lane = argument;
	uint64_t deadline = rs_now_ns() + 2000000000ull;

	rs_lane_enter(lane);
	rs_lane_submit(lane);
	while (lane->sends_in_flight && rs_now_ns() < deadline) {
		struct __kernel_timespec timeout = { .tv_sec = 0, .tv_nsec = 100000000 };
		struct io_uring_cqe *cqe;

		io_uring_wait_cqe_timeout(&lane->ring, &cqe, &timeout);
		rs_lane_reap(lane);
		rs_lane_prepare_sends(lane);
		if (lane->unsubmitted)
			enter_ring(lane, 0);
	}
	if (lane->in_flight) {
		struct io_uring_sync_cancel_reg cancel = {
			.flags = IORING_ASYNC_CANCEL_ANY,
			.timeout = { .tv_sec = 1, .tv_nsec = 0 },
		};

		lane_register(lane, IORING_REGISTER_SYNC_CANCEL, &cancel, 1);
		/* On a deferred ring the cancelled ones complete only in our
		 * task work: run, their sockets' receives are no longer in
		 * flight, and another lane arms the next. */
		rs_lane_run_task_work(lane);
	}
	for (unsigned i = 0; i < lane->dirty_count; i++) {
		struct rs_socket *socket = lane->dirty[i];

		/* Left for another thread's lane, or the close, to send. */
		pthread_mutex_lock(&socket->lock);
		if (socket->tx_lane == lane) {
			socket->tx_lane = NULL;
			socket->tx_listed = false;
		}
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
	}
	lane->dirty_count = 0;
	for (unsigned i = 0; i < lane->arming_count; i++) {
		struct rs_socket *socket = lane->arming[i];

		pthread_mutex_lock(&socket->lock);
		if (socket->arming_lane == lane) {
			socket->arming_listed = false;
			socket->arming_lane = NULL;
		}
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
	}
	lane->arming_count = 0;
	rs_listeners_lane_gone(lane);
	/* Dead under the hand-off lock, so that no thread lists more; what
	 * was handed off goes to the kernel. */
	pthread_mutex_lock(&lane->handoff_lock);
	atomic_store(&lane->dead, true);
	pthread_mutex_unlock(&lane->handoff_lock);
	for (unsigned i = 0; i < lane->handoff_count; i++) {
		struct rs_socket *socket = lane->handoff[i];

		pthread_mutex_lock(&socket->lock);
		socket->handed_off = false;
		if (!socket->tx_in_flight)
			rs_socket_push_to_kernel(socket);
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
	}
	free(lane->handoff);
	lane->handoff = NULL;
	lane->handoff_count = lane->handoff_capacity = 0;
	rs_stats_lane_release(lane->index);
	/* liburing closes the ring's number through the C library, which is
	 * the shim's close: unmarked first, it closes.  A ring without a
	 * number goes with its thread's registration, at the thread's exit
	 * (this runs then); liburing's close of -1 changes nothing. */
	rs_fd_forget_private(lane->ring.ring_fd);
	io_uring_queue_exit(&lane->ring);
	if (lane->wake_fd >= 0) {
		int wake_fd = lane->wake_fd;

		lane->wake_fd = -1;
		rs_fd_close_private(wake_fd);
	}
	free(lane->receive_memory);
	lane->receive_memory = NULL;
	if (lane->receive_ring)
		munmap(lane->receive_ring, RS_RECEIVE_BUFFERS * sizeof(struct io_uring_buf));
	lane->receive_ring = NULL;
	rs_current_lane = NULL;
	pthread_mutex_unlock(&lane->lock);
	/* The lane stays in the registry, dead, so the flusher never follows a
	 * freed pointer; its stats slot keeps the totals. */
}

/* ---- the flusher ---------------------------------------------------------- */

static void futex_wait(_Atomic uint32_t *word, uint32_t value, long timeout_ns)
{
	struct timespec timeout = { .tv_sec = timeout_ns / 1000000000L,
				    .tv_nsec = timeout_ns % 1000000000L };

	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, &timeout, NULL, 0);
}

void rs_flusher_kick(void)
{
	if (atomic_exchange(&flusher_sleeping, 0))
		syscall(SYS_futex, &flusher_sleeping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Services a lane whose owner is away: reaps, then pushes queued bytes into
 * the kernel without blocking.  Returns true if work is left. */
static bool service_lane(struct rs_lane *lane)
{
	bool left;

	reap(lane, false);
	take_handoffs(lane);
	for (unsigned i = 0; i < lane->dirty_count; i++) {
		struct rs_socket *socket = lane->dirty[i];

		pthread_mutex_lock(&socket->lock);
		if (socket->tx_lane == lane && !socket->tx_in_flight && socket->txq.bytes)
			rs_socket_push_to_kernel(socket);
		pthread_mutex_unlock(&socket->lock);
	}
	/* Keep the entries that still hold bytes; drop the rest. */
	unsigned kept = 0;

	for (unsigned i = 0; i < lane->dirty_count; i++) {
		struct rs_socket *socket = lane->dirty[i];
		bool keep;

		pthread_mutex_lock(&socket->lock);
		keep = socket->tx_lane == lane && !socket->tx_in_flight && socket->txq.bytes;
		if (!keep && socket->tx_lane == lane)
			socket->tx_listed = false;
		pthread_mutex_unlock(&socket->lock);
		if (keep)
			lane->dirty[kept++] = socket;
		else
			rs_socket_unref(socket);
	}
	lane->dirty_count = kept;
	left = lane->dirty_count || lane->sends_in_flight;
	if (!left)
		atomic_store_explicit(&lane->work_left, false, memory_order_relaxed);
	return left;
}

static void *flusher_main(void *argument)
{
	uint64_t interval_ns = (uint64_t)rs_config.flush_us * 1000ull;
	uint64_t idle_since = rs_now_ns();

	while (!atomic_load(&flusher_stop)) {
		uint64_t now = rs_now_ns();
		bool busy = false;

		pthread_mutex_lock(&registry_lock);
		for (struct rs_lane *lane = registry; lane; lane = lane->next_lane) {
			uint64_t entries = atomic_load_explicit(&lane->owner_entries,
								memory_order_relaxed);

			if (!atomic_load_explicit(&lane->work_left, memory_order_relaxed) ||
			    atomic_load(&lane->dead))
				continue;
			busy = true;
			/* An owner that keeps coming back sends its work itself:
			 * stepping in then only fights it for the lane's lock.
			 * Leaving work is an entry, so work newer than the last
			 * look waits a whole interval from this one; the owner
			 * keeps no time stamp (a clock read per request). */
			if (entries != lane->flusher_seen_entries) {
				lane->flusher_seen_entries = entries;
				lane->flusher_seen_at_ns = now;
			}
			if (now - lane->flusher_seen_at_ns < interval_ns)
				continue;
			if (pthread_mutex_trylock(&lane->lock))
				continue; /* the owner is in the shim: it will do it */
			service_lane(lane);
			pthread_mutex_unlock(&lane->lock);
		}
		pthread_mutex_unlock(&registry_lock);
		if (rs_orphans_service())
			busy = true;
		if (busy)
			idle_since = now;
		/* Poll while work keeps appearing; after a second without any,
		 * sleep until a lane leaves work behind (one futex wake then). */
		if (now - idle_since > 1000000000ull) {
			atomic_store(&flusher_sleeping, 1);
			futex_wait(&flusher_sleeping, 1, 1000000000L);
			atomic_store(&flusher_sleeping, 0);
			idle_since = rs_now_ns();
		} else {
			struct timespec pause = { .tv_sec = 0, .tv_nsec = (long)interval_ns };

			nanosleep(&pause, NULL);
		}
	}
	return NULL;
}

static void start_flusher(void)
{
	sigset_t all, old;
	bool expected = false;

	if (!atomic_compare_exchange_strong(&flusher_running, &expected, true))
		return;
	/* The flusher must never run the application's signal handlers. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&flusher_thread, NULL, flusher_main, NULL)) {
		rs_warn("cannot start the flusher thread: queued sends leave only at the next call of their thread");
		atomic_store(&flusher_running, false);
	} else {
		pthread_detach(flusher_thread);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- fork and exit -------------------------------------------------------- */

void rs_lanes_atfork_prepare(void)
{
	/* What the parent queued stays the parent's to send; make it leave
	 * now so the child's copy of the queues can simply be dropped. */
	rs_lane_flush_before_block();
	pthread_mutex_lock(&registry_lock);
}

void rs_lanes_atfork_parent(void)
{
	pthread_mutex_unlock(&registry_lock);
}

void rs_lanes_atfork_child(void)
{
	/* The rings' memory is not inherited (io_uring_ring_dontfork); their
	 * fds are, and would keep the parent's rings alive. */
	struct rs_lane *lane = registry;

	while (lane) {
		struct rs_lane *next = lane->next_lane;

		if (!atomic_load(&lane->dead)) {
			if (lane->ring.ring_fd >= 0)
				rs_fd_close_private(lane->ring.ring_fd);
			if (lane->wake_fd >= 0)
				rs_fd_close_private(lane->wake_fd);
		}
		/* The parent's threads are not here: their lanes' memory (a
		 * copy) goes.  What the lists pointed to is reset by the
		 * sockets' own fork handler. */
		free(lane->dirty);
		free(lane->dirty_spare);
		free(lane->arming);
		free(lane->handoff);
		free(lane->steered);
		free(lane->receive_memory);
		if (lane->receive_ring)
			munmap(lane->receive_ring, RS_RECEIVE_BUFFERS * sizeof(struct io_uring_buf));
		free(lane);
		lane = next;
	}
	/* This thread's lane was among them: its exit must not find it. */
	pthread_once(&key_once, make_key);
	pthread_setspecific(lane_key, NULL);
	registry = NULL;
	lane_count = 0;
	rs_current_lane = NULL;
	lane_failed = false;
	pthread_mutex_init(&registry_lock, NULL);
	atomic_store(&flusher_running, false);
	atomic_store(&flusher_sleeping, 0);
}

void rs_lanes_exit(void)
{
	struct rs_lane *lane = rs_current_lane;

	if (lane) {
		rs_lane_enter(lane);
		rs_lane_submit(lane);
		rs_lane_leave(lane);
	}
	atomic_store(&flusher_stop, true);
}
