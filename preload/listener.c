// SPDX-License-Identifier: MIT
/*
 * Per-lane listeners: how an application's listening socket is steered.
 *
 * With steering on (the program is loaded; without it, with steering asked
 * for and net.ipv4.tcp_migrate_req on: see steer.c), bind puts
 * the application's TCP sockets in a reuseport group (unless the address is
 * taken by a socket outside one, so that a second instance of a server still
 * gets EADDRINUSE), and each lane that waits for connections on an
 * application listener, through accept, epoll, poll or select, gets a
 * listener of its own on the same address, in its slot of the group: the
 * steering program then picks the lane of every new connection from the
 * load the lanes publish.  The application keeps its fd number.  Its own
 * listener stays in the group and in its epoll sets: it receives
 * connections only while no lane's listener is registered (at start), and
 * accept drains it after the lane's listener.
 *
 * Only a socket of the group owner's effective user may join the group, and
 * nginx's workers drop root after fork: a root process that listens opens
 * RINGSTEER_LISTENERS lane listeners ahead, unregistered, which its children
 * inherit and claim (one each, through a word per listener in memory shared
 * across the fork).  Unregistered, they never receive a connection: the
 * program picks a live lane listener, else the application's own, which
 * the listening process registers as the group's fallback.  Without the
 * program nothing is opened ahead: the kernel would hash connections to
 * those nobody has claimed.
 *
 * A lane's listener is a kernel fd throughout (non-blocking, close-on-exec):
 * readiness is the kernel's, and accept is the kernel's accept4, so no
 * connection is ever taken ahead of the application.  When the application
 * closes its listener, or the lane's thread ends, the lane's listener is
 * unregistered and closed, and the migrate program moves the connections
 * still in its queue to the group's other listeners.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringsteer.h"

struct rs_lane_listener {
	struct rs_steer_listener steer;
	struct rs_lane *lane;
	int preopened_index;            /* which one opened ahead, or -1 */
	struct rs_lane_listener *next;  /* in the application listener's list */
};

#define PREOPENED_MAX 64

/* Lane listeners opened ahead by a root process that listens.  The fds are
 * each process's own (inherited copies); the claims are shared. */
struct rs_preopened {
	unsigned count;
	int fds[PREOPENED_MAX];
	_Atomic uint32_t *claims;       /* pid of the process using each, 0 free */
};

/* The busy figure is the share of time a lane's thread spends outside its
 * waits, over windows of this length, smoothed. */
#define BUSY_WINDOW_NS 100000000ull

/* ---- bind and listen ---------------------------------------------------------- */

static bool has_reuseport(int fd)
{
	int value = 0;
	socklen_t length = sizeof(value);

	return REAL(getsockopt)(fd, SOL_SOCKET, SO_REUSEPORT, &value, &length) == 0 && value;
}

/* Whether the address can be bound by a socket outside any reuseport group,
 * that is, whether the application's bind would succeed without the shim. */
static bool address_free(int fd, const struct sockaddr *address, socklen_t length)
{
	int probe = REAL(socket)(address->sa_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	int value = 0, free_now;
	socklen_t size = sizeof(value);

	if (probe < 0)
		return false;
	if (!REAL(getsockopt)(fd, SOL_SOCKET, SO_REUSEADDR, &value, &size) && value)
		REAL(setsockopt)(probe, SOL_SOCKET, SO_REUSEADDR, &value, sizeof(value));
	size = sizeof(value);
	if (address->sa_family == AF_INET6 &&
	    !REAL(getsockopt)(fd, IPPROTO_IPV6, IPV6_V6ONLY, &value, &size))
		REAL(setsockopt)(probe, IPPROTO_IPV6, IPV6_V6ONLY, &value, sizeof(value));
	free_now = REAL(bind)(probe, address, length) == 0;
	REAL(close)(probe);
	return free_now;
}

static unsigned port_of(const struct sockaddr *address)
{
	if (address->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)address)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
}

void rs_listener_before_bind(int fd, const struct sockaddr *address, socklen_t length)
{
	int saved_errno = errno;

	if (!rs_steer_wanted() || !address || length < (socklen_t)sizeof(struct sockaddr_in) ||
	    (address->sa_family != AF_INET && address->sa_family != AF_INET6) ||
	    (address->sa_family == AF_INET6 && length < (socklen_t)sizeof(struct sockaddr_in6)) ||
	    has_reuseport(fd))
		return;
	/* A port of the kernel's choice is nobody else's. */
	if (port_of(address) == 0 || address_free(fd, address, length))
		rs_steer_prepare_bind(fd, address, length);
	errno = saved_errno;
}

static unsigned preopen_count(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (rs_config.listeners)
		return rs_config.listeners;
	return cores > 4 ? (cores < PREOPENED_MAX ? (unsigned)cores : PREOPENED_MAX) : 4;
}

static void preopen(struct rs_socket *listener)
{
	struct rs_preopened *preopened = calloc(1, sizeof(*preopened));
	unsigned wanted = preopen_count();
	void *claims;

	if (!preopened)
		return;
	claims = mmap(NULL, PREOPENED_MAX * sizeof(uint32_t), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (claims == MAP_FAILED) {
		free(preopened);
		return;
	}
	preopened->claims = claims;
	while (preopened->count < wanted) {
		struct rs_steer_listener steer;
		int flags;

		if (rs_steer_listener_open(listener->fd, RS_STEER_UNREGISTERED, &steer) < 0)
			break;
		flags = REAL(fcntl)(steer.fd, F_GETFL, 0);
		REAL(fcntl)(steer.fd, F_SETFL, flags | O_NONBLOCK);
		preopened->fds[preopened->count++] = steer.fd;
	}
	rs_debug("fd %d: %u lane listeners opened ahead for workers", listener->fd, preopened->count);
	listener->preopened = preopened;
}

void rs_listener_after_listen(struct rs_socket *listener)
{
	bool steerable = rs_steer_wanted() && has_reuseport(listener->fd);

	rs_steer_listening();
	pthread_mutex_lock(&listener->lock);
	listener->steerable = steerable;
	pthread_mutex_unlock(&listener->lock);
	if (!steerable || !rs_steer_loaded() || listener->preopened)
		return;
	if (rs_steer_fallback_register(listener->fd) < 0)
		return; /* without a fallback, listeners opened ahead could get hashed connections */
	if (geteuid() == 0)
		preopen(listener);
}

static bool process_alive(uint32_t pid)
{
	return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* Claims one of the listeners opened ahead: its index, or -1. */
static int claim_preopened(struct rs_preopened *preopened)
{
	uint32_t self = (uint32_t)getpid();
	int saved_errno = errno;

	for (unsigned i = 0; i < preopened->count; i++) {
		uint32_t owner = atomic_load(&preopened->claims[i]);

		if (preopened->fds[i] < 0 || owner == self || (owner && process_alive(owner)))
			continue;
		if (atomic_compare_exchange_strong(&preopened->claims[i], &owner, self)) {
			errno = saved_errno;
			return (int)i;
		}
	}
	errno = saved_errno;
	return -1;
}

/* ---- a lane's listener ----------------------------------------------------- */

int rs_listener_lane_fd(struct rs_socket *listener, struct rs_lane *lane)
{
	struct rs_lane_listener *entry;
	struct rs_socket **grown;
	int fd = -1, ret;

	if (!lane || !listener->steerable)
		return -1;
	pthread_mutex_lock(&listener->lock);
	for (entry = listener->lane_listeners; entry; entry = entry->next) {
		if (entry->lane == lane)
			break;
	}
	if (entry)
		fd = entry->steer.fd;
	pthread_mutex_unlock(&listener->lock);
	if (entry)
		return fd;

	/* Only the lane's own thread gets here for its lane. */
	if (lane->steer_slot == -1) {
		ret = rs_steer_slot_claim(lane->index, lane->cpu);
		if (ret < 0)
			rs_steer_warn_once(RS_STEER_WARNED_NO_SLOT,
					   "lane %u: no steering slot is free (%s): it accepts on the application's listener",
					   lane->index, strerror(-ret));
		lane->steer_slot = ret < 0 ? -2 : ret;
	}
	grown = realloc(lane->steered, (lane->steered_count + 1) * sizeof(*lane->steered));
	entry = calloc(1, sizeof(*entry));
	if (!grown || !entry) {
		free(entry);
		if (grown)
			lane->steered = grown;
		return -1;
	}
	lane->steered = grown;
	entry->lane = lane;
	entry->steer.fd = -1;
	entry->preopened_index = -1;
	/* A listener of its own first: it closes with the process, so a
	 * worker that dies has its queue moved to the others.  One opened
	 * ahead only where the kernel refuses that (a worker that dropped
	 * root): those stay open in the listening process. */
	ret = lane->steer_slot < 0 ? -ENOSPC :
	      rs_steer_listener_open(listener->fd, (unsigned)lane->steer_slot, &entry->steer);
	if (ret == -EADDRINUSE && listener->preopened &&
	    (entry->preopened_index = claim_preopened(listener->preopened)) >= 0) {
		struct rs_preopened *preopened = listener->preopened;

		entry->steer.fd = preopened->fds[entry->preopened_index];
		ret = rs_steer_listener_register(&entry->steer, (unsigned)lane->steer_slot);
		if (ret < 0) {
			atomic_store(&preopened->claims[entry->preopened_index], 0);
			entry->steer.fd = -1;
			entry->preopened_index = -1;
		} else {
			ret = entry->steer.fd;
		}
	}
	/* Without the program the first outcome is the process tree's one
	 * line on how steering runs; with it, a failure is worth a line of
	 * its own.  Every worker of a server that drops root meets the same
	 * refusal: one line for all of them. */
	if (!rs_steer_loaded() && lane->steer_slot >= 0)
		rs_steer_without_program(ret);
	else if (ret == -EADDRINUSE && lane->steer_slot >= 0)
		rs_steer_warn_once(RS_STEER_WARNED_LANE_LISTENER,
				   "fd %d: lane %u cannot open a listener of its own (%s: the process is no longer "
				   "the user that listened, and none opened ahead is left): it accepts on the application's",
				   listener->fd, lane->index, strerror(-ret));
	else if (ret < 0 && lane->steer_slot >= 0)
		rs_steer_warn_once(RS_STEER_WARNED_LANE_LISTENER,
				   "fd %d: cannot open lane %u's own listener (%s): it accepts on the application's",
				   listener->fd, lane->index, strerror(-ret));
	if (ret < 0 && lane->steer_slot >= 0) {
		/* Remembered as failed (fd -1), so it is not retried on every
		 * call. */
		entry->steer.fd = -1;
	} else if (ret >= 0 && entry->preopened_index < 0) {
		int flags = REAL(fcntl)(entry->steer.fd, F_GETFL, 0);

		REAL(fcntl)(entry->steer.fd, F_SETFL, flags | O_NONBLOCK);
	}
	if (entry->steer.fd >= 0)
		rs_debug("fd %d: lane %u listens on fd %d (%s), slot %d", listener->fd, lane->index,
			 entry->steer.fd, entry->preopened_index >= 0 ? "opened ahead" : "its own",
			 lane->steer_slot);
	pthread_mutex_lock(&listener->lock);
	entry->next = listener->lane_listeners;
	listener->lane_listeners = entry;
	pthread_mutex_unlock(&listener->lock);
	rs_socket_ref(listener);
	lane->steered[lane->steered_count++] = listener;
	return entry->steer.fd;
}

static void entry_close(struct rs_socket *listener, struct rs_lane_listener *entry)
{
	struct rs_preopened *preopened = listener->preopened;

	if (entry->steer.fd >= 0)
		rs_steer_listener_close(&entry->steer);
	if (entry->preopened_index >= 0 && preopened) {
		/* This process's copy is closed; another may claim its own. */
		preopened->fds[entry->preopened_index] = -1;
		atomic_store(&preopened->claims[entry->preopened_index], 0);
	}
	free(entry);
}

void rs_listener_close_all(struct rs_socket *listener)
{
	struct rs_lane_listener *entry;

	pthread_mutex_lock(&listener->lock);
	entry = listener->lane_listeners;
	listener->lane_listeners = NULL;
	listener->steerable = false;
	pthread_mutex_unlock(&listener->lock);
	while (entry) {
		struct rs_lane_listener *next = entry->next;

		entry_close(listener, entry);
		entry = next;
	}
	if (listener->preopened) {
		struct rs_preopened *preopened = listener->preopened;

		for (unsigned i = 0; i < preopened->count; i++)
			if (preopened->fds[i] >= 0)
				rs_fd_close_private(preopened->fds[i]);
		munmap((void *)preopened->claims, PREOPENED_MAX * sizeof(uint32_t));
		free(preopened);
		listener->preopened = NULL;
	}
}

void rs_listeners_lane_gone(struct rs_lane *lane)
{
	for (unsigned i = 0; i < lane->steered_count; i++) {
		struct rs_socket *listener = lane->steered[i];
		struct rs_lane_listener **link, *found = NULL;

		pthread_mutex_lock(&listener->lock);
		for (link = &listener->lane_listeners; *link; link = &(*link)->next) {
			if ((*link)->lane == lane) {
				found = *link;
				*link = found->next;
				break;
			}
		}
		pthread_mutex_unlock(&listener->lock);
		if (found)
			entry_close(listener, found);
		rs_socket_unref(listener);
	}
	free(lane->steered);
	lane->steered = NULL;
	lane->steered_count = 0;
	if (lane->steer_slot >= 0)
		rs_steer_slot_release((unsigned)lane->steer_slot);
	lane->steer_slot = -1;
}

void rs_listener_atfork_child(struct rs_socket *listener)
{
	struct rs_lane_listener *entry = listener->lane_listeners;

	/* The parent's lanes own them: the child's copies just go.  The ones
	 * opened ahead and not claimed stay, for the child's lanes. */
	listener->lane_listeners = NULL;
	while (entry) {
		struct rs_lane_listener *next = entry->next;

		if (entry->steer.fd >= 0)
			rs_fd_close_private(entry->steer.fd);
		if (entry->preopened_index >= 0 && listener->preopened)
			listener->preopened->fds[entry->preopened_index] = -1;
		free(entry);
		entry = next;
	}
}

/* ---- accept -------------------------------------------------------------------- */

static void accepted_from(struct rs_socket *listener, int fd)
{
	pthread_mutex_lock(&listener->lock);
	for (struct rs_lane_listener *entry = listener->lane_listeners; entry; entry = entry->next) {
		if (entry->steer.fd == fd) {
			rs_steer_accepted(&entry->steer);
			break;
		}
	}
	pthread_mutex_unlock(&listener->lock);
}

/* Every lane listener of the application listener, the lane's own first,
 * into fds; returns how many. */
static int lane_fds(struct rs_socket *listener, int own, int *fds, int max)
{
	int count = 0;

	if (own >= 0)
		fds[count++] = own;
	pthread_mutex_lock(&listener->lock);
	for (struct rs_lane_listener *entry = listener->lane_listeners;
	     entry && count < max; entry = entry->next) {
		if (entry->steer.fd >= 0 && entry->steer.fd != own)
			fds[count++] = entry->steer.fd;
	}
	pthread_mutex_unlock(&listener->lock);
	return count;
}

/* One accept on a blocking application listener that must not block: in
 * the ring, completed at once or cancelled. */
static long accept_blocking_now(struct rs_lane *lane, int fd, struct sockaddr *address,
				socklen_t *length, int flags)
{
	struct rs_op op = { .kind = RS_OP_WAIT };
	struct io_uring_sqe *sqe;

	rs_lane_enter(lane);
	sqe = rs_lane_sqe(lane);
	io_uring_prep_accept(sqe, fd, address, length, flags);
	io_uring_sqe_set_data(sqe, &op);
	rs_lane_submit(lane);
	rs_lane_reap(lane);
	rs_lane_cancel(lane, &op);
	rs_lane_leave(lane);
	return op.result == -ECANCELED ? -EAGAIN : op.result;
}

/* Waits in the ring until one of two listeners has a connection. */
static int wait_for_connection(struct rs_lane *lane, int first, int second)
{
	struct rs_op ops[2] = { { .kind = RS_OP_WAIT }, { .kind = RS_OP_WAIT } };
	int fds[2] = { first, second }, ret = 0;
	bool armed[2] = { false, false };

	rs_lane_enter(lane);
	for (int i = 0; i < 2; i++) {
		struct io_uring_sqe *sqe;

		if (fds[i] < 0)
			continue;
		sqe = rs_lane_sqe(lane);
		io_uring_prep_poll_add(sqe, fds[i], POLLIN);
		io_uring_sqe_set_data(sqe, &ops[i]);
		armed[i] = true;
	}
	rs_listener_lane_waiting(lane);
	while (!(armed[0] && ops[0].done) && !(armed[1] && ops[1].done)) {
		ret = rs_lane_wait_timeout(lane, NULL, NULL);
		if (ret == -EINTR || (ret < 0 && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY))
			break;
		ret = 0;
	}
	rs_listener_lane_running(lane);
	for (int i = 0; i < 2; i++)
		if (armed[i])
			rs_lane_cancel(lane, &ops[i]);
	rs_lane_leave(lane);
	return ret;
}

long rs_listener_accept(struct rs_socket *listener, struct rs_lane *lane,
			struct sockaddr *address, socklen_t *length, int flags)
{
	int own = rs_listener_lane_fd(listener, lane);
	bool blocking = !listener->nonblocking;

	if (own < 0 && !listener->lane_listeners)
		return -ENOTSUP;
	for (;;) {
		int fds[8], count = lane_fds(listener, own, fds, 8);
		long result;

		for (int i = 0; i < count; i++) {
			result = rs_kernel_result(REAL(accept4)(fds[i], address, length, flags));
			if (result >= 0) {
				accepted_from(listener, fds[i]);
				return result;
			}
			if (result != -EAGAIN && result != -EWOULDBLOCK && result != -ECONNABORTED)
				return result;
		}
		/* The application's own listener: connections from before the
		 * first lane registered, or while none is. */
		if (blocking)
			result = accept_blocking_now(lane, listener->fd, address, length, flags);
		else
			result = rs_kernel_result(REAL(accept4)(listener->fd, address, length, flags));
		if (result != -EAGAIN || !blocking)
			return result;
		result = wait_for_connection(lane, own, listener->fd);
		if (result == -EINTR && !rs_restart_after_signal())
			return -EINTR;
		if (result < 0 && result != -EINTR)
			return result;
	}
}

/* ---- readiness ----------------------------------------------------------------- */

long rs_listener_epoll_ctl(struct rs_socket *listener, struct rs_lane *lane, int set_fd, int op,
			   struct epoll_event *event)
{
	long ret = rs_kernel_result(REAL(epoll_ctl)(set_fd, op, listener->fd, event));
	int own;

	if (ret < 0)
		return ret;
	own = rs_listener_lane_fd(listener, lane);
	if (own < 0)
		return 0;
	if (op == EPOLL_CTL_DEL) {
		REAL(epoll_ctl)(set_fd, EPOLL_CTL_DEL, own, NULL);
	} else {
		struct epoll_event copy = *event;

		if (REAL(epoll_ctl)(set_fd, op, own, &copy) < 0 && op == EPOLL_CTL_MOD &&
		    errno == ENOENT)
			REAL(epoll_ctl)(set_fd, EPOLL_CTL_ADD, own, &copy);
	}
	return 0;
}

/* ---- the lane's figures --------------------------------------------------------- */

void rs_listener_lane_waiting(struct rs_lane *lane)
{
	uint64_t now, open;

	if (lane->steer_slot < 0)
		return;
	now = rs_now_ns();
	if (lane->steer_left_wait_ns)
		lane->steer_busy_ns += now - lane->steer_left_wait_ns;
	lane->steer_left_wait_ns = 0;
	if (!lane->steer_window_ns)
		lane->steer_window_ns = now;
	if (now - lane->steer_window_ns >= BUSY_WINDOW_NS) {
		uint64_t permille = lane->steer_busy_ns * 1000 / (now - lane->steer_window_ns);

		lane->steer_busy_permille = (lane->steer_busy_permille * 3 + (unsigned)permille) / 4;
		lane->steer_busy_ns = 0;
		lane->steer_window_ns = now;
	}
	open = atomic_load_explicit((_Atomic uint64_t *)&lane->stats->sockets_open,
				    memory_order_relaxed);
	rs_steer_publish((unsigned)lane->steer_slot, (unsigned)open, lane->steer_busy_permille);
	rs_steer_waiting((unsigned)lane->steer_slot);
}

void rs_listener_lane_turn(struct rs_lane *lane)
{
	if (lane->steer_slot >= 0)
		rs_steer_heartbeat((unsigned)lane->steer_slot);
}

void rs_listener_lane_running(struct rs_lane *lane)
{
	if (lane->steer_slot < 0)
		return;
	lane->steer_left_wait_ns = rs_now_ns();
	rs_steer_heartbeat((unsigned)lane->steer_slot);
}
