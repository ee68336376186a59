// SPDX-License-Identifier: MIT
/*
 * The data path: accept, receive and send on accelerated sockets.
 *
 * A blocking receive or accept is one ring operation, submitted together with
 * every send the lane has queued, in one io_uring_enter that also waits.  A
 * send on a blocking socket copies into the socket's queue and returns; the
 * queue's cap (RINGSTEER_TXQ_BYTES) makes a writer wait, inside the ring, for
 * the peer to take bytes, so memory stays bounded when a peer does not read.
 *
 * Anything the ring path does not model exactly (non-blocking sockets in this
 * version, receive and send timeouts, MSG_DONTWAIT, out-of-band data, control
 * messages) takes the kernel path, after the socket's queued bytes have left
 * so that the order on the wire is the application's order.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ringsteer.h"

static void count_kernel_op(void)
{
	struct rs_lane *lane = rs_lane_get();

	RS_STAT_ADD(lane ? lane->stats : rs_process_stats, kernel_ops, 1);
}

/*
 * After a signal interrupted a wait in the ring, decide as the kernel would
 * have for a blocking socket call: restart if the handler that ran had
 * SA_RESTART.  Which signal ran is not known, so restart only if every
 * signal that could have been delivered (not blocked, with a handler) has
 * SA_RESTART; this is exact unless handlers with and without it mix.
 */
bool rs_restart_after_signal(void)
{
	sigset_t blocked;

	pthread_sigmask(SIG_BLOCK, NULL, &blocked);
	for (int signal_number = 1; signal_number < NSIG; signal_number++) {
		struct sigaction action;

		/* Faults are delivered to the thread that made them, never to
		 * one blocked in a call (a sanitizer's SIGSEGV handler, say). */
		if (signal_number == SIGKILL || signal_number == SIGSTOP ||
		    signal_number == SIGSEGV || signal_number == SIGBUS ||
		    signal_number == SIGFPE || signal_number == SIGILL ||
		    signal_number == SIGTRAP || signal_number == SIGSYS ||
		    sigismember(&blocked, signal_number) == 1)
			continue;
		if (sigaction(signal_number, NULL, &action))
			continue;
		if (action.sa_handler == SIG_DFL || action.sa_handler == SIG_IGN)
			continue;
		if (!(action.sa_flags & SA_RESTART))
			return false;
	}
	return true;
}

/* A pending error from a deferred send, reported once.  A receive reports
 * only what the kernel would report to a receive (not EPIPE). */
static int take_send_error(struct rs_socket *socket, bool for_receive)
{
	int error = socket->tx_error;

	if (!error || (for_receive && error == -EPIPE))
		return 0;
	socket->tx_error = 0;
	return error;
}

static long send_error(int error, int flags)
{
	if (error == -EPIPE && !(flags & MSG_NOSIGNAL))
		pthread_kill(pthread_self(), SIGPIPE);
	return error;
}

/* An internal failure (the ring itself failing, memory) must not reach the
 * application: the socket goes back to the kernel path for good, and one
 * line says why. */
static void fall_back(struct rs_socket *socket, struct rs_lane *lane, const char *why, int error)
{
	pthread_mutex_lock(&socket->lock);
	socket->kernel_path = true;
	rs_socket_sync_cork(socket);
	pthread_mutex_unlock(&socket->lock);
	RS_STAT_ADD(lane ? lane->stats : rs_process_stats, fallbacks, 1);
	rs_warn("fd %d: %s (%s): the kernel path carries it from now on", socket->fd, why,
		strerror(-error));
}

/*
 * A non-blocking connect (RINGSTEER_CLIENT=1) leaves the socket to the
 * kernel until it is established: the first call on it after that (the
 * SO_ERROR check that follows the writable event, a send, a receive)
 * hands it to the shim, with the epoll registrations it made meanwhile.
 * A connection that failed or is already closing stays the kernel's.
 */
static void finish_connecting_slowly(struct rs_socket *socket)
{
	int saved_errno = errno, ret = -ENOTCONN;
	struct tcp_info info = { 0 };
	socklen_t length = sizeof(info);
	struct rs_lane *lane;

	if (REAL(getsockopt)(socket->fd, IPPROTO_TCP, TCP_INFO, &info, &length) == 0 &&
	    info.tcpi_state == TCP_SYN_SENT) {
		errno = saved_errno;
		return; /* still connecting: the kernel answers */
	}
	lane = rs_lane_get();
	if (info.tcpi_state == TCP_ESTABLISHED && lane && !socket->app_fds &&
	    !socket->has_timeouts) {
		rs_lane_enter(lane);
		ret = rs_epoll_take_over(socket, lane);
		rs_lane_leave(lane);
	}
	if (ret == 0) {
		RS_STAT_ADD(lane->stats, sockets_open, 1);
		RS_STAT_ADD(lane->stats, sockets_total, 1);
		socket->opened_stats = lane->stats;
	} else {
		if (ret != -ENOTCONN)
			rs_debug("fd %d: cannot take the connected socket over (%s): the kernel keeps it",
				 socket->fd, strerror(-ret));
		pthread_mutex_lock(&socket->lock);
		socket->kind = RS_SOCKET_CONNECTED;
		socket->kernel_path = true;
		pthread_mutex_unlock(&socket->lock);
	}
	errno = saved_errno;
}

static inline void finish_connecting(struct rs_socket *socket)
{
	if (unlikely(socket->kind == RS_SOCKET_CONNECTING))
		finish_connecting_slowly(socket);
}

/* Makes sure the socket's queued bytes go out with the lane's next enter:
 * a receive on a socket usually waits for the answer to what was sent. */
static void push_with_lane(struct rs_socket *socket, struct rs_lane *lane)
{
	if (!socket->txq.bytes || socket->tx_in_flight)
		return;
	if (socket->tx_lane == lane && socket->tx_listed)
		return;
	rs_socket_start_send(socket, lane);
}

/* ---- receive ---------------------------------------------------------------- */

enum receive_kind { RECEIVE_BUFFER, RECEIVE_MESSAGE };

/* Sets *ring_failed when the ring itself failed (not the operation). */
static long ring_receive_once(struct rs_socket *socket, struct rs_lane *lane,
			      enum receive_kind kind, void *buffer, size_t length,
			      struct msghdr *message, int flags, bool *ring_failed)
{
	for (;;) {
		struct rs_op op = { .kind = RS_OP_WAIT };
		struct io_uring_sqe *sqe;
		int ret;

		/* The socket's own queued bytes go in the same submission,
		 * ahead of the receive: what a blocking write then read would
		 * do, in one enter, waiting for both completions.  Not linked:
		 * a link costs the receive a trip through task work (about 1.5
		 * us of CPU per request at 50 blocking connections), and the
		 * two directions of a TCP connection do not wait on each
		 * other; a failed connection fails the receive by itself. */
		pthread_mutex_lock(&socket->lock);
		if (socket->txq.bytes && !socket->tx_in_flight &&
		    rs_socket_start_send_with_receive(socket, lane))
			op.paired_send = socket;
		else
			push_with_lane(socket, lane);
		pthread_mutex_unlock(&socket->lock);
		sqe = rs_lane_sqe(lane);
		if (kind == RECEIVE_BUFFER)
			io_uring_prep_recv(sqe, socket->fd, buffer, length, flags);
		else
			io_uring_prep_recvmsg(sqe, socket->fd, message, (unsigned)flags);
		/* Beside the answer it just queued, a request/response
		 * thread's next request is not here yet: POLL_FIRST skips the
		 * receive attempt that would only find that out (about 3
		 * percent of CPU per request at 50 blocking connections).  One
		 * already here is received as the poll is armed. */
		if (op.paired_send && lane->receive_poll_first)
			sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
		io_uring_sqe_set_data(sqe, &op);
		ret = rs_lane_wait(lane, &op);
		if (ret < 0) {
			/* The operation writes into the caller's buffer: it
			 * must be settled before we return.  The send beside it
			 * goes on, as the bytes of a write that returned. */
			rs_lane_cancel(lane, &op);
			if (op.result != -ECANCELED && op.result != -EINTR)
				return op.result;
			if (ret != -EINTR) {
				*ring_failed = true;
				return ret;
			}
			if (rs_restart_after_signal())
				continue;
			return -EINTR;
		}
		if (op.result == -EINTR && rs_restart_after_signal())
			continue;
		return op.result;
	}
}

static long kernel_receive(struct rs_socket *socket, enum receive_kind kind, void *buffer,
			   size_t length, struct msghdr *message, int flags)
{
	long result;

	/* The peer may be waiting for what this thread queued. */
	rs_lane_flush_before_block();
	count_kernel_op();
	if (kind == RECEIVE_BUFFER)
		result = REAL(recvfrom)(socket->fd, buffer, length, flags, NULL, NULL);
	else
		result = REAL(recvmsg)(socket->fd, message, flags);
	return rs_kernel_result(result);
}

/* Copies up to length buffered bytes out, into buffer or message's iovecs. */
static size_t copy_out(struct rs_socket *socket, enum receive_kind kind, void *buffer,
		       size_t length, struct msghdr *message)
{
	const char *from = socket->rx_buffer + socket->rx_start;
	size_t available = socket->rx_end - socket->rx_start, copied = 0;

	if (kind == RECEIVE_BUFFER) {
		copied = length < available ? length : available;
		memcpy(buffer, from, copied);
		return copied;
	}
	for (size_t i = 0; i < message->msg_iovlen && copied < available; i++) {
		size_t part = message->msg_iov[i].iov_len;

		if (part > available - copied)
			part = available - copied;
		if (part)
			memcpy(message->msg_iov[i].iov_base, from + copied, part);
		copied += part;
	}
	return copied;
}

/* Takes count bytes, already copied out, off the front of the buffer the
 * lane receives ahead into; socket locked. */
static void consume_received(struct rs_socket *socket, struct rs_lane *lane, size_t count)
{
	socket->rx_start += count;
	/* While a single receive is in flight it writes at rx_end: the
	 * offsets stay until it completes.  A multishot one writes elsewhere,
	 * and a buffer that grew past its cap shrinks back. */
	if (socket->rx_start == socket->rx_end &&
	    (!socket->rx_in_flight || socket->rx_multishot)) {
		socket->rx_start = socket->rx_end = 0;
		if (socket->rx_capacity > rs_config.rxq_bytes) {
			char *shrunk = realloc(socket->rx_buffer, rs_config.rxq_bytes);

			if (shrunk) {
				socket->rx_buffer = shrunk;
				socket->rx_capacity = rs_config.rxq_bytes;
			}
		}
	}
	rs_socket_want_receive(socket, lane);
}

/*
 * Event mode: bytes come from the buffer the lane received ahead into.  An
 * empty buffer answers EAGAIN on a non-blocking socket (the receive ahead is
 * armed with the next enter, and its completion is the next edge), and makes
 * a blocking call wait in the ring for that receive.
 */
static long event_receive(struct rs_socket *socket, enum receive_kind kind, void *buffer,
			  size_t length, struct msghdr *message, int flags)
{
	struct rs_lane *lane = rs_lane_get();
	bool nonblocking = socket->nonblocking || (flags & MSG_DONTWAIT);
	bool wait_all = (flags & MSG_WAITALL) && kind == RECEIVE_BUFFER && !(flags & MSG_PEEK);
	size_t total = 0;
	long result;

	if (kind == RECEIVE_MESSAGE) {
		message->msg_controllen = 0;
		message->msg_namelen = 0;
		message->msg_flags = 0;
	}
	RS_COUNT_CALL(lane);
	if (lane)
		rs_lane_enter(lane);
	pthread_mutex_lock(&socket->lock);
	for (;;) {
		int error = take_send_error(socket, true);
		int ret;

		if (error) {
			result = total ? (long)total : error;
			break;
		}
		if (socket->rx_start < socket->rx_end) {
			size_t copied = copy_out(socket, kind, (char *)buffer + total, length - total,
						 message);

			if (!(flags & MSG_PEEK))
				consume_received(socket, lane, copied);
			total += copied;
			if (!wait_all || total == length || nonblocking) {
				result = (long)total;
				break;
			}
			continue;
		}
		if (socket->rx_error) {
			result = total ? (long)total : socket->rx_error;
			if (!total)
				socket->rx_error = 0;
			break;
		}
		if (socket->rx_eof || socket->rx_reset || (kind == RECEIVE_BUFFER && !length)) {
			result = (long)total;
			break;
		}
		rs_socket_want_receive(socket, lane);
		if (nonblocking || !lane) {
			result = total ? (long)total : -EAGAIN;
			break;
		}
		pthread_mutex_unlock(&socket->lock);
		if (socket->arming_lane == lane || socket->rx_lane == lane) {
			ret = rs_lane_wait_any(lane);
		} else {
			/* Armed on another thread's lane: it completes there. */
			struct timespec pause = { .tv_sec = 0, .tv_nsec = 200000 };

			ret = REAL(ppoll)(NULL, 0, &pause, NULL) < 0 ? -errno : 0;
		}
		pthread_mutex_lock(&socket->lock);
		if (ret == -EINTR && !(total == 0 && rs_restart_after_signal())) {
			result = total ? (long)total : -EINTR;
			break;
		}
	}
	pthread_mutex_unlock(&socket->lock);
	if (lane)
		rs_lane_leave(lane);
	return result;
}

static long receive(struct rs_socket *socket, enum receive_kind kind, void *buffer,
		    size_t length, struct msghdr *message, int flags)
{
	struct rs_lane *lane;
	long result = 0, total = 0;
	bool ring_failed = false;
	int error;

	finish_connecting(socket);
	lane = rs_lane_get();
	if (socket->event_mode && !(flags & (MSG_OOB | MSG_ERRQUEUE)))
		return event_receive(socket, kind, buffer, length, message, flags);
	if (!lane || socket->kind != RS_SOCKET_CONNECTED || socket->nonblocking ||
	    socket->has_timeouts || socket->kernel_path ||
	    (flags & (MSG_DONTWAIT | MSG_OOB | MSG_ERRQUEUE)) ||
	    (kind == RECEIVE_MESSAGE && (flags & MSG_WAITALL)) ||
	    (kind == RECEIVE_BUFFER && !length))
		return kernel_receive(socket, kind, buffer, length, message, flags);

	RS_COUNT_CALL(lane);
	rs_lane_enter(lane);
	pthread_mutex_lock(&socket->lock);
	error = take_send_error(socket, true);
	pthread_mutex_unlock(&socket->lock);
	if (error) {
		rs_lane_leave(lane);
		return error;
	}
	if (kind == RECEIVE_BUFFER && (flags & MSG_WAITALL)) {
		/* Emulated: a cancelled MSG_WAITALL receive would not say how
		 * much it had received, and the kernel returns that count. */
		flags &= ~MSG_WAITALL;
		while ((size_t)total < length) {
			result = ring_receive_once(socket, lane, kind, (char *)buffer + total,
						   length - (size_t)total, NULL, flags, &ring_failed);
			if (result <= 0) {
				if (total)
					result = total;
				break;
			}
			total += result;
			result = total;
		}
	} else {
		result = ring_receive_once(socket, lane, kind, buffer, length, message, flags,
					   &ring_failed);
	}
	if (result > 0 && !(flags & MSG_PEEK))
		RS_STAT_ADD(lane->stats, bytes_received, (uint64_t)result);
	if (result < 0 && result != -EINTR && result != -EAGAIN && result != -EFAULT &&
	    result != -ENOTSOCK) {
		/* The connection failed (a reset, say): from now on the kernel
		 * answers sends, with its EPIPE and SIGPIPE. */
		pthread_mutex_lock(&socket->lock);
		socket->broken = true;
		rs_socket_readiness_moved(socket);
		pthread_mutex_unlock(&socket->lock);
	}
	rs_lane_leave(lane);
	if (ring_failed) {
		fall_back(socket, lane, "io_uring_enter failed", (int)result);
		if (total)
			return total;
		return kernel_receive(socket, kind, buffer, length, message, flags);
	}
	if (result == -ENOTSOCK) {
		/* The fd number now names something else: state left from a
		 * close we did not see. */
		struct rs_socket *stale = rs_fd_remove(socket->fd);

		if (stale)
			rs_socket_forget(stale);
		return -ENOTSOCK;
	}
	return result;
}

static long plain_read(int fd, void *buffer, size_t count)
{
	return rs_kernel_result(REAL(read)(fd, buffer, count));
}

long rs_read(int fd, void *buffer, size_t count)
{
	struct rs_socket *socket = rs_fd_get(fd);
	long result;

	if (likely(!socket)) {
		rs_lane_flush_before_block();
		return plain_read(fd, buffer, count);
	}
	result = receive(socket, RECEIVE_BUFFER, buffer, count, NULL, 0);
	rs_socket_unref(socket);
	if (result == -ENOTSOCK)
		return plain_read(fd, buffer, count);
	return result;
}

long rs___read_chk(int fd, void *buffer, size_t count, size_t buffer_length)
{
	if (count > buffer_length)
		return rs_kernel_result(REAL(__read_chk)(fd, buffer, count, buffer_length));
	return rs_read(fd, buffer, count);
}

long rs_readv(int fd, const struct iovec *iov, int iovcnt)
{
	struct rs_socket *socket = rs_fd_get(fd);
	struct msghdr message = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	long result;

	if (likely(!socket)) {
		rs_lane_flush_before_block();
		return rs_kernel_result(REAL(readv)(fd, iov, iovcnt));
	}
	if (iovcnt < 0 || iovcnt > IOV_MAX) {
		rs_socket_unref(socket);
		return -EINVAL;
	}
	result = receive(socket, RECEIVE_MESSAGE, NULL, 0, &message, 0);
	rs_socket_unref(socket);
	if (result == -ENOTSOCK)
		return rs_kernel_result(REAL(readv)(fd, iov, iovcnt));
	return result;
}

long rs_recv(int fd, void *buffer, size_t length, int flags)
{
	return rs_recvfrom(fd, buffer, length, flags, NULL, NULL);
}

long rs___recv_chk(int fd, void *buffer, size_t length, size_t buffer_length, int flags)
{
	if (length > buffer_length)
		return rs_kernel_result(REAL(__recv_chk)(fd, buffer, length, buffer_length, flags));
	return rs_recvfrom(fd, buffer, length, flags, NULL, NULL);
}

long rs_recvfrom(int fd, void *buffer, size_t length, int flags, struct sockaddr *address,
		 socklen_t *address_length)
{
	struct rs_socket *socket = rs_fd_get(fd);
	long result;

	if (likely(!socket)) {
		rs_lane_flush_before_block();
		return rs_kernel_result(REAL(recvfrom)(fd, buffer, length, flags, address,
						    address_length));
	}
	if (address && address_length) {
		/* The peer's address of a connected TCP socket, as recvmsg
		 * fills it. */
		struct iovec iov = { .iov_base = buffer, .iov_len = length };
		struct msghdr message = { .msg_name = address, .msg_namelen = *address_length,
					  .msg_iov = &iov, .msg_iovlen = 1 };

		result = receive(socket, RECEIVE_MESSAGE, NULL, 0, &message, flags);
		if (result >= 0)
			*address_length = message.msg_namelen;
	} else {
		result = receive(socket, RECEIVE_BUFFER, buffer, length, NULL, flags);
	}
	rs_socket_unref(socket);
	if (result == -ENOTSOCK)
		return rs_kernel_result(REAL(recvfrom)(fd, buffer, length, flags, address,
						    address_length));
	return result;
}

long rs___recvfrom_chk(int fd, void *buffer, size_t length, size_t buffer_length, int flags,
		       struct sockaddr *address, socklen_t *address_length)
{
	if (length > buffer_length)
		return rs_kernel_result(REAL(__recvfrom_chk)(fd, buffer, length, buffer_length, flags,
							  address, address_length));
	return rs_recvfrom(fd, buffer, length, flags, address, address_length);
}

long rs_recvmsg(int fd, struct msghdr *message, int flags)
{
	struct rs_socket *socket = rs_fd_get(fd);
	long result;

	if (likely(!socket)) {
		rs_lane_flush_before_block();
		return rs_kernel_result(REAL(recvmsg)(fd, message, flags));
	}
	result = receive(socket, RECEIVE_MESSAGE, NULL, 0, message, flags);
	rs_socket_unref(socket);
	if (result == -ENOTSOCK)
		return rs_kernel_result(REAL(recvmsg)(fd, message, flags));
	return result;
}

/* ---- send ------------------------------------------------------------------- */

static size_t iov_total(const struct iovec *iov, int iovcnt, bool *overflow)
{
	size_t total = 0;

	*overflow = false;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > SSIZE_MAX - total) {
			*overflow = true;
			return 0;
		}
		total += iov[i].iov_len;
	}
	return total;
}

/* Advances iov past done bytes into a scratch copy (at most IOV_MAX). */
static int iov_skip(const struct iovec *iov, int iovcnt, size_t done, struct iovec *out)
{
	int count = 0;

	for (int i = 0; i < iovcnt; i++) {
		if (done >= iov[i].iov_len) {
			done -= iov[i].iov_len;
			continue;
		}
		out[count].iov_base = (char *)iov[i].iov_base + done;
		out[count].iov_len = iov[i].iov_len - done;
		done = 0;
		count++;
	}
	return count;
}

/* The kernel is about to take bytes directly: it must have the cork the
 * application set. */
static void settle_cork(struct rs_socket *socket)
{
	pthread_mutex_lock(&socket->lock);
	rs_socket_sync_cork(socket);
	pthread_mutex_unlock(&socket->lock);
}

static long kernel_send(struct rs_socket *socket, const struct iovec *iov, int iovcnt,
			int flags, const struct msghdr *original)
{
	struct msghdr message = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
	struct rs_lane *lane = rs_lane_get();
	int ret;

	/* Whatever was queued before must reach the wire first. */
	if (socket->txq.bytes || socket->tx_in_flight) {
		if (lane)
			rs_lane_enter(lane);
		ret = rs_socket_drain(socket, lane);
		if (lane)
			rs_lane_leave(lane);
		if (ret < 0)
			return ret;
	}
	settle_cork(socket);
	count_kernel_op();
	if (original)
		return rs_kernel_result(REAL(sendmsg)(socket->fd, original, flags));
	return rs_kernel_result(REAL(sendmsg)(socket->fd, &message, flags));
}

/* Bytes were queued: they leave with the next submission of the caller's
 * lane, or, for a socket whose event loop runs on another thread's lane,
 * of that one (rs_lane_hand_off); socket locked. */
static void list_queued_bytes(struct rs_socket *socket, struct rs_lane *lane)
{
	struct rs_lane *home = socket->rx_lane;

	if (socket->tx_in_flight)
		return;
	if (socket->event_mode && home && home != lane) {
		if (socket->tx_lane == home && socket->tx_listed)
			return;
		if (rs_lane_hand_off(home, socket))
			return;
	}
	if (socket->tx_lane != lane || !socket->tx_listed) {
		socket->tx_lane = lane;
		socket->tx_listed = true;
		rs_lane_mark_dirty(lane, socket);
	}
}

static long queue_send(struct rs_socket *socket, const struct iovec *iov, int iovcnt, int flags)
{
	struct rs_lane *lane;
	struct iovec rest[IOV_MAX];
	size_t total, accepted = 0;
	bool overflow, nonblocking, pushed = false;
	long result = 0;
	int error;

	if (iovcnt < 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	finish_connecting(socket);
	total = iov_total(iov, iovcnt, &overflow);
	if (overflow)
		return -EINVAL;
	for (int i = 0; i < iovcnt; i++) {
		/* The kernel answers EFAULT for a buffer it cannot read; the
		 * copy into the queue would crash instead.  The common case, a
		 * buffer in the first pages, is caught here; see the README. */
		if (iov[i].iov_len && (uintptr_t)iov[i].iov_base < 65536)
			return -EFAULT;
	}
	lane = rs_lane_get();
	if (!lane || socket->kind != RS_SOCKET_CONNECTED || socket->has_timeouts ||
	    socket->kernel_path || (flags & (MSG_OOB | MSG_FASTOPEN)) || !total ||
	    ((flags & MSG_DONTWAIT) && !socket->event_mode) ||
	    (socket->nonblocking && !rs_config.event_sockets))
		return kernel_send(socket, iov, iovcnt, flags, NULL);
	nonblocking = socket->nonblocking || (flags & MSG_DONTWAIT);
	RS_COUNT_CALL(lane);

	rs_lane_enter(lane);
	pthread_mutex_lock(&socket->lock);
	error = take_send_error(socket, false);
	if (error || socket->write_shut || socket->broken) {
		pthread_mutex_unlock(&socket->lock);
		rs_lane_leave(lane);
		if (!error) {
			/* Shut for writing, or broken: the kernel answers
			 * (EPIPE and SIGPIPE, once the queue has left). */
			return kernel_send(socket, iov, iovcnt, flags, NULL);
		}
		return send_error(error, flags);
	}
	for (;;) {
		size_t room = rs_config.txq_bytes > socket->txq.bytes ?
			      rs_config.txq_bytes - socket->txq.bytes : 0;

		if (room) {
			int count = iov_skip(iov, iovcnt, accepted, rest);
			ssize_t appended = rs_send_queue_append(&socket->txq, rest, count, room);

			if (appended < 0) {
				/* No memory for the queue: what was accepted
				 * counts, the rest goes the kernel path. */
				pthread_mutex_unlock(&socket->lock);
				rs_lane_leave(lane);
				fall_back(socket, lane, "cannot allocate its send queue", (int)appended);
				if (accepted)
					return (long)accepted;
				return kernel_send(socket, iov, iovcnt, flags, NULL);
			}
			if (appended)
				list_queued_bytes(socket, lane);
			accepted += (size_t)appended;
		}
		if (accepted == total) {
			result = (long)accepted;
			break;
		}
		if (nonblocking && !pushed && !socket->tx_in_flight && socket->txq.bytes) {
			/* Full: before saying EAGAIN, hand what fits to the
			 * kernel, so that EAGAIN means what it means without
			 * the shim, the peer is not taking bytes. */
			pushed = true;
			rs_socket_push_to_kernel(socket);
			if (!socket->tx_error)
				continue;
		}
		if (nonblocking) {
			/* Full: EAGAIN, and the room that frees up later
			 * is an edge for epoll. */
			socket->tx_blocked = true;
			result = accepted ? (long)accepted : -EAGAIN;
			break;
		}
		/* The queue is full: wait, in the ring, for the peer. */
		RS_STAT_ADD(lane->stats, send_queue_waits, 1);
		push_with_lane(socket, lane);
		if (socket->tx_in_flight && socket->tx_lane != lane) {
			struct timespec pause = { .tv_sec = 0, .tv_nsec = 200000 };

			pthread_mutex_unlock(&socket->lock);
			error = REAL(ppoll)(NULL, 0, &pause, NULL) < 0 ? -errno : 0;
		} else {
			pthread_mutex_unlock(&socket->lock);
			error = rs_lane_wait_any(lane);
		}
		pthread_mutex_lock(&socket->lock);
		if (socket->tx_error) {
			/* Like the kernel: bytes already taken count. */
			result = accepted ? (long)accepted : send_error(take_send_error(socket, false), flags);
			break;
		}
		if (error == -EINTR && !(accepted == 0 && rs_restart_after_signal())) {
			result = accepted ? (long)accepted : -EINTR;
			break;
		}
	}
	pthread_mutex_unlock(&socket->lock);
	/* An EINTR or EAGAIN leaves them to leave later. */
	if (result > 0 && socket->write_through)
		rs_socket_send_queued(socket, lane, !nonblocking);
	if (lane->dirty_count >= rs_config.batch)
		rs_lane_submit(lane);
	rs_lane_leave(lane);
	return result;
}

static long send_buffer(int fd, const void *buffer, size_t length, int flags)
{
	struct rs_socket *socket = rs_fd_get(fd);
	struct iovec iov = { .iov_base = (void *)buffer, .iov_len = length };
	long result;

	if (likely(!socket))
		return rs_kernel_result(REAL(sendto)(fd, buffer, length, flags, NULL, 0));
	result = queue_send(socket, &iov, 1, flags);
	rs_socket_unref(socket);
	return result;
}

long rs_write(int fd, const void *buffer, size_t count)
{
	struct rs_socket *socket = rs_fd_get(fd);
	struct iovec iov = { .iov_base = (void *)buffer, .iov_len = count };
	long result;

	if (likely(!socket))
		return rs_kernel_result(REAL(write)(fd, buffer, count));
	result = queue_send(socket, &iov, 1, 0);
	rs_socket_unref(socket);
	return result;
}

long rs_writev(int fd, const struct iovec *iov, int iovcnt)
{
	struct rs_socket *socket = rs_fd_get(fd);
	long result;

	if (likely(!socket))
		return rs_kernel_result(REAL(writev)(fd, iov, iovcnt));
	result = queue_send(socket, iov, iovcnt, 0);
	rs_socket_unref(socket);
	return result;
}

long rs_send(int fd, const void *buffer, size_t length, int flags)
{
	return send_buffer(fd, buffer, length, flags);
}

long rs_sendto(int fd, const void *buffer, size_t length, int flags,
	       const struct sockaddr *address, socklen_t address_length)
{
	if (address)
		return rs_kernel_result(REAL(sendto)(fd, buffer, length, flags, address,
						  address_length));
	return send_buffer(fd, buffer, length, flags);
}

long rs_sendmsg(int fd, const struct msghdr *message, int flags)
{
	struct rs_socket *socket = rs_fd_get(fd);
	long result;

	if (likely(!socket))
		return rs_kernel_result(REAL(sendmsg)(fd, message, flags));
	if (message->msg_controllen || message->msg_name)
		result = kernel_send(socket, NULL, 0, flags, message);
	else
		result = queue_send(socket, message->msg_iov, (int)message->msg_iovlen, flags);
	rs_socket_unref(socket);
	return result;
}

/*
 * sendfile of a file into the socket's queue: the file's bytes are read
 * into it (one read, no sendfile of its own) and leave with the bytes queued
 * before them, in the lane's next send.  Up to the queue's room; a blocking
 * call that wants more, one bigger than SENDFILE_QUEUE_MAX, or an in_fd that
 * cannot be read at an offset (a pipe), takes the kernel's sendfile.
 * Returns -ENOTSUP for those.
 */
#ifndef SENDFILE_QUEUE_MAX
#define SENDFILE_QUEUE_MAX (16 * 1024)
#endif

static long queue_file(struct rs_socket *socket, struct rs_lane *lane, int in_fd, off_t *offset,
		       size_t count)
{
	bool nonblocking = socket->nonblocking;
	long result;
	size_t room;

	if (!count || count > SENDFILE_QUEUE_MAX || socket->kind != RS_SOCKET_CONNECTED ||
	    socket->kernel_path || socket->has_timeouts || (nonblocking && !rs_config.event_sockets))
		return -ENOTSUP;
	RS_COUNT_CALL(lane);
	rs_lane_enter(lane);
	pthread_mutex_lock(&socket->lock);
	room = rs_config.txq_bytes > socket->txq.bytes ? rs_config.txq_bytes - socket->txq.bytes : 0;
	if (socket->tx_error || socket->write_shut || socket->broken || (!nonblocking && count > room)) {
		result = -ENOTSUP;
	} else if (!room) {
		socket->tx_blocked = true;
		result = -EAGAIN;
	} else {
		result = rs_send_queue_append_file(&socket->txq, in_fd, offset,
						   count < room ? count : room);
		if (result == -ESPIPE || result == -EINVAL || result == -EISDIR)
			result = -ENOTSUP;
		if (result > 0)
			list_queued_bytes(socket, lane);
	}
	pthread_mutex_unlock(&socket->lock);
	if (result > 0 && socket->write_through)
		rs_socket_send_queued(socket, lane, !nonblocking);
	if (lane->dirty_count >= rs_config.batch)
		rs_lane_submit(lane);
	rs_lane_leave(lane);
	return result;
}

/*
 * Before the kernel sends on an accelerated socket itself (a sendfile or a
 * splice the lane does not carry), the bytes queued before go first.  A
 * non-blocking socket whose queue cannot leave at once answers EAGAIN, and
 * its readiness says so; a blocking one waits for them, as the write that
 * queued them would have.
 */
static int send_queued_first(struct rs_socket *socket)
{
	struct rs_lane *lane = rs_lane_get();
	int ret = 0;

	if (lane)
		rs_lane_enter(lane);
	ret = rs_socket_send_queued(socket, lane, !socket->nonblocking);
	if (ret == -EAGAIN) {
		pthread_mutex_lock(&socket->lock);
		socket->tx_blocked = true;
		pthread_mutex_unlock(&socket->lock);
	}
	if (lane)
		rs_lane_leave(lane);
	if (ret == 0) {
		settle_cork(socket);
		count_kernel_op();
	}
	return ret;
}

/* After such a kernel send: only the kernel knows when room comes back
 * after an EAGAIN, so a socket in event mode polls for it. */
static void kernel_send_done(struct rs_socket *socket, long result)
{
	struct rs_lane *lane = rs_lane_get();

	if (result != -EAGAIN || !socket->event_mode || !lane)
		return;
	rs_lane_enter(lane);
	pthread_mutex_lock(&socket->lock);
	/* Polled for on the lane of the socket's loop, which waits for it. */
	if (socket->rx_lane && socket->rx_lane != lane) {
		socket->kernel_full = true;
		if (!rs_lane_hand_off(socket->rx_lane, socket))
			rs_socket_want_writable(socket, lane);
	} else {
		rs_socket_want_writable(socket, lane);
	}
	pthread_mutex_unlock(&socket->lock);
	rs_lane_leave(lane);
}

static long splice_received(struct rs_socket *socket, int pipe_fd, size_t length,
			    unsigned int flags);

static long sendfile_common(int out_fd, int in_fd, off_t *offset, size_t count, bool large)
{
	struct rs_socket *socket = rs_fd_get(out_fd);
	struct rs_socket *source = rs_fd_get(in_fd);
	struct rs_lane *lane;
	long result;

	if (source && !socket && !offset && source->event_mode &&
	    source->kind == RS_SOCKET_CONNECTED) {
		struct stat status;
		int flags;

		/* Out of a socket received ahead on into a pipe, which the
		 * kernel's sendfile does as a splice (the pipe's O_NONBLOCK
		 * as SPLICE_F_NONBLOCK): its buffer answers. */
		if (fstat(out_fd, &status) == 0 && S_ISFIFO(status.st_mode) &&
		    (flags = REAL(fcntl)(out_fd, F_GETFL)) >= 0) {
			result = splice_received(source, out_fd, count,
						 (flags & O_NONBLOCK) ? SPLICE_F_NONBLOCK : 0);
			rs_socket_unref(source);
			return result;
		}
	}
	if (source)
		rs_socket_unref(source); /* anything else of it is the kernel's */
	if (socket)
		finish_connecting(socket);
	if (socket && !source && (lane = rs_lane_get())) {
		result = queue_file(socket, lane, in_fd, offset, count);
		if (result != -ENOTSUP) {
			rs_socket_unref(socket);
			return result;
		}
	}
	if (socket) {
		int ret = send_queued_first(socket);

		if (ret < 0) {
			rs_socket_unref(socket);
			return ret;
		}
	}
	if (large)
		result = rs_kernel_result(REAL(sendfile64)(out_fd, in_fd, (off64_t *)offset, count));
	else
		result = rs_kernel_result(REAL(sendfile)(out_fd, in_fd, offset, count));
	if (socket) {
		kernel_send_done(socket, result);
		rs_socket_unref(socket);
	}
	return result;
}

long rs_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	return sendfile_common(out_fd, in_fd, offset, count, false);
}

long rs_sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
	return sendfile_common(out_fd, in_fd, (off_t *)offset, count, true);
}

/* ---- splice ------------------------------------------------------------------ */

/* At most this much goes from the receive buffer into a pipe per call: a
 * pipe holds 64 KiB by default, and a short splice is the kernel's too. */
#define SPLICE_CHUNK 65536

static __thread char *splice_chunk;

/* Writes into a pipe what fits now: -EAGAIN when it is full, as the
 * kernel's splice finds it.  A pipe that refuses RWF_NOWAIT (EOPNOTSUPP, on
 * kernels older than this one) gets at most PIPE_BUF bytes once poll says a
 * page is free, which never blocks. */
static long write_to_pipe_now(int pipe_fd, const char *data, size_t length)
{
	struct iovec part = { .iov_base = (void *)data, .iov_len = length };
	struct pollfd room = { .fd = pipe_fd, .events = POLLOUT };
	long written = pwritev2(pipe_fd, &part, 1, -1, RWF_NOWAIT);
	int ready;

	if (written >= 0 || errno != EOPNOTSUPP)
		return rs_kernel_result(written);
	ready = REAL(poll)(&room, 1, 0);
	if (ready < 0)
		return -errno;
	if (!ready)
		return -EAGAIN;
	return rs_kernel_result(REAL(write)(pipe_fd, data, length < PIPE_BUF ? length : PIPE_BUF));
}

/* Waits until the pipe has room (or no reader, which the write then
 * reports), restarting after a signal as the kernel's splice would. */
static int wait_for_pipe_room(int pipe_fd)
{
	struct pollfd room = { .fd = pipe_fd, .events = POLLOUT };

	for (;;) {
		int error;

		if (REAL(poll)(&room, 1, -1) >= 0)
			return 0;
		error = errno;
		if (error != EINTR || !rs_restart_after_signal())
			return -error;
	}
}

/*
 * splice() from a socket in event mode: its next bytes are in the buffer the
 * lane received ahead into, not in the kernel's queue, so they go into the
 * pipe from there (one copy instead of none).  The kernel's rules are kept,
 * as measured on 6.18: the pipe side waits for room unless SPLICE_F_NONBLOCK
 * (the socket's O_NONBLOCK does not count there), and it looks at the pipe
 * before the socket; the socket side waits for data unless the socket is
 * non-blocking.
 */
static long splice_received(struct rs_socket *socket, int pipe_fd, size_t length,
			    unsigned int flags)
{
	bool pipe_nonblocking = flags & SPLICE_F_NONBLOCK;
	struct rs_lane *lane;
	long peeked, written;
	int ret;

	if (!length)
		return 0;
	if (!splice_chunk && !(splice_chunk = malloc(SPLICE_CHUNK)))
		return -ENOMEM;
	if (length > SPLICE_CHUNK)
		length = SPLICE_CHUNK;
	for (;;) {
		peeked = event_receive(socket, RECEIVE_BUFFER, splice_chunk, length, NULL,
				       MSG_PEEK | MSG_DONTWAIT);
		if (peeked == -EAGAIN && !(pipe_nonblocking && socket->nonblocking)) {
			struct pollfd room = { .fd = pipe_fd, .events = POLLOUT };
			int ready = REAL(poll)(&room, 1, 0);

			if (ready < 0)
				return -errno;
			if (!ready) {
				if (pipe_nonblocking)
					return -EAGAIN;
				if ((ret = wait_for_pipe_room(pipe_fd)) < 0)
					return ret;
			}
			if (!socket->nonblocking)
				peeked = event_receive(socket, RECEIVE_BUFFER, splice_chunk, length,
						       NULL, MSG_PEEK);
		}
		if (peeked <= 0)
			return peeked;
		written = write_to_pipe_now(pipe_fd, splice_chunk, (size_t)peeked);
		if (written != -EAGAIN || pipe_nonblocking)
			break;
		if ((ret = wait_for_pipe_room(pipe_fd)) < 0)
			return ret;
	}
	if (written <= 0)
		return written;
	lane = rs_lane_get();
	if (lane)
		rs_lane_enter(lane);
	pthread_mutex_lock(&socket->lock);
	consume_received(socket, lane, (size_t)written);
	pthread_mutex_unlock(&socket->lock);
	RS_STAT_ADD(lane ? lane->stats : rs_process_stats, bytes_spliced, (uint64_t)written);
	if (lane)
		rs_lane_leave(lane);
	return written;
}

/*
 * splice() has a pipe at one end; the other may be an accelerated socket.
 * Into the socket, the bytes queued before go first and the kernel splices
 * the rest; out of a socket in event mode, the receive buffer answers.
 */
long rs_splice(int in_fd, loff_t *in_offset, int out_fd, loff_t *out_offset, size_t length,
	       unsigned int flags)
{
	struct rs_socket *source = rs_fd_get(in_fd), *sink = rs_fd_get(out_fd);
	long result;

	if (source)
		finish_connecting(source);
	if (sink)
		finish_connecting(sink);
	if (source && !sink && !in_offset && source->event_mode &&
	    source->kind == RS_SOCKET_CONNECTED) {
		result = splice_received(source, out_fd, length, flags);
	} else if (sink && !source && (result = send_queued_first(sink)) < 0) {
		/* the queue could not leave first */
	} else {
		if (source && !sink)
			count_kernel_op();
		result = rs_kernel_result(REAL(splice)(in_fd, in_offset, out_fd, out_offset, length, flags));
		if (sink && !source)
			kernel_send_done(sink, result);
	}
	if (source)
		rs_socket_unref(source);
	if (sink)
		rs_socket_unref(sink);
	return result;
}

/* ---- connection setup ------------------------------------------------------- */

struct tcp_options {
	bool listening;
	bool nonblocking;
	bool has_timeouts;
	bool linger_abort;
};

/* Tells whether fd is a TCP socket, and the options that change how its
 * calls must be carried out.  A few system calls, once per socket. */
static bool classify_tcp(int fd, struct tcp_options *options)
{
	int domain = 0, type = 0, protocol = 0, listening = 0, flags;
	socklen_t length = sizeof(int);
	struct timeval receive_timeout = { 0 }, send_timeout = { 0 };
	struct linger linger = { 0 };

	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) ||
	    (domain != AF_INET && domain != AF_INET6))
		return false;
	length = sizeof(int);
	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &length) || type != SOCK_STREAM)
		return false;
	length = sizeof(int);
	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &length) || protocol != IPPROTO_TCP)
		return false;
	flags = REAL(fcntl)(fd, F_GETFL, 0);
	if (flags < 0)
		return false;
	length = sizeof(int);
	REAL(getsockopt)(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length);
	length = sizeof(receive_timeout);
	REAL(getsockopt)(fd, SOL_SOCKET, SO_RCVTIMEO, &receive_timeout, &length);
	length = sizeof(send_timeout);
	REAL(getsockopt)(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, &length);
	length = sizeof(linger);
	REAL(getsockopt)(fd, SOL_SOCKET, SO_LINGER, &linger, &length);
	options->listening = listening;
	options->nonblocking = flags & O_NONBLOCK;
	options->has_timeouts = receive_timeout.tv_sec || receive_timeout.tv_usec ||
				send_timeout.tv_sec || send_timeout.tv_usec;
	options->linger_abort = linger.l_onoff && !linger.l_linger;
	return true;
}

static struct rs_socket *socket_with_options(int fd, enum rs_socket_kind kind,
					     const struct tcp_options *options)
{
	struct rs_socket *socket = rs_socket_new(fd, kind);

	if (!socket)
		return NULL;
	socket->nonblocking = options->nonblocking;
	socket->has_timeouts = options->has_timeouts;
	socket->accept_inherits_timeouts = options->has_timeouts;
	socket->linger_abort = options->linger_abort;
	return socket;
}

/* Registers fd if it is a TCP socket; returns it with a reference. */
static struct rs_socket *register_tcp(int fd, enum rs_socket_kind kind)
{
	struct tcp_options options;
	struct rs_socket *socket;

	if (!rs_io_uring_available() || !classify_tcp(fd, &options))
		return NULL;
	socket = socket_with_options(fd, kind, &options);
	if (!socket)
		return NULL;
	rs_socket_ref(socket);
	rs_fd_install(fd, socket);
	return socket;
}

/*
 * At start: TCP sockets the process inherited (inetd's stdin and stdout,
 * systemd's listeners) are carried like the ones it accepts.  A socket
 * inherited under several numbers (inetd's 0 and 1) is one object under all
 * of them, working on a private duplicate, so its bytes keep one order.
 */
void rs_adopt_inherited(void)
{
	struct { int fd; dev_t device; ino_t inode; bool done; } found[64];
	int count = 0;
	struct dirent *entry;
	DIR *directory;

	if (!rs_io_uring_available())
		return;
	directory = opendir("/proc/self/fd");
	if (!directory)
		return;
	while ((entry = readdir(directory)) && count < 64) {
		struct stat status;
		int fd = atoi(entry->d_name);

		if (entry->d_name[0] < '0' || entry->d_name[0] > '9' || fd == dirfd(directory))
			continue;
		if (fstat(fd, &status) || !S_ISSOCK(status.st_mode))
			continue;
		found[count].fd = fd;
		found[count].device = status.st_dev;
		found[count].inode = status.st_ino;
		found[count].done = false;
		count++;
	}
	closedir(directory);
	for (int i = 0; i < count; i++) {
		struct tcp_options options;
		struct rs_socket *socket;
		int numbers = 0;

		if (found[i].done || !classify_tcp(found[i].fd, &options))
			continue;
		for (int j = i; j < count; j++)
			numbers += found[j].device == found[i].device && found[j].inode == found[i].inode;
		socket = socket_with_options(found[i].fd,
					     options.listening ? RS_SOCKET_LISTENER : RS_SOCKET_CONNECTED,
					     &options);
		if (!socket)
			return;
		if (numbers > 1) {
			int own = rs_fd_duplicate_private(found[i].fd);

			if (own < 0) {
				rs_socket_unref(socket);
				continue;
			}
			socket->fd = own;
			socket->app_fds = numbers;
		}
		for (int j = i; j < count; j++) {
			if (found[j].device != found[i].device || found[j].inode != found[i].inode)
				continue;
			/* As stdin, stdout or stderr it is stdio's too (printf,
			 * fgets), whose calls the shim never sees. */
			if (found[j].fd <= STDERR_FILENO)
				socket->write_through = true;
			found[j].done = true;
			if (j != i)
				rs_socket_ref(socket);
			rs_fd_install(found[j].fd, socket);
		}
		if (options.listening)
			rs_listener_after_listen(socket);
		if (!options.listening) {
			RS_STAT_ADD(rs_process_stats, sockets_open, 1);
			socket->opened_stats = rs_process_stats;
			RS_STAT_ADD(rs_process_stats, sockets_total, 1);
		}
		rs_debug("adopted inherited TCP %s at fd %d (%d numbers)",
			 options.listening ? "listener" : "socket", found[i].fd, numbers);
	}
}

/* A new fd number cannot carry state: drop what a close we did not see (a
 * raw system call) left behind. */
static void forget_stale(int fd)
{
	struct rs_socket *stale = rs_fd_remove(fd);

	if (stale)
		rs_socket_forget(stale);
}

long rs_socket(int domain, int type, int protocol)
{
	long fd = rs_kernel_result(REAL(socket)(domain, type, protocol));

	if (fd >= 0)
		forget_stale((int)fd);
	return fd;
}

long rs_bind(int fd, const struct sockaddr *address, socklen_t length)
{
	rs_listener_before_bind(fd, address, length);
	return rs_kernel_result(REAL(bind)(fd, address, length));
}

long rs_listen(int fd, int backlog)
{
	struct rs_socket *socket;

	if (REAL(listen)(fd, backlog) < 0)
		return -errno;
	socket = rs_fd_get(fd);
	if (!socket)
		socket = register_tcp(fd, RS_SOCKET_LISTENER);
	if (socket) {
		socket->kind = RS_SOCKET_LISTENER;
		rs_listener_after_listen(socket);
		rs_socket_unref(socket);
	}
	return 0;
}

long rs_connect(int fd, const struct sockaddr *address, socklen_t length)
{
	struct rs_socket *socket;

	rs_lane_flush_before_block();
	if (REAL(connect)(fd, address, length) < 0) {
		int error = errno;

		if (error == EISCONN && rs_config.client && (socket = rs_fd_get(fd))) {
			/* Asking again whether the connect completed. */
			finish_connecting(socket);
			rs_socket_unref(socket);
			errno = error;
			return -error;
		}
		if (error != EINPROGRESS || !rs_config.client || !rs_config.event_sockets)
			return -error;
		socket = rs_fd_get(fd);
		if (!socket) {
			/* Counted open once it is established and carried. */
			socket = register_tcp(fd, RS_SOCKET_CONNECTING);
			if (socket)
				socket->opened_stats = NULL;
		}
		if (socket)
			rs_socket_unref(socket);
		errno = error;
		return -error;
	}
	if (rs_config.client && (socket = rs_fd_get(fd))) {
		/* A second connect saying the first one completed. */
		finish_connecting(socket);
		rs_socket_unref(socket);
	} else if (rs_config.client) {
		socket = register_tcp(fd, RS_SOCKET_CONNECTED);
		if (socket) {
			struct rs_lane *lane = rs_lane_get();
			struct rs_lane_stats *stats = lane ? lane->stats : rs_process_stats;

			RS_STAT_ADD(stats, sockets_open, 1);
			RS_STAT_ADD(stats, sockets_total, 1);
			socket->opened_stats = stats;
			rs_socket_unref(socket);
		}
	}
	return 0;
}

/* The accepted socket inherits the listener's timeouts and SO_LINGER. */
static void register_accepted(int fd, struct rs_socket *listener, int flags,
			      struct rs_lane *lane)
{
	struct rs_lane_stats *stats = lane ? lane->stats : rs_process_stats;
	struct rs_socket *socket;

	socket = rs_socket_new(fd, RS_SOCKET_CONNECTED);
	if (!socket)
		return;
	socket->nonblocking = flags & SOCK_NONBLOCK;
	socket->has_timeouts = listener->accept_inherits_timeouts;
	socket->linger_abort = listener->linger_abort;
	socket->opened_stats = stats;
	rs_fd_install(fd, socket);
	RS_STAT_ADD(stats, sockets_open, 1);
	RS_STAT_ADD(stats, sockets_total, 1);
}

static long ring_accept(struct rs_socket *listener, struct rs_lane *lane,
			struct sockaddr *address, socklen_t *length, int flags)
{
	long result;

	RS_COUNT_CALL(lane);
	rs_lane_enter(lane);
	for (;;) {
		struct rs_op op = { .kind = RS_OP_WAIT };
		struct io_uring_sqe *sqe = rs_lane_sqe(lane);
		int ret;

		io_uring_prep_accept(sqe, listener->fd, address, length, flags);
		io_uring_sqe_set_data(sqe, &op);
		ret = rs_lane_wait(lane, &op);
		if (ret < 0) {
			rs_lane_cancel(lane, &op);
			if (op.result == -ECANCELED && ret == -EINTR && rs_restart_after_signal())
				continue;
			result = op.result == -ECANCELED ? ret : op.result;
			if (op.result == -ECANCELED && ret != -EINTR)
				result = -ENOTRECOVERABLE; /* the ring failed, not the accept */
			break;
		}
		result = op.result;
		break;
	}
	if (result >= 0)
		RS_STAT_ADD(lane->stats, accepts, 1);
	rs_lane_leave(lane);
	return result;
}

long rs_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags)
{
	struct rs_socket *listener = rs_fd_get(fd);
	struct rs_lane *lane = listener ? rs_lane_get() : NULL;
	long result = -ENOTSUP;

	if (listener && lane && rs_listener_steered(listener) && !(flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)))
		result = rs_listener_accept(listener, lane, address, length, flags);
	if (result != -ENOTSUP) {
		/* Steered: the lane's own listener or the application's. */
	} else if (listener && lane && listener->kind == RS_SOCKET_LISTENER && !listener->nonblocking &&
	    !listener->has_timeouts && !listener->kernel_path && !(flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))) {
		result = ring_accept(listener, lane, address, length, flags);
		if (result == -ENOTRECOVERABLE) {
			fall_back(listener, lane, "io_uring_enter failed", -EIO);
			result = rs_kernel_result(REAL(accept4)(fd, address, length, flags));
		}
	} else {
		rs_lane_flush_before_block();
		result = rs_kernel_result(REAL(accept4)(fd, address, length, flags));
		if (result >= 0 && !listener && rs_io_uring_available()) {
			/* A listener we did not see created (inherited,
			 * socket activation): learn it once. */
			listener = register_tcp(fd, RS_SOCKET_LISTENER);
			if (listener)
				lane = rs_lane_get();
		}
	}
	if (result >= 0 && listener && listener->kind == RS_SOCKET_LISTENER)
		register_accepted((int)result, listener, flags, lane);
	if (listener)
		rs_socket_unref(listener);
	return result;
}

long rs_accept(int fd, struct sockaddr *address, socklen_t *length)
{
	return rs_accept4(fd, address, length, 0);
}

long rs_shutdown(int fd, int how)
{
	struct rs_socket *socket = rs_fd_get(fd);
	struct rs_lane *lane;
	bool deferred = false;

	if (likely(!socket))
		return rs_kernel_result(REAL(shutdown)(fd, how));
	if (how != SHUT_RD) {
		lane = rs_lane_get();
		if (lane)
			rs_lane_enter(lane);
		pthread_mutex_lock(&socket->lock);
		if (socket->txq.bytes || socket->tx_in_flight) {
			/* The FIN must follow the queued bytes. */
			socket->write_shut = true;
			rs_socket_readiness_moved(socket);
			socket->shutdown_write_pending = true;
			deferred = true;
			if (lane)
				push_with_lane(socket, lane);
		}
		pthread_mutex_unlock(&socket->lock);
		if (lane) {
			if (deferred)
				rs_lane_submit(lane);
			rs_lane_leave(lane);
		}
	}
	if (!deferred && how != SHUT_RD) {
		pthread_mutex_lock(&socket->lock);
		socket->write_shut = true;
		rs_socket_readiness_moved(socket);
		pthread_mutex_unlock(&socket->lock);
	}
	rs_socket_unref(socket);
	if (deferred)
		return how == SHUT_RDWR ? rs_kernel_result(REAL(shutdown)(fd, SHUT_RD)) : 0;
	return rs_kernel_result(REAL(shutdown)(fd, how));
}

/* The connection's pending error as the shim took it (a reset met by a
 * receive ahead, a deferred send's failure), cleared as reading SO_ERROR
 * clears it; 0 if none.  Socket locked. */
static int take_pending_error(struct rs_socket *socket)
{
	int error = -socket->rx_error;

	if (error) {
		socket->rx_error = 0;
		return error;
	}
	return -take_send_error(socket, true);
}

/* SO_ERROR of an accelerated socket, value and length checked.  While the
 * lane receives ahead on it, any error of the connection ends that
 * receive, so the shim's own state is the answer, as of its last look
 * (nginx asks before every request on a kept-alive upstream connection).
 * Otherwise the kernel answers, and an error the shim took meanwhile is
 * the socket's pending error, reported and cleared as the kernel does. */
static long socket_error(struct rs_socket *socket, int fd, int *value, socklen_t *length)
{
	struct rs_lane *lane = rs_lane_get();
	bool received_ahead;
	int error;

	pthread_mutex_lock(&socket->lock);
	received_ahead = lane && socket->kind == RS_SOCKET_CONNECTED && !socket->kernel_path &&
			 socket->event_mode && socket->rx_in_flight && socket->fd >= 0;
	if (received_ahead) {
		*value = take_pending_error(socket);
		*length = sizeof(int);
	}
	pthread_mutex_unlock(&socket->lock);
	if (received_ahead) {
		RS_COUNT_CALL(lane);
		return 0;
	}
	if (REAL(getsockopt)(fd, SOL_SOCKET, SO_ERROR, value, length) < 0)
		return -errno;
	if (*value)
		return 0;
	finish_connecting(socket);
	pthread_mutex_lock(&socket->lock);
	error = take_pending_error(socket);
	if (error)
		*value = error;
	pthread_mutex_unlock(&socket->lock);
	return 0;
}

long rs_getsockopt(int fd, int level, int name, void *value, socklen_t *length)
{
	struct rs_socket *socket;

	if (level == SOL_SOCKET && name == SO_ERROR && !rs_bad_pointer(value) &&
	    !rs_bad_pointer(length) && *length >= (socklen_t)sizeof(int) &&
	    (socket = rs_fd_get(fd))) {
		long result = socket_error(socket, fd, value, length);

		rs_socket_unref(socket);
		return result;
	}
	if (level == IPPROTO_TCP && name == TCP_CORK && (socket = rs_fd_get(fd))) {
		settle_cork(socket);
		rs_socket_unref(socket);
	}
	return rs_kernel_result(REAL(getsockopt)(fd, level, name, value, length));
}

long rs_setsockopt(int fd, int level, int name, const void *value, socklen_t length)
{
	struct rs_socket *socket;

	if (level == IPPROTO_TCP && name == TCP_CORK && length >= (socklen_t)sizeof(int) &&
	    !rs_bad_pointer(value) && (socket = rs_fd_get(fd))) {
		struct rs_lane *lane = rs_lane_get();
		long result = -ENOTSUP;

		/* Carried only where the shim sends the socket's bytes; the
		 * kernel answers the rest, and every error. */
		if (lane && socket->kind == RS_SOCKET_CONNECTED && !socket->kernel_path &&
		    !socket->has_timeouts && socket->fd >= 0) {
			RS_COUNT_CALL(lane);
			result = rs_socket_set_cork(socket, *(const int *)value != 0);
		}
		rs_socket_unref(socket);
		if (result != -ENOTSUP)
			return result;
	}
	if (REAL(setsockopt)(fd, level, name, value, length) < 0)
		return -errno;
	if (level != SOL_SOCKET || (name != SO_RCVTIMEO && name != SO_SNDTIMEO && name != SO_LINGER))
		return 0;
	socket = rs_fd_get(fd);
	if (!socket)
		return 0;
	pthread_mutex_lock(&socket->lock);
	if (name == SO_LINGER && length >= (socklen_t)sizeof(struct linger)) {
		const struct linger *linger = value;

		socket->linger_abort = linger->l_onoff && !linger->l_linger;
	} else if (name != SO_LINGER && length >= (socklen_t)sizeof(struct timeval)) {
		const struct timeval *timeout = value;

		/* Once set, the kernel path carries the socket: io_uring
		 * operations do not time out. */
		if (timeout->tv_sec || timeout->tv_usec) {
			socket->has_timeouts = true;
			socket->accept_inherits_timeouts = true;
		}
	}
	pthread_mutex_unlock(&socket->lock);
	rs_socket_unref(socket);
	return 0;
}
