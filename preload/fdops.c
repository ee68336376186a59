// SPDX-License-Identifier: MIT
/*
 * Calls that change what an fd number means: close, close_range, dup*,
 * fcntl, ioctl, and fork.
 *
 * The shim's state follows the kernel's fd table exactly: a closed number
 * never keeps state, a duplicated socket is handed back to the kernel path
 * (after its queued bytes have left) rather than shared between two numbers,
 * and a child of fork starts with fresh lanes and no queued bytes of its
 * parent's.
 */
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <linux/close_range.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "ringsteer.h"

static int close_socket(int fd)
{
	struct rs_socket *socket = rs_fd_remove(fd);
	int ret;

	if (!socket) {
		rs_epoll_close(fd);
		return rs_kernel_result(REAL(close)(fd));
	}
	if (socket->app_fds) {
		/* One of several numbers of an adopted or shared socket: the
		 * socket itself (and its epoll registrations, which belong to
		 * the socket, not to a number) closes with the last of them. */
		int remaining;

		ret = rs_kernel_result(REAL(close)(fd));
		pthread_mutex_lock(&socket->lock);
		remaining = --socket->app_fds;
		pthread_mutex_unlock(&socket->lock);
		if (remaining) {
			rs_socket_unref(socket);
			return ret;
		}
		rs_epoll_forget_socket(socket);
		if (socket->kind == RS_SOCKET_CONNECTED) {
			rs_socket_close(socket, rs_lane_get());
		} else {
			rs_listener_close_all(socket);
			rs_fd_close_private(socket->fd);
		}
		rs_socket_unref(socket);
		return ret;
	}
	rs_epoll_forget_socket(socket);
	if (socket->kind == RS_SOCKET_CONNECTED) {
		ret = rs_socket_close(socket, rs_lane_get());
	} else {
		rs_listener_close_all(socket);
		pthread_mutex_lock(&socket->lock);
		socket->fd = -1;
		pthread_mutex_unlock(&socket->lock);
		ret = rs_kernel_result(REAL(close)(fd));
	}
	rs_socket_unref(socket);
	return ret;
}

long rs_close(int fd)
{
	/* One of the shim's own: to the application it was never open. */
	if (unlikely(rs_fd_is_private(fd)))
		return -EBADF;
	return close_socket(fd);
}

/* The kernel's close_range over [first, last], around the shim's own
 * numbers. */
static long close_range_around_private(unsigned int first, unsigned int last, int flags)
{
	bool called = false;

	for (;;) {
		int private = rs_fd_next_private((int)(first > INT_MAX ? INT_MAX : first),
						 last > INT_MAX ? INT_MAX : (int)last);

		if (private < 0)
			break;
		if ((unsigned int)private > first) {
			if (REAL(close_range)(first, (unsigned int)private - 1, flags) < 0)
				return -errno;
			called = true;
		}
		if ((unsigned int)private >= last) {
			/* Nothing left to close; the table must still come
			 * unshared if the caller asked. */
			if (!called && (flags & CLOSE_RANGE_UNSHARE) && unshare(CLONE_FILES) < 0)
				return -errno;
			return 0;
		}
		first = (unsigned int)private + 1;
	}
	return rs_kernel_result(REAL(close_range)(first, last, flags));
}

long rs_close_range(unsigned int first, unsigned int last, int flags)
{
	unsigned int size = (unsigned int)rs_fdtable_size();

	if (!REAL(close_range))
		return -ENOSYS;
	/* What the kernel refuses closes nothing. */
	if (first > last || (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)))
		return rs_kernel_result(REAL(close_range)(first, last, flags));
	if (!(flags & CLOSE_RANGE_CLOEXEC)) {
		/* Closing them one by one keeps queued bytes ahead of the FIN;
		 * the kernel then closes the rest. */
		for (unsigned int fd = first; fd <= last && fd < size; fd++) {
			struct rs_socket *socket = rs_fd_get((int)fd);

			if (!socket) {
				rs_epoll_close((int)fd);
				continue;
			}
			rs_socket_unref(socket);
			close_socket((int)fd);
		}
	}
	return close_range_around_private(first, last, flags);
}

/* The C library's closefrom calls close_range internally, past any
 * interposer: the shim's sockets from lowest up must be closed here first,
 * or their numbers would stay its sockets when files take them. */
long rs_closefrom(int lowest)
{
	if (lowest < 0)
		lowest = 0;
	if (REAL(close_range) && rs_close_range((unsigned int)lowest, ~0U, 0) == 0)
		return 0;
	if (REAL(closefrom))
		REAL(closefrom)(lowest);
	return 0;
}

/*
 * A socket in event mode that gains a second number keeps its bytes received
 * ahead readable through both: both numbers lead to the one socket, which
 * from then on works on a private duplicate of its own (as an inherited
 * socket with several numbers does), so closing either number leaves the
 * other working.  duplicate(fd) makes the kernel's new number; returns it.
 */
static long share_number(struct rs_socket *socket, int fd, long (*duplicate)(int fd, void *context),
			 void *context)
{
	long number;

	pthread_mutex_lock(&socket->lock);
	if (!socket->app_fds) {
		int own = rs_fd_duplicate_private(fd);

		if (own < 0) {
			pthread_mutex_unlock(&socket->lock);
			return own;
		}
		socket->fd = own;
		socket->app_fds = 1;
	}
	number = duplicate(fd, context);
	if (number >= 0) {
		socket->app_fds++;
		rs_socket_ref(socket);
	}
	pthread_mutex_unlock(&socket->lock);
	if (number >= 0)
		rs_fd_install((int)number, socket);
	return number;
}

/* The fd is about to gain a second number, or an owner the shim does not
 * see (stdio): let its queued bytes leave, then hand it to the kernel path
 * for good. */
static int release_to_kernel(int fd)
{
	struct rs_socket *socket = rs_fd_get(fd);
	struct rs_lane *lane;
	int ret;

	if (!socket)
		return 0;
	lane = rs_lane_get();
	if (lane)
		rs_lane_enter(lane);
	ret = rs_socket_drain(socket, lane);
	if (lane)
		rs_lane_leave(lane);
	if (ret == 0) {
		struct rs_socket *removed = rs_fd_remove(fd);

		if (removed) {
			/* Its lanes' listeners would receive connections
			 * that nobody accepts any more. */
			if (removed->kind == RS_SOCKET_LISTENER)
				rs_listener_close_all(removed);
			if (removed->kind == RS_SOCKET_CONNECTED && removed->opened_stats)
				RS_STAT_SUB(removed->opened_stats, sockets_open, 1);
			/* Whatever still holds the object must not reach the
			 * number, which the kernel path now owns. */
			rs_socket_forget(removed);
		}
		rs_debug("fd %d: the kernel path carries it from now on", fd);
	}
	rs_socket_unref(socket);
	return ret;
}

/* Event-mode sockets are shared under the new number (see share_number). */
static struct rs_socket *shared_socket(int fd)
{
	struct rs_socket *socket = rs_fd_get(fd);

	if (socket && (!socket->event_mode || socket->kind != RS_SOCKET_CONNECTED)) {
		rs_socket_unref(socket);
		socket = NULL;
	}
	return socket;
}

static long duplicate_any(int fd, void *context)
{
	(void)context;
	return rs_kernel_result(REAL(dup)(fd));
}

struct onto {
	int target;
	int flags;
	bool three;
	bool fcntl_command;
};

static long duplicate_onto_target(int fd, void *context)
{
	const struct onto *onto = context;

	if (onto->fcntl_command)
		return rs_kernel_result(REAL(fcntl)(fd, onto->flags, onto->target));
	if (onto->three)
		return rs_kernel_result(REAL(dup3)(fd, onto->target, onto->flags));
	return rs_kernel_result(REAL(dup2)(fd, onto->target));
}

long rs_dup(int fd)
{
	struct rs_socket *shared = shared_socket(fd);
	int ret;

	if (shared) {
		long number = share_number(shared, fd, duplicate_any, NULL);

		rs_socket_unref(shared);
		return number;
	}
	ret = release_to_kernel(fd);

	if (ret < 0)
		return ret;
	return rs_kernel_result(REAL(dup)(fd));
}

static long duplicate_onto(int fd, int target, int flags, bool three)
{
	int ret;

	struct rs_socket *shared, *old_target;

	if (fd == target)
		return three ? -EINVAL : rs_kernel_result(REAL(dup2)(fd, target));
	shared = shared_socket(fd);
	if (!shared) {
		ret = release_to_kernel(fd);
		if (ret < 0)
			return ret;
	}
	/* dup2 closes the target: if it was ours, close it our way first. */
	old_target = rs_fd_get(target);

	if (old_target) {
		rs_socket_unref(old_target);
		close_socket(target);
	} else {
		rs_epoll_close(target);
	}
	if (shared) {
		struct onto onto = { .target = target, .flags = flags, .three = three };
		long number = share_number(shared, fd, duplicate_onto_target, &onto);

		rs_socket_unref(shared);
		return number;
	}
	if (three)
		return rs_kernel_result(REAL(dup3)(fd, target, flags));
	return rs_kernel_result(REAL(dup2)(fd, target));
}

long rs_dup2(int fd, int target)
{
	return duplicate_onto(fd, target, 0, false);
}

long rs_dup3(int fd, int target, int flags)
{
	return duplicate_onto(fd, target, flags, true);
}

static long fcntl_common(int fd, int command, unsigned long argument, bool large)
{
	struct rs_socket *socket;
	long result;

	if (command == F_DUPFD || command == F_DUPFD_CLOEXEC) {
		struct rs_socket *shared = shared_socket(fd);
		int ret;

		if (shared) {
			struct onto onto = { .target = (int)argument, .flags = command,
					     .fcntl_command = true };
			long number = share_number(shared, fd, duplicate_onto_target, &onto);

			rs_socket_unref(shared);
			return number;
		}
		ret = release_to_kernel(fd);
		if (ret < 0)
			return ret;
	}
	if (large)
		result = REAL(fcntl64)(fd, command, argument);
	else
		result = REAL(fcntl)(fd, command, argument);
	if (result < 0)
		return -errno;
	if (command == F_SETFL && (socket = rs_fd_get(fd))) {
		pthread_mutex_lock(&socket->lock);
		socket->nonblocking = argument & O_NONBLOCK;
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
	}
	return result;
}

long rs_fcntl(int fd, unsigned long command, unsigned long argument)
{
	return fcntl_common(fd, (int)command, argument, false);
}

long rs_fcntl64(int fd, unsigned long command, unsigned long argument)
{
	if (!REAL(fcntl64))
		return fcntl_common(fd, (int)command, argument, false);
	return fcntl_common(fd, (int)command, argument, true);
}

long rs_ioctl(int fd, unsigned long request, unsigned long argument)
{
	struct rs_socket *socket;

	if (REAL(ioctl)(fd, request, argument) < 0)
		return -errno;
	if (request == FIONREAD && argument && (socket = rs_fd_get(fd))) {
		struct rs_lane *lane = rs_lane_get();

		/* Bytes received ahead are the application's too.  What the
		 * receive in flight has taken may have completed during the
		 * ioctl: reap it first.  With a receive still in flight the
		 * kernel holds nothing it has not handed over. */
		if (lane && socket->event_mode) {
			rs_lane_enter(lane);
			rs_lane_reap_now(lane);
			rs_lane_leave(lane);
		}
		pthread_mutex_lock(&socket->lock);
		if (socket->event_mode && socket->rx_in_flight)
			*(int *)argument = 0;
		*(int *)argument += (int)rs_socket_buffered(socket);
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
		return 0;
	}
	if (request == FIONBIO && argument && (socket = rs_fd_get(fd))) {
		pthread_mutex_lock(&socket->lock);
		socket->nonblocking = *(const int *)argument != 0;
		pthread_mutex_unlock(&socket->lock);
		rs_socket_unref(socket);
	}
	return 0;
}

/* fork's bookkeeping is in pthread_atfork handlers (process.c), which also
 * run for forks the C library makes on its own. */
/*
 * stdio's own reads, writes and closes go through the C library's internal
 * calls, which no interposer sees.  A socket given to fdopen goes to the
 * kernel path for good, after its queued bytes, as a duplicated one does.
 * One in event mode cannot: its bytes received ahead are readable only
 * through read(), and it stays the shim's, each write's bytes leaving
 * before the write returns (rs_socket_write_through).
 */
long rs_fdopen(int fd, const char *mode)
{
	struct rs_socket *socket = rs_fd_get(fd);
	FILE *stream;

	if (socket) {
		bool shared = socket->event_mode && socket->kind == RS_SOCKET_CONNECTED;
		int ret = 0;

		if (shared)
			rs_socket_write_through(socket);
		rs_socket_unref(socket);
		if (!shared)
			ret = release_to_kernel(fd);
		if (ret < 0)
			return ret;
	}
	stream = REAL(fdopen)(fd, mode);
	return stream ? (long)(uintptr_t)stream : -errno;
}

/* fclose closes the fd out of our sight: the shim lets go of it first, or
 * its number, reused, would lead to this socket's state. */
long rs_fclose(FILE *stream)
{
	int fd = stream ? fileno(stream) : -1;
	struct rs_socket *socket = fd >= 0 ? rs_fd_get(fd) : NULL;

	if (socket) {
		bool event = socket->event_mode;

		if (event) {
			rs_epoll_forget_socket(socket);
			pthread_mutex_lock(&socket->lock);
			rs_socket_stop_receiving(socket);
			pthread_mutex_unlock(&socket->lock);
		}
		rs_socket_unref(socket);
		release_to_kernel(fd);
	}
	return rs_kernel_result(REAL(fclose)(stream));
}

long rs_fork(void)
{
	return rs_kernel_result(REAL(fork)());
}
