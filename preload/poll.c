// SPDX-License-Identifier: MIT
/*
 * poll, ppoll, select and pselect.
 *
 * When no fd of the call is an accelerated socket, the kernel answers, after
 * the thread's queued sends have left (an application that waits for
 * readiness is often waiting for the answer to what it just wrote).
 *
 * When some are, they are put in event mode, as epoll does (their bytes are
 * then received ahead by the lane, so the kernel's readiness would be wrong
 * for them), and the call is answered in the ring: accelerated sockets from
 * the shim's state, every other fd from a poll operation armed for this
 * call.  One io_uring_enter submits the queued sends, the receives ahead and
 * those polls, and waits; a second one cancels the polls that did not fire.
 * A call with many kernel fds looks at them with a zero-timeout poll instead,
 * and waits in short slices.
 *
 * select is answered through the same code, with its sets turned into a
 * pollfd array and back, as the kernel does.
 */
#include <stdlib.h>
#include <string.h>

#include "ringsteer.h"

/* Kernel fds past this many are looked at by a zero-timeout poll rather
 * than by poll operations, so the ring never holds too many at once. */
#define RING_POLLS_MAX 64
#define SLICE_NS 1000000ll
#define STACK_SLOTS 64

struct slot {
	struct rs_socket *socket;  /* accelerated, with a reference; else NULL */
	struct rs_op op;           /* the poll of a kernel fd */
	bool armed;
};

static bool eligible(struct rs_socket *socket)
{
	return socket->kind == RS_SOCKET_CONNECTED && !socket->kernel_path && !socket->app_fds &&
	       !socket->has_timeouts;
}

/* Finds the accelerated sockets of the call; false if there are none (the
 * kernel then answers the whole call). */
static bool classify(struct pollfd *fds, nfds_t count, struct slot *slots, unsigned *kernel_fds)
{
	bool any = false;

	*kernel_fds = 0;
	for (nfds_t i = 0; i < count; i++) {
		struct rs_socket *socket;

		slots[i].socket = NULL;
		slots[i].armed = false;
		if (fds[i].fd < 0)
			continue;
		socket = rs_fd_get(fds[i].fd);
		if (socket && eligible(socket)) {
			int ret;

			pthread_mutex_lock(&socket->lock);
			ret = rs_socket_enter_event_mode(socket);
			pthread_mutex_unlock(&socket->lock);
			if (ret == 0) {
				slots[i].socket = socket;
				any = true;
				socket = NULL;
			}
		}
		if (socket)
			rs_socket_unref(socket);
		if (!slots[i].socket)
			(*kernel_fds)++;
	}
	return any;
}

static void arm_kernel_polls(struct pollfd *fds, nfds_t count, struct slot *slots,
			     struct rs_lane *lane)
{
	for (nfds_t i = 0; i < count; i++) {
		struct io_uring_sqe *sqe;

		if (slots[i].socket || fds[i].fd < 0 || slots[i].armed)
			continue;
		slots[i].op = (struct rs_op){ .kind = RS_OP_WAIT };
		sqe = rs_lane_sqe(lane);
		io_uring_prep_poll_add(sqe, fds[i].fd, (unsigned)(uint16_t)fds[i].events);
		io_uring_sqe_set_data(sqe, &slots[i].op);
		slots[i].armed = true;
	}
}

/* Fills revents; returns how many fds have some.  kernel_now holds the
 * answers of a zero-timeout poll of the kernel fds (sliced mode). */
static int gather(struct pollfd *fds, nfds_t count, struct slot *slots, struct rs_lane *lane,
		  bool sliced)
{
	int ready = 0;

	for (nfds_t i = 0; i < count; i++) {
		short interest = (short)(fds[i].events | POLLERR | POLLHUP);

		fds[i].revents = 0;
		if (fds[i].fd < 0)
			continue;
		if (slots[i].socket) {
			struct rs_socket *socket = slots[i].socket;

			pthread_mutex_lock(&socket->lock);
			/* In no epoll set, its loop is the thread that polls it. */
			if (!socket->epoll_memberships && socket->loop_lane != lane)
				rs_socket_follow_loop(socket, lane);
			rs_socket_want_receive(socket, lane);
			fds[i].revents = (short)(rs_socket_readiness(socket) & (uint32_t)(uint16_t)interest);
			pthread_mutex_unlock(&socket->lock);
		} else if (sliced) {
			struct pollfd one = { .fd = fds[i].fd, .events = fds[i].events };

			if (REAL(poll)(&one, 1, 0) > 0)
				fds[i].revents = one.revents;
		} else if (slots[i].armed && slots[i].op.done) {
			int result = slots[i].op.result;

			if (result == -EBADF)
				fds[i].revents = POLLNVAL;
			else if (result >= 0)
				fds[i].revents = (short)(result & (uint16_t)(interest | POLLNVAL));
			if (!fds[i].revents)
				slots[i].armed = false; /* re-armed on the next round */
		}
		if (fds[i].revents)
			ready++;
	}
	return ready;
}

/* The polls that did not fire are cancelled, and their completions reaped,
 * before the slots (on our stack or heap) go away.  With an async cancel,
 * not a poll remove: a poll whose wake-up is being handled refuses a
 * remove (EALREADY), and if that wake-up was spurious (a listener shared
 * with another process, which took the connection) it goes back to
 * waiting, and its completion would never come.  A cancel marks it, and
 * it completes either way. */
static void disarm(struct slot *slots, nfds_t count, struct rs_lane *lane)
{
	bool waiting = false;

	for (nfds_t i = 0; i < count; i++) {
		struct io_uring_sqe *sqe;

		if (!slots[i].armed || slots[i].op.done)
			continue;
		sqe = rs_lane_sqe(lane);
		io_uring_prep_cancel(sqe, &slots[i].op, 0);
		io_uring_sqe_set_data(sqe, NULL);
		waiting = true;
	}
	while (waiting) {
		waiting = false;
		rs_lane_reap(lane);
		for (nfds_t i = 0; i < count && !waiting; i++)
			waiting = slots[i].armed && !slots[i].op.done;
		if (waiting)
			rs_lane_wait_timeout(lane, NULL, NULL);
	}
}

/* Answers the call in the ring; *handled false if the kernel must. */
static long ring_poll(struct pollfd *fds, nfds_t count, long long timeout_ns,
		      const sigset_t *mask, bool *handled)
{
	struct slot stack_slots[STACK_SLOTS], *slots = stack_slots;
	struct rs_lane *lane = rs_lane_get();
	uint64_t deadline = timeout_ns > 0 ? rs_now_ns() + (uint64_t)timeout_ns : 0;
	unsigned kernel_fds;
	bool sliced;
	long ready;

	*handled = false;
	if (!lane || !rs_config.event_sockets || !count || rs_bad_pointer(fds))
		return 0;
	if (count > STACK_SLOTS) {
		slots = malloc(count * sizeof(*slots));
		if (!slots)
			return 0;
	}
	/* Kernel fds alone go to the kernel, unless a socket that moved to
	 * another loop may need this lane to end its receive meanwhile. */
	if (!classify(fds, count, slots, &kernel_fds) && !lane->receives_in_flight) {
		if (slots != stack_slots)
			free(slots);
		return 0;
	}
	*handled = true;
	RS_COUNT_CALL(lane);
	sliced = kernel_fds > RING_POLLS_MAX;
	rs_lane_enter(lane);
	if (!sliced)
		arm_kernel_polls(fds, count, slots, lane);
	for (bool looked = false;;) {
		struct __kernel_timespec wait_for, *wait_pointer;
		bool expired;
		int ret;

		if (timeout_ns == 0) {
			rs_lane_reap_now(lane);
		} else {
			rs_lane_begin_readiness_wait(lane);
			rs_lane_reap(lane);
		}
		ready = gather(fds, count, slots, lane, sliced);
		if ((ready || timeout_ns == 0) && !looked && lane->unsubmitted) {
			/* Before answering, submit the kernel fds' polls: the
			 * ready ones answer at once. */
			looked = true;
			rs_lane_submit(lane);
			continue;
		}
		if (ready || timeout_ns == 0)
			break;
		if (!sliced)
			arm_kernel_polls(fds, count, slots, lane);
		/* Without a wake eventfd, other threads' changes are seen
		 * only by looking again. */
		wait_pointer = rs_wait_limit(timeout_ns, deadline, sliced || lane->wake_fd < 0,
					     SLICE_NS, &wait_for, &expired);
		if (expired)
			break;
		ret = rs_lane_wait_timeout(lane, wait_pointer, mask);
		if (ret == -EINTR) {
			/* poll and select are never restarted after a handler. */
			rs_lane_reap(lane);
			ready = gather(fds, count, slots, lane, sliced);
			if (!ready)
				ready = -EINTR;
			break;
		}
	}
	rs_lane_end_readiness_wait(lane);
	disarm(slots, count, lane);
	rs_lane_submit(lane);
	rs_lane_leave(lane);
	for (nfds_t i = 0; i < count; i++) {
		if (slots[i].socket)
			rs_socket_unref(slots[i].socket);
	}
	if (slots != stack_slots)
		free(slots);
	return ready;
}

static long long timespec_ns(const struct timespec *timeout)
{
	if (!timeout)
		return -1;
	return (long long)timeout->tv_sec * 1000000000ll + timeout->tv_nsec;
}

long rs_poll(struct pollfd *fds, nfds_t count, int timeout)
{
	bool handled;
	long ready = ring_poll(fds, count, timeout < 0 ? -1 : timeout * 1000000ll, NULL, &handled);

	if (handled)
		return ready;
	rs_lane_flush_before_block();
	return rs_kernel_result(REAL(poll)(fds, count, timeout));
}

long rs___poll_chk(struct pollfd *fds, nfds_t count, int timeout, size_t fds_length)
{
	if (count > fds_length / sizeof(*fds))
		return rs_kernel_result(REAL(__poll_chk)(fds, count, timeout, fds_length));
	return rs_poll(fds, count, timeout);
}

long rs_ppoll(struct pollfd *fds, nfds_t count, const struct timespec *timeout,
	      const sigset_t *mask)
{
	bool handled;
	long ready;

	if (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 ||
			timeout->tv_nsec >= 1000000000L))
		return -EINVAL;
	ready = ring_poll(fds, count, timespec_ns(timeout), mask, &handled);
	if (handled)
		return ready;
	rs_lane_flush_before_block();
	return rs_kernel_result(REAL(ppoll)(fds, count, timeout, mask));
}

/* ---- select --------------------------------------------------------------- */

/* The kernel's mapping between poll bits and select's three sets. */
#define SELECT_READ   (POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR)
#define SELECT_WRITE  (POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR)
#define SELECT_EXCEPT (POLLPRI)

/* True if any fd of the sets is an accelerated socket. */
static bool sets_have_accelerated(int count, fd_set *readable, fd_set *writable,
				  fd_set *exceptional)
{
	for (int fd = 0; fd < count; fd++) {
		struct rs_socket *socket;
		bool member = (readable && FD_ISSET(fd, readable)) ||
			      (writable && FD_ISSET(fd, writable)) ||
			      (exceptional && FD_ISSET(fd, exceptional));

		if (!member || !(socket = rs_fd_get(fd)))
			continue;
		member = eligible(socket);
		rs_socket_unref(socket);
		if (member)
			return true;
	}
	return false;
}

static long ring_select(int count, fd_set *readable, fd_set *writable, fd_set *exceptional,
			long long timeout_ns, const sigset_t *mask, bool *handled)
{
	struct pollfd stack_fds[STACK_SLOTS], *fds = stack_fds;
	nfds_t used = 0;
	long ready;

	*handled = false;
	if ((readable && rs_bad_pointer(readable)) || (writable && rs_bad_pointer(writable)) ||
	    (exceptional && rs_bad_pointer(exceptional)))
		return 0;
	if (count <= 0 || count > FD_SETSIZE || !rs_lane_get() || !rs_config.event_sockets ||
	    !sets_have_accelerated(count, readable, writable, exceptional))
		return 0;
	if (count > STACK_SLOTS) {
		fds = malloc((size_t)count * sizeof(*fds));
		if (!fds)
			return 0;
	}
	for (int fd = 0; fd < count; fd++) {
		short events = 0;

		if (readable && FD_ISSET(fd, readable))
			events |= POLLIN | POLLRDNORM | POLLRDBAND;
		if (writable && FD_ISSET(fd, writable))
			events |= POLLOUT | POLLWRNORM | POLLWRBAND;
		if (exceptional && FD_ISSET(fd, exceptional))
			events |= POLLPRI;
		if (events)
			fds[used++] = (struct pollfd){ .fd = fd, .events = events };
	}
	ready = ring_poll(fds, used, timeout_ns, mask, handled);
	if (*handled && ready >= 0) {
		for (nfds_t i = 0; i < used; i++) {
			if (fds[i].revents & POLLNVAL) {
				ready = -EBADF;
				break;
			}
		}
	}
	if (*handled && ready >= 0) {
		long bits = 0;

		if (readable)
			FD_ZERO(readable);
		if (writable)
			FD_ZERO(writable);
		if (exceptional)
			FD_ZERO(exceptional);
		for (nfds_t i = 0; i < used; i++) {
			short revents = fds[i].revents;

			if ((revents & SELECT_READ) && (fds[i].events & POLLIN)) {
				FD_SET(fds[i].fd, readable);
				bits++;
			}
			if ((revents & SELECT_WRITE) && (fds[i].events & POLLOUT)) {
				FD_SET(fds[i].fd, writable);
				bits++;
			}
			if ((revents & SELECT_EXCEPT) && (fds[i].events & POLLPRI)) {
				FD_SET(fds[i].fd, exceptional);
				bits++;
			}
		}
		ready = bits;
	}
	if (fds != stack_fds)
		free(fds);
	return ready;
}

long rs_select(int count, fd_set *readable, fd_set *writable, fd_set *exceptional,
	       struct timeval *timeout)
{
	long long timeout_ns = -1;
	uint64_t start = 0;
	bool handled;
	long ready;

	if (timeout) {
		if (timeout->tv_sec < 0 || timeout->tv_usec < 0)
			return -EINVAL;
		timeout_ns = (long long)timeout->tv_sec * 1000000000ll +
			     (long long)timeout->tv_usec * 1000ll;
		start = rs_now_ns();
	}
	ready = ring_select(count, readable, writable, exceptional, timeout_ns, NULL, &handled);
	if (handled) {
		if (timeout) {
			/* Linux's select leaves the time not slept. */
			long long left = timeout_ns - (long long)(rs_now_ns() - start);

			if (left < 0)
				left = 0;
			timeout->tv_sec = left / 1000000000ll;
			timeout->tv_usec = (left % 1000000000ll) / 1000;
		}
		return ready;
	}
	rs_lane_flush_before_block();
	return rs_kernel_result(REAL(select)(count, readable, writable, exceptional, timeout));
}

long rs_pselect(int count, fd_set *readable, fd_set *writable, fd_set *exceptional,
		const struct timespec *timeout, const sigset_t *mask)
{
	bool handled;
	long ready;

	if (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 ||
			timeout->tv_nsec >= 1000000000L))
		return -EINVAL;
	ready = ring_select(count, readable, writable, exceptional, timespec_ns(timeout), mask,
			    &handled);
	if (handled)
		return ready;
	rs_lane_flush_before_block();
	return rs_kernel_result(REAL(pselect)(count, readable, writable, exceptional, timeout, mask));
}
