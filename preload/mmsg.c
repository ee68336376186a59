// SPDX-License-Identifier: MIT
/*
 * recvmmsg and sendmmsg.  On a socket the shim carries, the kernel's own
 * call would miss what the lane received ahead and pass what it queued, so
 * each entry is one recvmsg or sendmsg of the shim's, in the order and with
 * the stops of the kernel's loop (net/socket.c, do_recvmmsg and
 * __sys_sendmmsg):
 *
 * - at most UIO_MAXIOV entries; MSG_WAITFORONE makes every entry after the
 *   first non-blocking; the timeout is looked at only between entries, as
 *   the kernel does, and what is left of it written back;
 * - a receive that fails after some entries returns their count, and its
 *   error (other than EAGAIN) is reported by the socket's next call, as the
 *   kernel's sk_err would be; a send that fails after some is dropped;
 * - a send that leaves bytes of its entry unsent ends the batch.
 *
 * Other descriptors go to the kernel's call unchanged.
 */
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "ringsteer.h"

/* The kernel's own flag (include/linux/socket.h), refused from user space
 * with EINVAL. */
#define KERNEL_MSG_CMSG_COMPAT 0x80000000u

static void report_later(int fd, long error)
{
	struct rs_socket *socket = rs_fd_get(fd);

	if (!socket)
		return;
	pthread_mutex_lock(&socket->lock);
	if (!socket->tx_error)
		socket->tx_error = (int)error;
	pthread_mutex_unlock(&socket->lock);
	rs_socket_unref(socket);
}

static int64_t timespec_ns(const struct timespec *time)
{
	return (int64_t)time->tv_sec * 1000000000ll + time->tv_nsec;
}

long rs_recvmmsg(int fd, struct mmsghdr *vector, unsigned int length, int flags,
		 struct timespec *timeout)
{
	struct rs_socket *socket = rs_fd_get(fd);
	int64_t deadline_ns = 0;
	unsigned int received = 0;
	long result = 0;

	if (likely(!socket)) {
		rs_lane_flush_before_block();
		return rs_kernel_result(REAL(recvmmsg)(fd, vector, length, flags, timeout));
	}
	rs_socket_unref(socket);
	if ((unsigned int)flags & KERNEL_MSG_CMSG_COMPAT)
		return -EINVAL;
	if (timeout) {
		if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L)
			return -EINVAL;
		deadline_ns = (int64_t)rs_now_ns() + timespec_ns(timeout);
	}
	if (length > UIO_MAXIOV)
		length = UIO_MAXIOV;
	if (length && rs_bad_pointer(vector))
		return -EFAULT;
	while (received < length) {
		result = rs_recvmsg(fd, &vector[received].msg_hdr, flags);
		if (result < 0)
			break;
		vector[received].msg_len = (unsigned int)result;
		received++;
		if (flags & MSG_WAITFORONE)
			flags |= MSG_DONTWAIT;
		if (timeout) {
			int64_t left_ns = deadline_ns - (int64_t)rs_now_ns();

			if (left_ns < 0)
				left_ns = 0;
			timeout->tv_sec = (time_t)(left_ns / 1000000000ll);
			timeout->tv_nsec = (long)(left_ns % 1000000000ll);
			if (!left_ns)
				break;
		}
		if (vector[received - 1].msg_hdr.msg_flags & MSG_OOB)
			break;
	}
	if (result >= 0)
		return received;
	if (!received)
		return result;
	if (result != -EAGAIN && result != -EINTR)
		report_later(fd, result);
	return received;
}

long rs_sendmmsg(int fd, struct mmsghdr *vector, unsigned int length, int flags)
{
	struct rs_socket *socket = rs_fd_get(fd);
	unsigned int sent = 0;
	long result = 0;

	if (likely(!socket))
		return rs_kernel_result(REAL(sendmmsg)(fd, vector, length, flags));
	rs_socket_unref(socket);
	if ((unsigned int)flags & KERNEL_MSG_CMSG_COMPAT)
		return -EINVAL;
	if (length > UIO_MAXIOV)
		length = UIO_MAXIOV;
	if (length && rs_bad_pointer(vector))
		return -EFAULT;
	while (sent < length) {
		const struct msghdr *message = &vector[sent].msg_hdr;
		size_t wanted = 0;

		result = rs_sendmsg(fd, message, flags);
		if (result < 0)
			break;
		vector[sent].msg_len = (unsigned int)result;
		sent++;
		for (size_t i = 0; i < message->msg_iovlen; i++)
			wanted += message->msg_iov[i].iov_len;
		if ((size_t)result < wanted)
			break;
	}
	return sent ? (long)sent : result;
}
