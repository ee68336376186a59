// SPDX-License-Identifier: MIT
/*
 * Helpers shared by the test servers: option checks, the listening socket
 * (with the `listening PORT` line the test scripts wait for), and one echo
 * loop that can receive and send through every call family the shim
 * intercepts (read/write, recv/send, recvfrom/sendto, recvmsg/sendmsg,
 * readv/writev and the fortified __read_chk/__recv_chk/__recvfrom_chk).
 *
 * The servers pick the family from the connection number, so a single run
 * with a few dozen connections goes through every path of the shim.  Where
 * the kernel's answer is fully determined (the address length recvfrom
 * reports for TCP, the flags recvmsg reports, the peer address accept
 * fills in) the server checks it and dies loudly on a difference, so a
 * shim that gets these details wrong fails the tests instead of passing
 * silently.
 */
#ifndef TEST_SERVER_COMMON_H
#define TEST_SERVER_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* glibc's fortified entry points; declared here so they can be called
 * directly whatever _FORTIFY_SOURCE level the build uses. */
extern ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
extern ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
extern ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
			      struct sockaddr *from, socklen_t *fromlen);

static const char *server_name = "server";

__attribute__((format(printf, 1, 2), noreturn))
static inline void die(const char *format, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", server_name);
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static inline int parse_port(const char *text)
{
	char *end;
	long port = strtol(text, &end, 10);

	if (!*text || *end || port < 0 || port > 65535)
		die("bad port '%s'", text);
	return (int)port;
}

static inline long parse_number(const char *text, long minimum, long maximum, const char *what)
{
	char *end;
	long value = strtol(text, &end, 10);

	if (!*text || *end || value < minimum || value > maximum)
		die("bad %s '%s' (expected %ld..%ld)", what, text, minimum, maximum);
	return value;
}

/* Test servers hold hundreds of connections, and under the shim each
 * connection thread may own a ring fd as well. */
static inline void raise_fd_limit(void)
{
	struct rlimit limit;

	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &limit);
	}
}

/* A peer that resets the connection must cost the server one connection,
 * never the process. */
static inline void ignore_sigpipe(void)
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_handler = SIG_IGN;
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGPIPE, &action, NULL) != 0)
		die("sigaction(SIGPIPE): %s", strerror(errno));
}

/* Binds 127.0.0.1 (or ::1) on the given port (0: any), listens, and
 * announces the real port on stdout. */
static inline int open_listener(int port, bool ipv6)
{
	struct sockaddr_storage address;
	socklen_t length;
	int fd, one = 1;

	memset(&address, 0, sizeof(address));
	if (ipv6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&address;

		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		in6->sin6_port = htons((uint16_t)port);
		length = sizeof(*in6);
	} else {
		struct sockaddr_in *in4 = (struct sockaddr_in *)&address;

		in4->sin_family = AF_INET;
		in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in4->sin_port = htons((uint16_t)port);
		length = sizeof(*in4);
	}
	fd = socket(address.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
		die("setsockopt(SO_REUSEADDR): %s", strerror(errno));
	if (bind(fd, (struct sockaddr *)&address, length) != 0)
		die("bind: %s", strerror(errno));
	if (listen(fd, SOMAXCONN) != 0)
		die("listen: %s", strerror(errno));
	length = sizeof(address);
	if (getsockname(fd, (struct sockaddr *)&address, &length) != 0)
		die("getsockname: %s", strerror(errno));
	port = ntohs(address.ss_family == AF_INET6
		     ? ((struct sockaddr_in6 *)&address)->sin6_port
		     : ((struct sockaddr_in *)&address)->sin_port);
	printf("listening %d\n", port);
	fflush(stdout);
	return fd;
}

/*
 * Accepts the next connection, rotating through accept without an address,
 * accept with one, and accept4 with SOCK_CLOEXEC, and checks what the kernel
 * would guarantee: a loopback peer address of the listener's family and the
 * close-on-exec flag exactly as requested.  Transient errors are retried;
 * returns -1 only if a signal interrupted the call and retry_on_eintr is
 * false.
 */
static inline int accept_connection(int listener, unsigned number, bool retry_on_eintr)
{
	struct sockaddr_storage peer;
	socklen_t length;
	unsigned variant = number % 3;
	int fd, flags;

	for (;;) {
		length = sizeof(peer);
		memset(&peer, 0, sizeof(peer));
		if (variant == 0)
			fd = accept(listener, NULL, NULL);
		else if (variant == 1)
			fd = accept(listener, (struct sockaddr *)&peer, &length);
		else
			fd = accept4(listener, (struct sockaddr *)&peer, &length, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		if (errno == EINTR && !retry_on_eintr)
			return -1;
		if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Out of descriptors for a moment: let connections finish. */
			usleep(10000);
			continue;
		}
		die("accept: %s", strerror(errno));
	}
	if (variant != 0) {
		bool loopback;

		if (peer.ss_family == AF_INET6)
			loopback = length == sizeof(struct sockaddr_in6) &&
				   IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&peer)->sin6_addr);
		else
			loopback = peer.ss_family == AF_INET && length == sizeof(struct sockaddr_in) &&
				   ntohl(((struct sockaddr_in *)&peer)->sin_addr.s_addr) >> 24 == 127;
		if (!loopback)
			die("accept returned a peer address that is not loopback (family %d, length %u)",
			    peer.ss_family, (unsigned)length);
	}
	flags = fcntl(fd, F_GETFD);
	if (flags < 0)
		die("fcntl(F_GETFD) on an accepted socket: %s", strerror(errno));
	if (!!(flags & FD_CLOEXEC) != (variant == 2))
		die("accepted socket has close-on-exec %s, expected %s",
		    flags & FD_CLOEXEC ? "set" : "clear", variant == 2 ? "set" : "clear");
	return fd;
}

/* ---- the call families --------------------------------------------------- */

enum io_family {
	FAMILY_READ,     /* read / write */
	FAMILY_RECV,     /* recv / send(MSG_NOSIGNAL) */
	FAMILY_RECVFROM, /* recvfrom / sendto */
	FAMILY_RECVMSG,  /* recvmsg / sendmsg, several iovecs */
	FAMILY_READV,    /* readv / writev, several iovecs */
	FAMILY_CHK,      /* __read_chk, __recv_chk, __recvfrom_chk / write */
	FAMILY_COUNT,
	FAMILY_ROTATE = FAMILY_COUNT,
};

static const char *const family_names[] = {
	"read", "recv", "recvfrom", "recvmsg", "readv", "chk", "rotate",
};

static inline enum io_family parse_family(const char *text)
{
	for (int family = 0; family <= FAMILY_ROTATE; family++)
		if (!strcmp(text, family_names[family]))
			return (enum io_family)family;
	die("bad mode '%s' (expected read, recv, recvfrom, recvmsg, readv, chk or rotate)", text);
}

/* Read sizes the rotation cycles through, so that small reads, reads that
 * straddle segment boundaries and large reads are all exercised. */
static const size_t read_sizes[] = { 65536, 16384, 4096, 1500, 777 };
#define READ_SIZE_COUNT (sizeof(read_sizes) / sizeof(read_sizes[0]))

struct echo_plan {
	enum io_family family;
	size_t read_size;
};

/* Families rotate fastest, so any 6 consecutive connections cover them all
 * and 30 cover every family with every read size. */
static inline struct echo_plan plan_for_connection(enum io_family mode, size_t fixed_read_size,
						   unsigned number)
{
	struct echo_plan plan;

	plan.family = mode == FAMILY_ROTATE ? (enum io_family)(number % FAMILY_COUNT) : mode;
	plan.read_size = fixed_read_size ? fixed_read_size
					 : read_sizes[(number / FAMILY_COUNT) % READ_SIZE_COUNT];
	return plan;
}

/* Splits [0, length) into up to three pieces at points derived from
 * `salt`, so scatter/gather paths see uneven iovecs. */
static inline int split_iovecs(struct iovec *iov, char *buf, size_t length, unsigned salt)
{
	size_t first, second;

	if (length < 3) {
		iov[0].iov_base = buf;
		iov[0].iov_len = length;
		return 1;
	}
	first = 1 + salt % (length / 3);
	second = 1 + (salt / 7) % (length - first - 1);
	iov[0].iov_base = buf;
	iov[0].iov_len = first;
	iov[1].iov_base = buf + first;
	iov[1].iov_len = second;
	iov[2].iov_base = buf + first + second;
	iov[2].iov_len = length - first - second;
	return 3;
}

/* One receive call of the family; `call` counts calls on the connection and
 * varies the iovec split and the fortified variant. */
static inline ssize_t receive_some(enum io_family family, int fd, char *buf, size_t size,
				   unsigned call)
{
	struct iovec iov[3];
	struct msghdr message;
	struct sockaddr_storage from;
	socklen_t from_length;
	ssize_t result;

	switch (family) {
	case FAMILY_READ:
		return read(fd, buf, size);
	case FAMILY_RECV:
		return recv(fd, buf, size, 0);
	case FAMILY_RECVFROM:
		from_length = sizeof(from);
		result = recvfrom(fd, buf, size, 0, (struct sockaddr *)&from, &from_length);
		/* TCP fills in no address: the kernel reports length 0. */
		if (result >= 0 && from_length != 0)
			die("recvfrom on a TCP socket reported address length %u, the kernel reports 0",
			    (unsigned)from_length);
		return result;
	case FAMILY_RECVMSG:
		memset(&message, 0, sizeof(message));
		message.msg_name = &from;
		message.msg_namelen = sizeof(from);
		message.msg_iov = iov;
		message.msg_iovlen = (size_t)split_iovecs(iov, buf, size, call * 2654435761u);
		message.msg_flags = -1;
		result = recvmsg(fd, &message, 0);
		if (result >= 0 && (message.msg_namelen != 0 || message.msg_flags != 0))
			die("recvmsg on a TCP socket reported msg_namelen %u and msg_flags %#x, "
			    "the kernel reports 0 and 0",
			    (unsigned)message.msg_namelen, (unsigned)message.msg_flags);
		return result;
	case FAMILY_READV:
		return readv(fd, iov, split_iovecs(iov, buf, size, call * 40503u));
	case FAMILY_CHK:
		switch (call % 3) {
		case 0:
			return __read_chk(fd, buf, size, size);
		case 1:
			return __recv_chk(fd, buf, size, size, 0);
		default:
			from_length = sizeof(from);
			result = __recvfrom_chk(fd, buf, size, size, 0, (struct sockaddr *)&from,
						&from_length);
			if (result >= 0 && from_length != 0)
				die("__recvfrom_chk on a TCP socket reported address length %u, "
				    "the kernel reports 0", (unsigned)from_length);
			return result;
		}
	default:
		break;
	}
	errno = EINVAL;
	return -1;
}

/* One send call of the family; may send less than asked. */
static inline ssize_t send_some(enum io_family family, int fd, const char *buf, size_t length,
				unsigned call)
{
	struct iovec iov[3];
	struct msghdr message;

	switch (family) {
	case FAMILY_RECV:
		return send(fd, buf, length, MSG_NOSIGNAL);
	case FAMILY_RECVFROM:
		return sendto(fd, buf, length, MSG_NOSIGNAL, NULL, 0);
	case FAMILY_RECVMSG:
		memset(&message, 0, sizeof(message));
		message.msg_iov = iov;
		message.msg_iovlen = (size_t)split_iovecs(iov, (char *)buf, length, call * 2246822519u);
		return sendmsg(fd, &message, MSG_NOSIGNAL);
	case FAMILY_READV:
		return writev(fd, iov, split_iovecs(iov, (char *)buf, length, call * 3266489917u));
	default:
		return write(fd, buf, length);
	}
}

/* Sends everything, looping over short sends and EINTR.  Returns 0, or -1
 * with errno set when the connection failed. */
static inline int send_all(enum io_family family, int fd, const char *buf, size_t length,
			   unsigned *call)
{
	while (length > 0) {
		ssize_t sent = send_some(family, fd, buf, length, (*call)++);

		if (sent < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (sent == 0 || (size_t)sent > length)
			die("send call returned %zd for %zu bytes", sent, length);
		buf += sent;
		length -= (size_t)sent;
	}
	return 0;
}

/* Errors that only mean the peer went away. */
static inline bool peer_gone(int error)
{
	return error == ECONNRESET || error == EPIPE || error == ETIMEDOUT;
}

/*
 * Echoes until end of file or a connection error, then closes.  Errors a
 * disconnecting peer causes are normal; anything else is reported on
 * stderr (where the tests look for it).  Returns the bytes echoed.
 */
static inline unsigned long long echo_connection(int fd, struct echo_plan plan)
{
	unsigned long long total = 0;
	unsigned receive_calls = 0, send_calls = 0;
	char *buf = malloc(plan.read_size);

	if (!buf)
		die("out of memory for a %zu byte buffer", plan.read_size);
	for (;;) {
		ssize_t received = receive_some(plan.family, fd, buf, plan.read_size, receive_calls++);

		if (received < 0) {
			if (errno == EINTR)
				continue;
			if (!peer_gone(errno))
				fprintf(stderr, "%s: %s receive: %s\n", server_name,
					family_names[plan.family], strerror(errno));
			break;
		}
		if (received == 0)
			break;
		if ((size_t)received > plan.read_size)
			die("receive call returned %zd for a %zu byte buffer", received, plan.read_size);
		if (send_all(plan.family, fd, buf, (size_t)received, &send_calls) != 0) {
			if (!peer_gone(errno))
				fprintf(stderr, "%s: %s send: %s\n", server_name,
					family_names[plan.family], strerror(errno));
			break;
		}
		total += (unsigned long long)received;
	}
	free(buf);
	if (close(fd) != 0)
		fprintf(stderr, "%s: close: %s\n", server_name, strerror(errno));
	return total;
}

#endif
