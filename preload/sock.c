// SPDX-License-Identifier: MIT
/*
 * Accelerated sockets: the state the shim keeps per TCP socket and the send
 * queue's life from write() to the kernel.
 *
 * A socket's queued bytes are sent by one send operation at a time, so they
 * leave in order; the lane that has them dirty or in flight is tx_lane.  A
 * send that fails leaves its error to be reported by the next call on the
 * socket, as the kernel reports a pending socket error.  When the
 * application closes a socket whose bytes have not all left, the socket is
 * kept open under a duplicate fd (close-on-exec, high number) until they
 * have, so the FIN still follows the data and the application's fd number is
 * free at once, as with the kernel.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ringsteer.h"

/* Socket objects are recycled, never freed: see fdtable.c. */
static pthread_mutex_t free_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rs_socket *free_list;

static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rs_socket *orphans;

struct rs_socket *rs_socket_new(int fd, enum rs_socket_kind kind)
{
	struct rs_socket *socket;

	pthread_mutex_lock(&free_lock);
	socket = free_list;
	if (socket)
		free_list = socket->next_orphan;
	pthread_mutex_unlock(&free_lock);
	if (!socket) {
		socket = calloc(1, sizeof(*socket));
		if (!socket)
			return NULL;
		pthread_mutex_init(&socket->lock, NULL);
	}
	pthread_mutex_lock(&socket->lock);
	socket->kind = kind;
	socket->nonblocking = false;
	socket->has_timeouts = false;
	socket->accept_inherits_timeouts = false;
	socket->linger_abort = false;
	socket->cork_known = false;
	socket->cork_wanted = false;
	socket->cork_kernel = false;
	socket->closed = false;
	socket->shutdown_write_pending = false;
	socket->write_shut = false;
	socket->broken = false;
	socket->kernel_path = false;
	socket->write_through = false;
	socket->handed_off = false;
	socket->app_fds = 0;
	socket->tx_error = 0;
	rs_send_queue_init(&socket->txq);
	socket->tx_lane = NULL;
	socket->tx_in_flight = false;
	socket->tx_listed = false;
	socket->tx_with_receive = false;
	socket->next_orphan = NULL;
	socket->tx_op.kind = RS_OP_SEND;
	socket->tx_op.socket = socket;
	socket->event_mode = false;
	socket->rx_in_flight = false;
	socket->rx_multishot = false;
	socket->rx_stop_wanted = false;
	socket->rx_wanted = false;
	socket->arming_listed = false;
	socket->arming_lane = NULL;
	socket->rx_eof = false;
	socket->rx_reset = false;
	socket->rx_error = 0;
	socket->rx_start = 0;
	socket->rx_end = 0;
	socket->rx_lane = NULL;
	socket->loop_lane = NULL;
	socket->rx_op.kind = RS_OP_RECEIVE;
	socket->rx_op.socket = socket;
	socket->tx_blocked = false;
	socket->kernel_full = false;
	socket->tx_awaiting_room = false;
	socket->writable_poll_in_flight = false;
	socket->writable_poll_wanted = false;
	socket->writable_op.kind = RS_OP_WRITABLE;
	socket->writable_op.socket = socket;
	socket->epoll_memberships = 0;
	socket->epoll_hints = NULL;
	socket->opened_stats = rs_process_stats;
	socket->steerable = false;
	socket->lane_listeners = NULL;
	socket->preopened = NULL;
	socket->fd = fd;
	pthread_mutex_unlock(&socket->lock);
	atomic_store_explicit(&socket->refs, 1, memory_order_release);
	return socket;
}

void rs_socket_ref(struct rs_socket *socket)
{
	atomic_fetch_add_explicit(&socket->refs, 1, memory_order_relaxed);
}

void rs_socket_unref(struct rs_socket *socket)
{
	if (atomic_fetch_sub_explicit(&socket->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_mutex_lock(&socket->lock);
	rs_send_queue_clear(&socket->txq);
	socket->fd = -1;
	/* The receive buffer stays with the recycled object: the next socket
	 * in event mode reuses it. */
	socket->rx_start = socket->rx_end = 0;
	pthread_mutex_unlock(&socket->lock);
	pthread_mutex_lock(&free_lock);
	socket->next_orphan = free_list;
	free_list = socket;
	pthread_mutex_unlock(&free_lock);
}

/* The fd number was closed behind our back and now names another file: the
 * state must not reach it, in particular no queued byte. */
void rs_socket_forget(struct rs_socket *socket)
{
	pthread_mutex_lock(&socket->lock);
	socket->fd = -1;
	socket->broken = true;
	rs_socket_readiness_moved(socket);
	if (!socket->tx_in_flight)
		rs_send_queue_clear(&socket->txq);
	pthread_mutex_unlock(&socket->lock);
	rs_socket_unref(socket);
}

/* ---- sending ---------------------------------------------------------------- */

static void list_for_arming(struct rs_socket *socket, struct rs_lane *lane);

void rs_socket_start_send(struct rs_socket *socket, struct rs_lane *lane)
{
	struct io_uring_sqe *sqe;
	int count, flags;

	if (socket->fd < 0)
		return;
	count = rs_send_queue_peek(&socket->txq, socket->tx_iov, RS_TX_IOV_MAX);
	if (!count)
		return;
	rs_socket_sync_cork(socket);
	/* MSG_NOSIGNAL: a deferred EPIPE raises SIGPIPE later, on the call
	 * that reports it, in the thread that makes that call.  On a ring
	 * with DEFER_TASKRUN, a send the kernel parks until room comes would
	 * progress only while the owner waits in the shim, which a thread
	 * blocked elsewhere never does: MSG_DONTWAIT makes it complete during
	 * the submission, with EAGAIN, and what is left stays in the queue,
	 * where the flusher can reach it. */
	flags = MSG_NOSIGNAL | (lane->deferred ? MSG_DONTWAIT : 0);
	sqe = rs_lane_sqe(lane);
	if (count == 1) {
		io_uring_prep_send(sqe, socket->fd, socket->tx_iov[0].iov_base,
				   socket->tx_iov[0].iov_len, flags);
	} else {
		memset(&socket->tx_msg, 0, sizeof(socket->tx_msg));
		socket->tx_msg.msg_iov = socket->tx_iov;
		socket->tx_msg.msg_iovlen = (size_t)count;
		io_uring_prep_sendmsg(sqe, socket->fd, &socket->tx_msg, flags);
	}
	io_uring_sqe_set_data(sqe, &socket->tx_op);
	socket->tx_in_flight = true;
	socket->tx_lane = lane;
	socket->tx_listed = false;
	lane->sends_in_flight++;
	lane->sends_prepared++;
	rs_socket_ref(socket);
}

bool rs_socket_start_send_with_receive(struct rs_socket *socket, struct rs_lane *lane)
{
	struct io_uring_sqe *sqe;
	int count;

	/* Both SQEs go in one submission.  The send may wait in the kernel
	 * for room, even on a deferred ring: its thread waits in the ring for
	 * both completions, and a signal that ends that wait cancels the
	 * receive and leaves the send to finish (ring_receive_once). */
	/* Nor when a shutdown waits for the queue to drain: the peer may
	 * answer only after that FIN, which goes once the send's completion
	 * is reaped, and a wait for both would never reap it. */
	if (socket->fd < 0 || socket->shutdown_write_pending ||
	    io_uring_sq_space_left(&lane->ring) < 2 ||
	    lane->in_flight + 3 >= lane->cq_entries)
		return false;
	count = rs_send_queue_peek(&socket->txq, socket->tx_iov, RS_TX_IOV_MAX);
	if (!count)
		return false;
	rs_socket_sync_cork(socket);
	sqe = rs_lane_sqe(lane);
	/* MSG_WAITALL: like a blocking write, all of it leaves. */
	memset(&socket->tx_msg, 0, sizeof(socket->tx_msg));
	socket->tx_msg.msg_iov = socket->tx_iov;
	socket->tx_msg.msg_iovlen = (size_t)count;
	io_uring_prep_sendmsg(sqe, socket->fd, &socket->tx_msg, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data(sqe, &socket->tx_op);
	socket->tx_in_flight = true;
	socket->tx_with_receive = true;
	socket->tx_lane = lane;
	socket->tx_listed = false;
	lane->sends_in_flight++;
	rs_socket_ref(socket);
	return true;
}

/* What happens once the queue is empty: a deferred shutdown or close. */
static void queue_drained(struct rs_socket *socket)
{
	if (socket->shutdown_write_pending) {
		socket->shutdown_write_pending = false;
		REAL(shutdown)(socket->fd, SHUT_WR);
	}
	if (socket->closed && socket->fd >= 0) {
		rs_fd_close_private(socket->fd);
		socket->fd = -1;
	}
}

static void record_send_error(struct rs_socket *socket, int error)
{
	if (!socket->tx_error)
		socket->tx_error = error;
	socket->broken = true;
	/* A failed connection is an event for both directions: an
	 * edge-triggered waiter for room must hear of it. */
	socket->tx_blocked = false;
	socket->tx_generation++;
	socket->rx_generation++;
	rs_socket_readiness_moved(socket);
	/* Nothing queued behind a failed send can reach the peer. */
	rs_send_queue_clear(&socket->txq);
	socket->shutdown_write_pending = false;
	if (socket->closed && socket->fd >= 0) {
		rs_fd_close_private(socket->fd);
		socket->fd = -1;
	}
}

void rs_socket_send_done(struct rs_socket *socket, struct rs_lane *lane, bool owner, int result)
{
	socket->tx_in_flight = false;
	socket->tx_with_receive = false;
	if (socket->fd < 0 && !socket->closed) {
		rs_send_queue_clear(&socket->txq); /* forgotten meanwhile */
		return;
	}
	if (result > 0) {
		rs_send_queue_consume(&socket->txq, (size_t)result);
		rs_socket_readiness_moved(socket);
		/* Counted whoever reaps it (the owner, or the flusher). */
		RS_STAT_ADD(lane->stats, bytes_sent, (uint64_t)result);
		if (socket->tx_blocked && rs_socket_has_room(socket)) {
			/* Room after EAGAIN: an edge, as the kernel's write space. */
			socket->tx_blocked = false;
			socket->tx_generation++;
			lane->readiness_changes++;
		}
	} else if (result < 0 && result != -ECANCELED && result != -EINTR && result != -EAGAIN) {
		record_send_error(socket, result);
		lane->readiness_changes++;
		return;
	}
	if (!socket->txq.bytes) {
		/* An uncork that came while the last bytes were in flight. */
		rs_socket_sync_cork(socket);
		queue_drained(socket);
		return;
	}
	if (result == -EAGAIN && owner) {
		/* The kernel's buffer is full (a MSG_DONTWAIT send): the next
		 * send waits for its room, polled for in the ring. */
		socket->tx_awaiting_room = true;
		if (!socket->writable_poll_in_flight) {
			socket->writable_poll_wanted = true;
			list_for_arming(socket, lane);
		}
	}
	/* More bytes (a short send, or appended while in flight): they go with
	 * the lane's next submission, or now through the kernel if the
	 * flusher is the one looking. */
	if (!owner) {
		rs_socket_push_to_kernel(socket);
		if (!socket->txq.bytes)
			return;
	}
	if (!socket->tx_listed || socket->tx_lane != lane) {
		socket->tx_lane = lane;
		socket->tx_listed = true;
		rs_lane_mark_dirty(lane, socket);
	}
}

int rs_socket_push_to_kernel(struct rs_socket *socket)
{
	if (socket->txq.bytes)
		rs_socket_sync_cork(socket);
	while (socket->txq.bytes && socket->fd >= 0) {
		struct iovec iov[RS_TX_IOV_MAX];
		struct msghdr message = { .msg_iov = iov };
		ssize_t sent;

		message.msg_iovlen = (size_t)rs_send_queue_peek(&socket->txq, iov, RS_TX_IOV_MAX);
		sent = REAL(sendmsg)(socket->fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (sent < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return -EAGAIN;
			record_send_error(socket, -errno);
			return -errno;
		}
		RS_STAT_ADD(rs_process_stats, bytes_sent, (uint64_t)sent);
		RS_STAT_ADD(rs_process_stats, flusher_sends, 1);
		rs_send_queue_consume(&socket->txq, (size_t)sent);
		rs_socket_readiness_moved(socket);
		if (socket->tx_blocked && rs_socket_has_room(socket)) {
			/* Room after EAGAIN, made by the flusher while the
			 * owner was away: the edge it will find on return. */
			socket->tx_blocked = false;
			socket->tx_generation++;
		}
	}
	if (!socket->txq.bytes)
		queue_drained(socket);
	return 0;
}

/* ---- TCP_CORK --------------------------------------------------------------- */

/* nginx (tcp_nopush) corks a connection before each response and uncorks it
 * after: two system calls per request, around bytes the shim queues and
 * sends together anyway.  The shim keeps the application's setting and
 * tells the kernel only what differs when queued bytes leave, so a cork and
 * an uncork between two submissions cost nothing.  An uncork with nothing
 * queued goes at once: the kernel may be holding bytes for it. */
void rs_socket_sync_cork(struct rs_socket *socket)
{
	int saved_errno, value;

	/* The common case, on every send: nothing to tell. */
	if (likely(socket->cork_wanted == socket->cork_kernel) || !socket->cork_known ||
	    socket->fd < 0)
		return;
	saved_errno = errno;
	value = socket->cork_wanted;
	/* It cannot fail on a TCP socket with a valid int; if it did, the
	 * cork would only change how bytes are split into segments. */
	(void)REAL(setsockopt)(socket->fd, IPPROTO_TCP, TCP_CORK, &value, sizeof(value));
	socket->cork_kernel = socket->cork_wanted;
	errno = saved_errno;
}

long rs_socket_set_cork(struct rs_socket *socket, bool on)
{
	long result = 0;

	pthread_mutex_lock(&socket->lock);
	if (!socket->cork_known) {
		/* The kernel's state is not ours to guess (a listener's cork
		 * is inherited): the first call is real. */
		int value = on;

		if (REAL(setsockopt)(socket->fd, IPPROTO_TCP, TCP_CORK, &value, sizeof(value)) < 0) {
			result = -errno;
		} else {
			socket->cork_known = true;
			socket->cork_wanted = socket->cork_kernel = on;
		}
	} else {
		socket->cork_wanted = on;
		if (!on && !socket->txq.bytes && !socket->tx_in_flight)
			rs_socket_sync_cork(socket);
	}
	pthread_mutex_unlock(&socket->lock);
	return result;
}

/* ---- receiving ahead (event mode) ---------------------------------------- */

int rs_socket_enter_event_mode(struct rs_socket *socket)
{
	if (socket->event_mode)
		return 0;
	if (!socket->rx_buffer || socket->rx_capacity != rs_config.rxq_bytes) {
		char *buffer = malloc(rs_config.rxq_bytes);

		if (!buffer)
			return -ENOMEM;
		free(socket->rx_buffer);
		socket->rx_buffer = buffer;
		socket->rx_capacity = rs_config.rxq_bytes;
	}
	socket->rx_start = socket->rx_end = 0;
	socket->event_mode = true;
	return 0;
}

static void list_for_arming(struct rs_socket *socket, struct rs_lane *lane)
{
	if (socket->arming_listed)
		return; /* the lane that listed it arms it */
	socket->arming_listed = true;
	socket->arming_lane = lane;
	rs_lane_mark_arming(lane, socket);
}

void rs_socket_want_receive(struct rs_socket *socket, struct rs_lane *lane)
{
	if (!socket->event_mode || socket->rx_in_flight ||
	    socket->rx_end - socket->rx_start >= rs_config.rxq_bytes ||
	    socket->rx_eof || socket->rx_reset || socket->rx_error || socket->fd < 0 ||
	    socket->closed || socket->kernel_path || !lane)
		return;
	socket->rx_wanted = true;
	/* Armed where its loop waits, which a thread that never enters its
	 * own ring (an acceptor in accept4) would otherwise hold up. */
	if (socket->loop_lane && socket->loop_lane != lane &&
	    rs_lane_hand_off(socket->loop_lane, socket))
		return;
	list_for_arming(socket, lane);
}

/* Lists a wanted receive on lane, taking it from another lane's arming
 * list, whose rs_socket_arm then passes it by (arming_lane is not its own);
 * lane's owner or the flusher holds it. */
static void list_here(struct rs_socket *socket, struct rs_lane *lane)
{
	if (socket->arming_listed && socket->arming_lane != lane)
		socket->arming_listed = false;
	list_for_arming(socket, lane);
}

void rs_socket_follow_loop(struct rs_socket *socket, struct rs_lane *lane)
{
	if (!lane)
		return;
	socket->loop_lane = lane;
	if (socket->rx_in_flight) {
		/* Only the ring it was armed on can end it: that lane is asked to. */
		if (socket->rx_multishot && socket->rx_lane && socket->rx_lane != lane)
			rs_lane_hand_off(socket->rx_lane, socket);
	} else if (socket->rx_wanted && socket->arming_listed && socket->arming_lane != lane) {
		if (lane == rs_lane_current())
			list_here(socket, lane);
		else
			rs_lane_hand_off(lane, socket);
	}
}

void rs_socket_handed_over(struct rs_socket *socket, struct rs_lane *lane)
{
	if (socket->loop_lane && socket->loop_lane != lane && socket->rx_in_flight &&
	    socket->rx_multishot && socket->rx_lane == lane) {
		/* Its last completion asks for the next receive, which is
		 * then armed on the loop's lane (rs_socket_arm). */
		socket->rx_stop_wanted = true;
		list_for_arming(socket, lane);
	} else if (socket->rx_wanted && !socket->rx_in_flight) {
		list_here(socket, lane);
	}
}

void rs_socket_want_writable(struct rs_socket *socket, struct rs_lane *lane)
{
	socket->kernel_full = true;
	if (socket->writable_poll_in_flight || !lane || socket->fd < 0)
		return;
	socket->writable_poll_wanted = true;
	list_for_arming(socket, lane);
}

void rs_socket_arm(struct rs_socket *socket, struct rs_lane *lane)
{
	struct io_uring_sqe *sqe;
	bool arm_here = true;

	if (socket->arming_lane != lane)
		return;
	socket->arming_listed = false;
	socket->arming_lane = NULL;
	if (socket->fd < 0 || socket->closed)
		return;
	if (socket->rx_stop_wanted) {
		socket->rx_stop_wanted = false;
		if (socket->rx_in_flight && socket->rx_multishot) {
			sqe = rs_lane_sqe(lane);
			io_uring_prep_cancel(sqe, &socket->rx_op, 0);
			io_uring_sqe_set_data(sqe, NULL);
		}
	}
	/* Another thread's loop waits for it: received there, its
	 * completions wake that loop with no thread in between. */
	if (socket->rx_wanted && !socket->rx_in_flight && socket->loop_lane &&
	    socket->loop_lane != lane && rs_lane_hand_off(socket->loop_lane, socket))
		arm_here = false;
	if (arm_here && socket->rx_wanted && !socket->rx_in_flight &&
	    socket->rx_end - socket->rx_start < rs_config.rxq_bytes &&
	    !socket->rx_eof && !socket->rx_reset && !socket->rx_error && rs_lane_receive_buffers(lane)) {
		/* Multishot: one receive for as long as the buffer has room,
		 * into the lane's provided buffers, copied from there. */
		socket->rx_wanted = false;
		sqe = rs_lane_sqe(lane);
		io_uring_prep_recv_multishot(sqe, socket->fd, NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = 0;
		io_uring_sqe_set_data(sqe, &socket->rx_op);
		socket->rx_in_flight = true;
		socket->rx_multishot = true;
		socket->rx_lane = lane;
		lane->receives_in_flight++;
		rs_socket_ref(socket);
	}
	if (arm_here && socket->rx_wanted && !socket->rx_in_flight &&
	    socket->rx_end - socket->rx_start < socket->rx_capacity &&
	    !socket->rx_eof && !socket->rx_reset && !socket->rx_error) {
		size_t unread = socket->rx_end - socket->rx_start;

		socket->rx_wanted = false;
		socket->rx_multishot = false;
		/* Unread bytes move to the front, so the receive gets all the
		 * room; nothing writes into the buffer meanwhile. */
		if (socket->rx_start && unread)
			memmove(socket->rx_buffer, socket->rx_buffer + socket->rx_start, unread);
		socket->rx_start = 0;
		socket->rx_end = unread;
		sqe = rs_lane_sqe(lane);
		io_uring_prep_recv(sqe, socket->fd, socket->rx_buffer + unread,
				   socket->rx_capacity - unread, 0);
		io_uring_sqe_set_data(sqe, &socket->rx_op);
		socket->rx_in_flight = true;
		socket->rx_lane = lane;
		lane->receives_in_flight++;
		rs_socket_ref(socket);
	}
	if (socket->writable_poll_wanted && !socket->writable_poll_in_flight) {
		socket->writable_poll_wanted = false;
		sqe = rs_lane_sqe(lane);
		io_uring_prep_poll_add(sqe, socket->fd, POLLOUT);
		io_uring_sqe_set_data(sqe, &socket->writable_op);
		socket->writable_poll_in_flight = true;
		rs_socket_ref(socket);
	}
}

/* Appends bytes a multishot receive put in a provided buffer.  The buffer
 * may hold more than its cap for a moment (what came before the receive
 * could be stopped): it grows rather than lose a byte. */
static bool append_received(struct rs_socket *socket, const char *data, size_t length)
{
	size_t unread = socket->rx_end - socket->rx_start;

	if (socket->rx_start && socket->rx_end + length > socket->rx_capacity) {
		memmove(socket->rx_buffer, socket->rx_buffer + socket->rx_start, unread);
		socket->rx_start = 0;
		socket->rx_end = unread;
	}
	if (socket->rx_end + length > socket->rx_capacity) {
		size_t capacity = socket->rx_end + length;
		char *grown = realloc(socket->rx_buffer, capacity);

		if (!grown)
			return false;
		socket->rx_buffer = grown;
		socket->rx_capacity = capacity;
	}
	memcpy(socket->rx_buffer + socket->rx_end, data, length);
	socket->rx_end += length;
	return true;
}

void rs_socket_receive_done(struct rs_socket *socket, struct rs_lane *lane, int result,
			    unsigned cqe_flags)
{
	bool more = cqe_flags & IORING_CQE_F_MORE;

	if (!more) {
		socket->rx_in_flight = false;
		if (lane->receives_in_flight)
			lane->receives_in_flight--;
	}
	if (cqe_flags & IORING_CQE_F_BUFFER) {
		unsigned id = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
		bool kept = true;

		if (result > 0 && socket->fd >= 0 && !socket->closed)
			kept = append_received(socket, rs_lane_receive_buffer(lane, id), (size_t)result);
		rs_lane_return_receive_buffer(lane, id);
		if (!kept)
			result = -ENOMEM;
	}
	if (socket->fd < 0 || socket->closed)
		return; /* closed meanwhile: nobody reads it */
	if (result > 0) {
		/* Appended behind what is unread (the reads meanwhile only
		 * moved rx_start); receiving goes on while there is room, so
		 * every arrival is an edge, as with the kernel. */
		if (!socket->rx_multishot)
			socket->rx_end += (size_t)result;
		RS_STAT_ADD(lane->stats, bytes_received, (uint64_t)result);
		if (more && socket->rx_end - socket->rx_start >= rs_config.rxq_bytes) {
			/* Full: stop receiving, so flow control reaches the
			 * peer; armed again once the application reads. */
			socket->rx_stop_wanted = true;
			list_for_arming(socket, lane);
		} else if (!more) {
			rs_socket_want_receive(socket, lane);
		}
	} else if (result == -ENOBUFS) {
		/* The lane's buffers ran out for a moment: they come back as
		 * soon as their completions are copied. */
		rs_socket_want_receive(socket, lane);
		return;
	} else if (result == 0) {
		socket->rx_eof = true;
	} else if (result == -ECANCELED || result == -EINTR || result == -EAGAIN) {
		/* Not a property of the connection: receive again. */
		rs_socket_want_receive(socket, lane);
		return;
	} else {
		socket->rx_error = result;
		socket->rx_reset = true;
		socket->broken = true;
	}
	socket->rx_generation++;
	rs_socket_readiness_moved(socket);
	lane->readiness_changes++;
}

void rs_socket_writable_done(struct rs_socket *socket, struct rs_lane *lane, int result)
{
	socket->writable_poll_in_flight = false;
	socket->kernel_full = false;
	/* Still listed on the lane (rs_lane_prepare_sends kept it): its next
	 * submission sends. */
	socket->tx_awaiting_room = false;
	socket->tx_generation++;
	rs_socket_readiness_moved(socket);
	lane->readiness_changes++;
	(void)result;
}

uint32_t rs_socket_readiness(struct rs_socket *socket)
{
	uint32_t mask = 0;

	if (socket->rx_start < socket->rx_end || socket->rx_eof || socket->rx_reset)
		mask |= EPOLLIN | EPOLLRDNORM;
	if (socket->rx_eof || socket->rx_reset)
		mask |= EPOLLRDHUP;
	if (socket->rx_reset || (socket->rx_eof && socket->write_shut))
		mask |= EPOLLHUP;
	if (socket->rx_error || (socket->tx_error && socket->tx_error != -EPIPE))
		mask |= EPOLLERR;
	if (socket->write_shut || socket->rx_reset || socket->broken ||
	    (rs_socket_has_room(socket) && !socket->kernel_full))
		mask |= EPOLLOUT | EPOLLWRNORM;
	return mask;
}

size_t rs_socket_buffered(const struct rs_socket *socket)
{
	return socket->event_mode ? socket->rx_end - socket->rx_start : 0;
}

/* A receive ahead holds the file open, so the FIN would wait for it: a
 * shutdown for reading completes it at once (it sends nothing to the peer,
 * and the application is closing the socket anyway).  A writable poll is
 * cancelled when the closing thread owns its lane. */
void rs_socket_stop_receiving(struct rs_socket *socket)
{
	socket->rx_wanted = false;
	if (socket->rx_in_flight && socket->fd >= 0)
		REAL(shutdown)(socket->fd, SHUT_RD);
}

/* ---- orphans: closed by the application, bytes still queued -------------- */

/* Keeps the socket open under another number; socket locked.  Returns false
 * if no number is left, and the caller must then finish the queue itself. */
static bool adopt_orphan(struct rs_socket *socket)
{
	int duplicate = rs_fd_duplicate_private(socket->fd);

	if (duplicate < 0)
		return false;
	rs_fd_close_private(socket->fd);
	socket->fd = duplicate;
	socket->closed = true;
	rs_socket_ref(socket);
	pthread_mutex_lock(&orphan_lock);
	socket->next_orphan = orphans;
	orphans = socket;
	pthread_mutex_unlock(&orphan_lock);
	rs_flusher_kick();
	return true;
}

/* Called by the flusher: pushes what orphans still hold; returns true while
 * some are left. */
bool rs_orphans_service(void)
{
	struct rs_socket **link, *socket;
	bool left = false;

	pthread_mutex_lock(&orphan_lock);
	link = &orphans;
	while ((socket = *link)) {
		bool finished;

		pthread_mutex_lock(&socket->lock);
		if (!socket->tx_in_flight && socket->fd >= 0)
			rs_socket_push_to_kernel(socket);
		finished = socket->fd < 0;
		pthread_mutex_unlock(&socket->lock);
		if (finished) {
			*link = socket->next_orphan;
			rs_socket_unref(socket);
		} else {
			left = true;
			link = &socket->next_orphan;
		}
	}
	pthread_mutex_unlock(&orphan_lock);
	return left;
}

/* The child of a fork must not keep the parent's orphans open. */
static void orphans_atfork_child(void)
{
	struct rs_socket *socket = orphans;

	while (socket) {
		if (socket->fd >= 0)
			rs_fd_close_private(socket->fd);
		socket = socket->next_orphan;
	}
	orphans = NULL;
	pthread_mutex_init(&orphan_lock, NULL);
}

/* ---- close -------------------------------------------------------------------- */

/* Closes an accelerated socket the application closed.  Its queued bytes
 * still leave before the FIN; the call does not wait for them. */
int rs_socket_close(struct rs_socket *socket, struct rs_lane *lane)
{
	int fd = socket->fd;
	int ret = 0;

	bool settle_now;

	if (lane)
		rs_lane_enter(lane);
	pthread_mutex_lock(&socket->lock);
	/* An operation in flight holds the file, so the FIN waits for its
	 * end; on a deferred ring that end runs only when we ask. */
	settle_now = lane && lane->deferred &&
		     ((socket->rx_in_flight && socket->rx_lane == lane) ||
		      socket->writable_poll_in_flight);
	rs_socket_stop_receiving(socket);
	if (socket->writable_poll_in_flight && lane) {
		struct io_uring_sqe *cancel = rs_lane_sqe(lane);

		io_uring_prep_cancel(cancel, &socket->writable_op, 0);
		io_uring_sqe_set_data(cancel, NULL);
	}
	if (socket->linger_abort) {
		/* SO_LINGER {1, 0}: the kernel discards unsent data. */
		if (!socket->tx_in_flight)
			rs_send_queue_clear(&socket->txq);
	}
	if (socket->tx_in_flight && lane && socket->tx_lane == lane) {
		/* Settle our own send so what is left is known. */
		pthread_mutex_unlock(&socket->lock);
		rs_lane_cancel_send(lane, socket);
		pthread_mutex_lock(&socket->lock);
	}
	if (!socket->tx_in_flight && socket->txq.bytes && !socket->linger_abort)
		rs_socket_push_to_kernel(socket);
	if (socket->linger_abort && !socket->tx_in_flight)
		rs_send_queue_clear(&socket->txq);
	if (socket->txq.bytes || socket->tx_in_flight) {
		if (!adopt_orphan(socket)) {
			/* No fd left to park it under: block until it leaves,
			 * as close with SO_LINGER would. */
			rs_warn("fd %d: no spare fd to finish its queued bytes in the background; close waits",
				fd);
			while (socket->txq.bytes && socket->fd >= 0 && !socket->tx_in_flight) {
				struct pollfd wait = { .fd = socket->fd, .events = POLLOUT };

				if (rs_socket_push_to_kernel(socket) == -EAGAIN)
					REAL(poll)(&wait, 1, 100);
			}
			if (socket->fd >= 0 && rs_fd_close_private(socket->fd) < 0)
				ret = -errno;
			socket->fd = -1;
		}
	} else {
		socket->fd = -1;
		if (rs_fd_close_private(fd) < 0)
			ret = -errno;
	}
	pthread_mutex_unlock(&socket->lock);
	if (lane) {
		if (settle_now)
			rs_lane_run_task_work(lane);
		rs_lane_leave(lane);
	}
	if (socket->opened_stats)
		RS_STAT_SUB(socket->opened_stats, sockets_open, 1);
	return ret;
}

int rs_socket_send_queued(struct rs_socket *socket, struct rs_lane *lane, bool wait)
{
	int ret = 0;

	if (wait)
		return rs_socket_drain(socket, lane);
	pthread_mutex_lock(&socket->lock);
	if (!socket->tx_in_flight && socket->txq.bytes)
		rs_socket_push_to_kernel(socket);
	if (socket->txq.bytes || socket->tx_in_flight)
		ret = -EAGAIN;
	pthread_mutex_unlock(&socket->lock);
	return ret;
}

/* Makes every queued byte leave before a kernel call that must come after
 * them (sendfile, out-of-band data, a switch to the kernel path).  Blocking,
 * like the write that queued them; -EINTR if a signal interrupts. */
int rs_socket_drain(struct rs_socket *socket, struct rs_lane *lane)
{
	int ret = 0;

	pthread_mutex_lock(&socket->lock);
	while (socket->txq.bytes && !socket->tx_error) {
		if (!socket->tx_in_flight && lane) {
			/* Awaiting room, its writable poll is what we wait for. */
			if (!socket->tx_awaiting_room)
				rs_socket_start_send(socket, lane);
		} else if (!socket->tx_in_flight) {
			if (rs_socket_push_to_kernel(socket) == -EAGAIN) {
				struct pollfd wait = { .fd = socket->fd, .events = POLLOUT };

				pthread_mutex_unlock(&socket->lock);
				if (REAL(poll)(&wait, 1, -1) < 0 && errno == EINTR)
					return -EINTR;
				pthread_mutex_lock(&socket->lock);
			}
			continue;
		}
		pthread_mutex_unlock(&socket->lock);
		if (lane && socket->tx_lane == lane) {
			ret = rs_lane_wait_any(lane);
		} else {
			/* In flight on another thread's lane: it completes
			 * there (or the flusher reaps it). */
			struct timespec pause = { .tv_sec = 0, .tv_nsec = 200000 };

			ret = REAL(ppoll)(NULL, 0, &pause, NULL) < 0 ? -errno : 0;
		}
		if (ret == -EINTR)
			return -EINTR;
		pthread_mutex_lock(&socket->lock);
	}
	pthread_mutex_unlock(&socket->lock);
	return 0;
}

/*
 * stdio writes through glibc's own write, which no interposer sees: bytes a
 * write queued before a printf would leave after it.  A socket stdio may
 * write (fdopen'd, or inherited as stdin, stdout or stderr) has each
 * write's bytes leave before the write returns, and what is queued now
 * leaves at once.
 */
void rs_socket_write_through(struct rs_socket *socket)
{
	struct rs_lane *lane = rs_lane_get();

	pthread_mutex_lock(&socket->lock);
	socket->write_through = true;
	if (socket->event_mode && socket->rx_end > socket->rx_start)
		rs_warn("fd %d: stdio on a socket with %zu bytes received ahead: a stdio read will not see them",
			socket->fd, socket->rx_end - socket->rx_start);
	pthread_mutex_unlock(&socket->lock);
	if (lane)
		rs_lane_enter(lane);
	rs_socket_send_queued(socket, lane, !socket->nonblocking);
	if (lane)
		rs_lane_leave(lane);
}

/* ---- fork and exit -------------------------------------------------------- */

void rs_sockets_atfork_child(void)
{
	int size = rs_fdtable_size();

	orphans_atfork_child();
	rs_send_queue_atfork_child();
	pthread_mutex_init(&free_lock, NULL);
	for (int fd = 0; fd < size; fd++) {
		struct rs_socket *socket = rs_fd_get(fd);

		if (!socket)
			continue;
		/* The queue is the parent's to send; the lanes it pointed to
		 * do not exist here. */
		pthread_mutex_init(&socket->lock, NULL);
		rs_send_queue_clear(&socket->txq);
		socket->tx_in_flight = false;
		socket->tx_lane = NULL;
		socket->tx_listed = false;
		socket->tx_awaiting_room = false;
		socket->shutdown_write_pending = false;
		/* The parent's receive ahead and its bytes stay the parent's. */
		socket->rx_in_flight = false;
		socket->rx_multishot = false;
		socket->rx_stop_wanted = false;
		socket->rx_wanted = false;
		socket->arming_listed = false;
		socket->arming_lane = NULL;
		socket->rx_lane = NULL;
		socket->loop_lane = NULL;
		socket->handed_off = false;
		socket->rx_start = socket->rx_end = 0;
		socket->writable_poll_in_flight = false;
		socket->writable_poll_wanted = false;
		socket->opened_stats = NULL; /* the child never counted it open */
		rs_socket_readiness_moved(socket); /* the child's state is new */
		if (socket->kind == RS_SOCKET_LISTENER)
			rs_listener_atfork_child(socket);
		atomic_store(&socket->refs, 1);
	}
}

/* _exit, perhaps from a signal handler: the queue's chunks are advanced,
 * not freed, since the allocator's lock may be held by the code a signal
 * interrupted. */
static void push_without_freeing(struct rs_socket *socket, uint64_t deadline)
{
	struct rs_chunk *chunk = socket->txq.head;

	while (chunk && socket->fd >= 0 && rs_now_ns() < deadline) {
		struct pollfd wait = { .fd = socket->fd, .events = POLLOUT };
		ssize_t sent;

		if (chunk->start == chunk->end) {
			chunk = chunk->next;
			continue;
		}
		sent = REAL(send)(socket->fd, chunk->data + chunk->start, chunk->end - chunk->start,
				  MSG_NOSIGNAL | MSG_DONTWAIT);
		if (sent > 0) {
			chunk->start += (size_t)sent;
			socket->txq.bytes -= (size_t)sent;
			RS_STAT_ADD(rs_process_stats, bytes_sent, (uint64_t)sent);
			RS_STAT_ADD(rs_process_stats, flusher_sends, 1);
		} else if (sent < 0 && errno == EAGAIN) {
			REAL(poll)(&wait, 1, 10);
		} else if (!(sent < 0 && errno == EINTR)) {
			break;
		}
	}
}

/* Process exit, exec or _exit: what is queued still goes to the kernel,
 * which sends it after we are gone; bounded so a peer that never reads
 * cannot hold the end for long.  Only sockets with no send in flight, and
 * only their locks that are free: the owner of one that is not is stopped
 * in the middle of the shim. */
void rs_sockets_exit(enum rs_process_end end)
{
	int size = rs_fdtable_size();
	uint64_t deadline = rs_now_ns() + 1000000000ull;

	for (int fd = 0; fd < size; fd++) {
		struct rs_socket *socket = rs_fd_get(fd);

		if (!socket)
			continue;
		if (pthread_mutex_trylock(&socket->lock) == 0) {
			if (end == RS_END_EXEC && socket->rx_end > socket->rx_start)
				rs_warn("fd %d: exec loses the %zu bytes received ahead and not read yet",
					fd, socket->rx_end - socket->rx_start);
			if (end == RS_END_EXIT_NOW && !socket->tx_in_flight)
				push_without_freeing(socket, deadline);
			while (end != RS_END_EXIT_NOW && !socket->tx_in_flight && socket->txq.bytes &&
			       rs_now_ns() < deadline) {
				struct pollfd wait = { .fd = socket->fd, .events = POLLOUT };

				if (rs_socket_push_to_kernel(socket) == -EAGAIN)
					REAL(poll)(&wait, 1, 10);
			}
			pthread_mutex_unlock(&socket->lock);
		}
		/* The table holds a reference: this one is never the last. */
		rs_socket_unref(socket);
	}
	if (end != RS_END_EXIT_NOW)
		rs_orphans_service();
}
