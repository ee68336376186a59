// SPDX-License-Identifier: MIT
/*
 * Errno-for-errno probe: for each connection, runs a fixed script of socket
 * calls whose results the kernel fully determines (the client, tests/
 * clients/probe_client, keeps both sides in lock step) and prints every
 * call's result on stdout, so the transcript on the plain kernel and under
 * the shim can be compared line for line.
 *
 *   errno_probe [-p PORT] [-6]
 *
 * The client's first line names the scenario: reset (calls after the peer
 * reset the connection, SIGPIPE counted by a handler), halfclose (reads and
 * writes around shutdown), peek (MSG_PEEK, MSG_DONTWAIT, FIONREAD, O_NONBLOCK
 * and FIONBIO switched on and off on a blocking socket), zero (zero-length
 * calls), efault (bad buffers), closedpeer (writing after the peer closed),
 * dup (dup, dup2 and close of one of two descriptors of a socket), sendfile,
 * closerange, cork (TCP_CORK around writes, as nginx's tcp_nopush), splice
 * (out of a socket in an epoll set and into one, around full pipes), fdopen
 * (write(2) and stdio mixed on one socket, then fclose), mmsg (recvmmsg and
 * sendmmsg, in an epoll set and blocking), dprintf (between writes),
 * ownfds (a daemon's loop, close_range and closefrom closing every number
 * but the listener's and the connection's, then more traffic), closefrom
 * (after a write, then a file on the number; it must be the last scenario
 * run, as it closes every descriptor above too).  File descriptor numbers appear
 * in the transcript only as the distance of a new one from the
 * connection's: a shim's own descriptors must not take the numbers the
 * kernel would give.  One connection at a time; runs until killed.
 */
#include <linux/close_range.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>

#include "probe.h"
#include "server_common.h"

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int signal_number)
{
	sigpipes++;
}

static void record_data(const char *step, const char *data, long length)
{
	printf("%s: %s data \"%.*s\"\n", scenario, step, length > 0 ? (int)length : 0, data);
	fflush(stdout);
}

static void record_sigpipes(void)
{
	printf("%s: sigpipes %d\n", scenario, (int)sigpipes);
	fflush(stdout);
}

static void set_nonblocking(int fd, bool on)
{
	int flags = fcntl(fd, F_GETFL);

	STEP(on ? "fcntl(F_SETFL, O_NONBLOCK)" : "fcntl(F_SETFL, 0)",
	     fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK));
	printf("%s: O_NONBLOCK now %s\n", scenario, fcntl(fd, F_GETFL) & O_NONBLOCK ? "set" : "clear");
	fflush(stdout);
}

static void scenario_reset(int fd)
{
	char buf[100];
	struct iovec iov = { .iov_base = "x", .iov_len = 1 };
	struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1 };
	int error = -1;
	socklen_t length = sizeof(error);
	long n;

	n = STEP("recv(5, MSG_WAITALL)", recv(fd, buf, 5, MSG_WAITALL));
	record_data("recv", buf, n);
	STEP("write(got)", write(fd, "got\n", 4));
	/* The client resets the connection once it has the reply. */
	STEP("read(100)", read(fd, buf, 100));
	STEP("write(1)", write(fd, "x", 1));
	record_sigpipes();
	STEP("send(1, MSG_NOSIGNAL)", send(fd, "x", 1, MSG_NOSIGNAL));
	record_sigpipes();
	STEP("read(100) again", read(fd, buf, 100));
	STEP("recv(100)", recv(fd, buf, 100, 0));
	STEP("writev(1)", writev(fd, &iov, 1));
	record_sigpipes();
	STEP("sendmsg(1, MSG_NOSIGNAL)", sendmsg(fd, &message, MSG_NOSIGNAL));
	record_sigpipes();
	STEP("getsockopt(SO_ERROR)", getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length));
	printf("%s: SO_ERROR %d\n", scenario, error);
	fflush(stdout);
}

static void scenario_halfclose(int fd)
{
	char buf[100];
	struct iovec iov = { .iov_base = "def", .iov_len = 3 };
	long n;

	n = STEP("recv(3, MSG_WAITALL)", recv(fd, buf, 3, MSG_WAITALL));
	record_data("recv", buf, n);
	STEP("read(100) at end of file", read(fd, buf, 100));
	STEP("read(100) at end of file again", read(fd, buf, 100));
	STEP("write(abc)", write(fd, "abc", 3));
	STEP("writev(def)", writev(fd, &iov, 1));
	STEP("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	STEP("write(1) after shutdown", write(fd, "x", 1));
	record_sigpipes();
	STEP("send(1, MSG_NOSIGNAL) after shutdown", send(fd, "x", 1, MSG_NOSIGNAL));
	record_sigpipes();
	STEP("read(100) after shutdown", read(fd, buf, 100));
}

static void scenario_peek(int fd)
{
	char buf[100];
	int available = -1, on = 1, off = 0;
	long n;

	n = STEP("recv(6, MSG_PEEK | MSG_WAITALL)", recv(fd, buf, 6, MSG_PEEK | MSG_WAITALL));
	record_data("peek", buf, n);
	STEP("ioctl(FIONREAD)", ioctl(fd, FIONREAD, &available));
	printf("%s: FIONREAD %d\n", scenario, available);
	fflush(stdout);
	n = STEP("read(3)", read(fd, buf, 3));
	record_data("read", buf, n);
	STEP("ioctl(FIONREAD)", ioctl(fd, FIONREAD, &available));
	printf("%s: FIONREAD %d\n", scenario, available);
	fflush(stdout);
	n = STEP("recv(10, MSG_DONTWAIT)", recv(fd, buf, 10, MSG_DONTWAIT));
	record_data("recv", buf, n);
	STEP("recv(10, MSG_DONTWAIT) when empty", recv(fd, buf, 10, MSG_DONTWAIT));
	STEP("ioctl(FIONREAD)", ioctl(fd, FIONREAD, &available));
	printf("%s: FIONREAD %d\n", scenario, available);
	fflush(stdout);
	set_nonblocking(fd, true);
	STEP("read(10) non-blocking when empty", read(fd, buf, 10));
	STEP("recvfrom(10) non-blocking when empty", recvfrom(fd, buf, 10, 0, NULL, NULL));
	set_nonblocking(fd, false);
	STEP("write(more)", write(fd, "more\n", 5));
	/* The client sends "ghi" once it sees "more". */
	n = STEP("recv(3, MSG_WAITALL) blocking again", recv(fd, buf, 3, MSG_WAITALL));
	record_data("recv", buf, n);
	STEP("ioctl(FIONBIO, 1)", ioctl(fd, FIONBIO, &on));
	STEP("recv(10) non-blocking when empty", recv(fd, buf, 10, 0));
	STEP("ioctl(FIONBIO, 0)", ioctl(fd, FIONBIO, &off));
	STEP("write(done)", write(fd, "done\n", 5));
	STEP("read(10) until the client closes", read(fd, buf, 10));
}

static void scenario_zero(int fd)
{
	char buf[100];
	struct iovec iov = { .iov_base = buf, .iov_len = 0 };
	long n;

	/* The client's byte is there first, so no zero-length call can
	 * depend on whether data has arrived. */
	n = STEP("recv(1, MSG_PEEK | MSG_WAITALL)", recv(fd, buf, 1, MSG_PEEK | MSG_WAITALL));
	record_data("peek", buf, n);
	STEP("read(0)", read(fd, buf, 0));
	STEP("recv(0)", recv(fd, buf, 0, 0));
	STEP("readv(no iovecs)", readv(fd, &iov, 0));
	STEP("readv(one empty iovec)", readv(fd, &iov, 1));
	STEP("write(0)", write(fd, buf, 0));
	STEP("send(0)", send(fd, buf, 0, 0));
	STEP("writev(one empty iovec)", writev(fd, &iov, 1));
	n = STEP("read(10)", read(fd, buf, 10));
	record_data("read", buf, n);
	STEP("write(ok)", write(fd, "ok\n", 3));
	STEP("read(10) until the client closes", read(fd, buf, 10));
}

static void scenario_efault(int fd)
{
	char buf[100];
	char *volatile bad = NULL;
	long n;

	n = STEP("recv(4, MSG_PEEK | MSG_WAITALL)", recv(fd, buf, 4, MSG_PEEK | MSG_WAITALL));
	record_data("peek", buf, n);
	STEP("read(NULL, 4)", read(fd, bad, 4));
	STEP("recv(NULL, 4)", recv(fd, bad, 4, 0));
	n = STEP("read(4) after the bad reads", read(fd, buf, 4));
	record_data("read", buf, n);
	STEP("write(NULL, 4)", write(fd, bad, 4));
	STEP("send(NULL, 4, MSG_NOSIGNAL)", send(fd, bad, 4, MSG_NOSIGNAL));
	STEP("write(ok)", write(fd, "ok\n", 3));
	STEP("read(10) until the client closes", read(fd, buf, 10));
}

static void scenario_closedpeer(int fd)
{
	char buf[100];
	long n;

	n = STEP("recv(1, MSG_WAITALL)", recv(fd, buf, 1, MSG_WAITALL));
	record_data("recv", buf, n);
	STEP("write(got)", write(fd, "got\n", 4));
	/* The client closes normally once it has the reply. */
	STEP("read(10) at end of file", read(fd, buf, 10));
	STEP("write(late) to a closed peer", write(fd, "late", 4));
	record_sigpipes();
}

/* Returns the descriptor the caller must close. */
static int scenario_dup(int fd)
{
	char buf[100];
	int copy;
	long n;

	copy = dup(fd);
	record("dup", copy >= 0 ? 0 : -1, errno);
	if (copy < 0)
		return fd;
	STEP("close(original)", close(fd));
	STEP("write(still) on the copy", write(copy, "still\n", 6));
	n = STEP("recv(4, MSG_WAITALL) on the copy", recv(copy, buf, 4, MSG_WAITALL));
	record_data("recv", buf, n);
	STEP("dup2(copy, original number)", dup2(copy, fd) == fd ? 0 : -1);
	STEP("close(copy)", close(copy));
	STEP("write(again) on the original number", write(fd, "again\n", 6));
	STEP("shutdown(SHUT_WR)", shutdown(fd, SHUT_WR));
	STEP("read(10) until the client closes", read(fd, buf, 10));
	return fd;
}

static void scenario_sendfile(int fd)
{
	char buf[16];
	off_t offset = 0;
	FILE *file = tmpfile();
	long n;

	if (!file || fputs("body\n", file) == EOF || fflush(file) != 0)
		die("tmpfile: %s", strerror(errno));
	STEP("write(head)", write(fd, "head\n", 5));
	STEP("sendfile(5)", sendfile(fd, fileno(file), &offset, 5));
	STEP("write(tail)", write(fd, "tail\n", 5));
	fclose(file);
	n = STEP("recv(2, MSG_WAITALL)", recv(fd, buf, 2, MSG_WAITALL));
	record_data("recv", buf, n);
	STEP("read(10) until the client closes", read(fd, buf, 10));
}

/* Records getsockopt(TCP_CORK) with a buffer of length bytes. */
static void record_cork(const char *step, int fd, socklen_t length)
{
	unsigned char value[sizeof(int)] = { 0xff, 0xff, 0xff, 0xff };
	long result = STEP(step, getsockopt(fd, IPPROTO_TCP, TCP_CORK, value, &length));

	if (result == 0)
		printf("%s: %s gave length %u, bytes %02x %02x %02x %02x\n", scenario, step,
		       (unsigned)length, value[0], value[1], value[2], value[3]);
	fflush(stdout);
}

/* TCP_CORK around writes and a sendfile, as nginx's tcp_nopush does, with
 * bad lengths and pointers, and many rounds (the shim carries them; the
 * test counts what reached the kernel). */
static void scenario_cork(int fd)
{
	int on = 1, off = 0, seven = 7;
	off_t offset = 0;
	FILE *file = tmpfile();
	char buf[16];
	long n;

	if (!file || fputs("body\n", file) == EOF || fflush(file) != 0)
		die("tmpfile: %s", strerror(errno));
	record_cork("getsockopt(TCP_CORK) at first", fd, sizeof(int));
	STEP("setsockopt(TCP_CORK, 1)", setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)));
	record_cork("getsockopt(TCP_CORK) corked", fd, sizeof(int));
	STEP("write(head)", write(fd, "head\n", 5));
	STEP("sendfile(5)", sendfile(fd, fileno(file), &offset, 5));
	STEP("setsockopt(TCP_CORK, 0)", setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off)));
	record_cork("getsockopt(TCP_CORK) uncorked", fd, sizeof(int));
	STEP("setsockopt(TCP_CORK, length 2)", setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, 2));
	STEP("setsockopt(TCP_CORK, NULL)", setsockopt(fd, IPPROTO_TCP, TCP_CORK, NULL, sizeof(int)));
	STEP("setsockopt(TCP_CORK, 7)", setsockopt(fd, IPPROTO_TCP, TCP_CORK, &seven, sizeof(seven)));
	record_cork("getsockopt(TCP_CORK) of 7, length 1", fd, 1);
	STEP("write(tail)", write(fd, "tail\n", 5));
	STEP("setsockopt(TCP_CORK, 0) again", setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off)));
	for (int round = 0; round < 100; round++) {
		if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) ||
		    write(fd, "r", 1) != 1 ||
		    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off)))
			die("cork round %d: %s", round, strerror(errno));
	}
	record_cork("getsockopt(TCP_CORK) after the rounds", fd, sizeof(int));
	fclose(file);
	n = STEP("recv(2, MSG_WAITALL)", recv(fd, buf, 2, MSG_WAITALL));
	record_data("recv", buf, n);
	STEP("read(10) until the client closes", read(fd, buf, 10));
}

/* Closes the socket itself, with close_range: the caller must not. */
/* The server's own listener: the ownfds scenario closes all else. */
static int listener = -1;

/* What a daemon does to close what it inherited, with its listener and
 * the connection open: nothing else from 3 up is the server's, so nothing
 * closes, and the connection goes on working. */
static void scenario_ownfds(int fd)
{
	int limit = getdtablesize() < 65536 ? getdtablesize() : 65536;
	unsigned int low = (unsigned int)(listener < fd ? listener : fd);
	unsigned int high = (unsigned int)(listener < fd ? fd : listener);
	int others_open = 0, probe;
	char buf[16];
	long n;

	probe = dup(fd);
	printf("%s: dup took the connection's number + %d\n", scenario, probe - fd);
	STEP("close(the duplicate)", close(probe));
	for (int other = 3; other < limit; other++)
		if (other != fd && other != listener)
			others_open += close(other) == 0;
	printf("%s: other numbers from 3 up that close closed: %d\n", scenario, others_open);
	if (low > 3)
		STEP("close_range(3, below both)", close_range(3, low - 1, 0));
	if (high > low + 1)
		STEP("close_range(between them)", close_range(low + 1, high - 1, 0));
	STEP("close_range(above both, ~0U, 0)", close_range(high + 1, ~0U, 0));
	STEP("close_range(above both, ~0U, CLOSE_RANGE_CLOEXEC)",
	     close_range(high + 1, ~0U, CLOSE_RANGE_CLOEXEC));
	closefrom((int)high + 1);
	STEP("write(closed)", write(fd, "closed\n", 7));
	n = STEP("read(5)", read(fd, buf, 5));
	record_data("read", buf, n);
	STEP("write(done)", write(fd, "done\n", 5));
	probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
	printf("%s: open took the connection's number + %d\n", scenario, probe - fd);
	STEP("close(the file)", close(probe));
	STEP("read(10) until the client closes", read(fd, buf, 10));
}

/* closefrom after a write; then a file takes the number.  Last in the
 * list: it closes every descriptor above the connection's too. */
static void scenario_closefrom(int fd)
{
	int file;

	STEP("write(bye)", write(fd, "bye\n", 4));
	closefrom(fd);
	printf("%s: closefrom done\n", scenario);
	file = open("/dev/null", O_WRONLY | O_CLOEXEC);
	printf("%s: open took %s\n", scenario,
	       file < 0 ? strerrorname_np(errno) : file == fd ? "the freed number" : "another number");
	STEP("write to it", write(file, "not for the peer", 16));
	STEP("read from it", read(file, (char[4]){ 0 }, 4));
	STEP("close it", close(file));
}

static void scenario_closerange(int fd)
{
	STEP("write(bye)", write(fd, "bye\n", 4));
	STEP("close_range(fd, fd, 0)", close_range((unsigned int)fd, (unsigned int)fd, 0));
	STEP("write(1) after close_range", write(fd, "x", 1));
}

/* Reads everything the pipe holds now and records it (or its size). */
static void record_pipe(const char *step, int pipe_read, bool size_only)
{
	static char contents[1 << 17];
	long total = 0, n;

	while ((n = read(pipe_read, contents + total, sizeof(contents) - (size_t)total)) > 0)
		total += n;
	if (size_only) {
		printf("%s: %s holds %ld bytes\n", scenario, step, total);
		fflush(stdout);
	} else {
		record_data(step, contents, total);
	}
}

/* splice() out of a socket the shim receives ahead on (registered in an
 * epoll set, non-blocking), and into one with bytes queued before it, with
 * a full pipe, an empty socket, offsets, and blocking. */
static void scenario_splice(int fd)
{
	static const char zeros[4096];
	struct epoll_event event = { .events = EPOLLIN }, ready;
	int pipe_fds[2], epoll_fd = epoll_create1(EPOLL_CLOEXEC), flags;
	loff_t offset = 0;
	long filled = 0, n;

	if (epoll_fd < 0 || pipe(pipe_fds) != 0)
		die("epoll_create1 or pipe: %s", strerror(errno));
	STEP("epoll_ctl(ADD)", epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event));
	set_nonblocking(fd, true);
	/* The read end never blocks, so record_pipe stops when it is empty. */
	fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
	STEP("epoll_wait", epoll_wait(epoll_fd, &ready, 1, 10000));
	STEP("splice(4, SPLICE_F_NONBLOCK)", splice(fd, NULL, pipe_fds[1], NULL, 4, SPLICE_F_NONBLOCK));
	record_pipe("pipe", pipe_fds[0], false);
	STEP("splice with an offset on the socket", splice(fd, &offset, pipe_fds[1], NULL, 4, 0));
	STEP("splice(100)", splice(fd, NULL, pipe_fds[1], NULL, 100, 0));
	record_pipe("pipe", pipe_fds[0], false);
	STEP("splice(100) when empty", splice(fd, NULL, pipe_fds[1], NULL, 100, 0));
	STEP("splice(100, SPLICE_F_NONBLOCK) when empty",
	     splice(fd, NULL, pipe_fds[1], NULL, 100, SPLICE_F_NONBLOCK));
	flags = fcntl(pipe_fds[1], F_GETFL);
	fcntl(pipe_fds[1], F_SETFL, flags | O_NONBLOCK);
	while ((n = write(pipe_fds[1], zeros, sizeof(zeros))) > 0)
		filled += n;
	fcntl(pipe_fds[1], F_SETFL, flags);
	printf("%s: pipe filled with %ld bytes\n", scenario, filled);
	STEP("write(more)", write(fd, "more\n", 5));
	/* The client sends "ghi" once it sees "more". */
	STEP("epoll_wait", epoll_wait(epoll_fd, &ready, 1, 10000));
	STEP("splice(10, SPLICE_F_NONBLOCK) into a full pipe",
	     splice(fd, NULL, pipe_fds[1], NULL, 10, SPLICE_F_NONBLOCK));
	record_pipe("full pipe", pipe_fds[0], true);
	STEP("splice(10, SPLICE_F_NONBLOCK)", splice(fd, NULL, pipe_fds[1], NULL, 10, SPLICE_F_NONBLOCK));
	record_pipe("pipe", pipe_fds[0], false);
	/* Into the socket: what was written before goes first. */
	STEP("write(hello)", write(fd, "hello ", 6));
	STEP("write(world) into the pipe", write(pipe_fds[1], "world\n", 6));
	STEP("splice with an offset on the pipe", splice(pipe_fds[0], &offset, fd, NULL, 6, 0));
	STEP("splice(pipe to socket, 6)", splice(pipe_fds[0], NULL, fd, NULL, 6, 0));
	STEP("splice(socket to socket)", splice(fd, NULL, fd, NULL, 1, 0));
	set_nonblocking(fd, false);
	STEP("write(tail)", write(fd, "tail\n", 5));
	/* The client sends "xyz" once it sees "tail": this one waits. */
	STEP("splice(10) blocking", splice(fd, NULL, pipe_fds[1], NULL, 10, 0));
	record_pipe("pipe", pipe_fds[0], false);
	/* sendfile from the socket into the pipe is a splice too: once the
	 * bytes are there (received ahead under the shim). */
	set_nonblocking(fd, true);
	STEP("write(again)", write(fd, "again\n", 6));
	STEP("epoll_wait", epoll_wait(epoll_fd, &ready, 1, 10000));
	STEP("sendfile(socket to pipe, 10)", sendfile(pipe_fds[1], fd, NULL, 10));
	record_pipe("pipe", pipe_fds[0], false);
	STEP("sendfile(socket to pipe, 10) when empty", sendfile(pipe_fds[1], fd, NULL, 10));
	set_nonblocking(fd, false);
	STEP("write(done)", write(fd, "done\n", 5));
	STEP("splice(10) until the client closes", splice(fd, NULL, pipe_fds[1], NULL, 10, 0));
	close(pipe_fds[0]);
	close(pipe_fds[1]);
	close(epoll_fd);
}

/* Points each of count entries at its own size-byte buffer. */
static void prepare_vector(struct mmsghdr *vector, struct iovec *iov, char (*buffers)[8],
			   unsigned count, size_t size)
{
	memset(vector, 0, sizeof(*vector) * count);
	for (unsigned i = 0; i < count; i++) {
		iov[i].iov_base = buffers[i];
		iov[i].iov_len = size;
		vector[i].msg_hdr.msg_iov = &iov[i];
		vector[i].msg_hdr.msg_iovlen = 1;
	}
}

static void record_vector(const char *step, const struct mmsghdr *vector, long count)
{
	for (long i = 0; i < count; i++)
		printf("%s: %s entry %ld: length %u flags %#x data \"%.*s\"\n", scenario, step, i,
		       vector[i].msg_len, (unsigned)vector[i].msg_hdr.msg_flags,
		       (int)vector[i].msg_len, (const char *)vector[i].msg_hdr.msg_iov->iov_base);
	fflush(stdout);
}

/* recvmmsg and sendmmsg on a socket in an epoll set (received ahead under
 * the shim), around bytes write(2) queued, then blocking. */
static void scenario_mmsg(int fd)
{
	struct epoll_event event = { .events = EPOLLIN }, ready;
	int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	struct timespec timeout = { .tv_sec = 0, .tv_nsec = 1000000000L };
	char buffers[4][8], *words[2] = { "one ", "two\n" };
	struct mmsghdr vector[4];
	struct iovec iov[4];
	long n;

	if (epoll_fd < 0)
		die("epoll_create1: %s", strerror(errno));
	STEP("epoll_ctl(ADD)", epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event));
	set_nonblocking(fd, true);
	/* The client sends "abcdefg". */
	STEP("epoll_wait", epoll_wait(epoll_fd, &ready, 1, 10000));
	prepare_vector(vector, iov, buffers, 4, 2);
	n = STEP("recvmmsg(4 x 2)", recvmmsg(fd, vector, 4, 0, NULL));
	record_vector("recvmmsg", vector, n);
	STEP("recvmmsg when empty", recvmmsg(fd, vector, 4, 0, NULL));
	STEP("recvmmsg(MSG_WAITFORONE) when empty", recvmmsg(fd, vector, 4, MSG_WAITFORONE, NULL));
	STEP("recvmmsg(0 entries)", recvmmsg(fd, vector, 0, 0, NULL));
	STEP("recvmmsg(NULL vector)", recvmmsg(fd, NULL, 1, 0, NULL));
	STEP("recvmmsg(bad timeout)", recvmmsg(fd, vector, 1, 0, &timeout));
	STEP("write(zero)", write(fd, "zero ", 5));
	prepare_vector(vector, iov, buffers, 2, 0);
	for (unsigned i = 0; i < 2; i++) {
		iov[i].iov_base = words[i];
		iov[i].iov_len = strlen(words[i]);
	}
	n = STEP("sendmmsg(one, two)", sendmmsg(fd, vector, 2, 0));
	for (long i = 0; i < n; i++)
		printf("%s: sendmmsg entry %ld: length %u\n", scenario, i, vector[i].msg_len);
	STEP("sendmmsg(0 entries)", sendmmsg(fd, vector, 0, 0));
	STEP("sendmmsg(NULL vector)", sendmmsg(fd, NULL, 1, 0));
	/* The client sends "hijklm" once it has "zero one two". */
	STEP("epoll_wait", epoll_wait(epoll_fd, &ready, 1, 10000));
	set_nonblocking(fd, false);
	prepare_vector(vector, iov, buffers, 4, 4);
	n = STEP("recvmmsg(4 x 4, MSG_WAITFORONE)", recvmmsg(fd, vector, 4, MSG_WAITFORONE, NULL));
	record_vector("recvmmsg", vector, n);
	/* The client sends "nop" once it sees "next": this one waits. */
	STEP("write(next)", write(fd, "next\n", 5));
	timeout.tv_sec = 10;
	timeout.tv_nsec = 0;
	prepare_vector(vector, iov, buffers, 2, 2);
	n = STEP("recvmmsg(2 x 2, MSG_WAITFORONE, 10 s) blocking",
		 recvmmsg(fd, vector, 2, MSG_WAITFORONE, &timeout));
	record_vector("recvmmsg", vector, n);
	printf("%s: timeout left %s\n", scenario,
	       timeout.tv_sec >= 0 && timeout.tv_sec < 10 && timeout.tv_nsec >= 0 ? "less than 10 s" :
	       "unchanged or wrong");
	STEP("write(done)", write(fd, "done\n", 5));
	n = STEP("recvmmsg(2 x 2) until the client closes", recvmmsg(fd, vector, 2, 0, NULL));
	record_vector("recvmmsg at the end", vector, n);
	close(epoll_fd);
}

/* dprintf between writes (the C library formats and writes on its own),
 * once past its 1 KiB buffer, and on a closed descriptor. */
static void scenario_dprintf(int fd)
{
	char line[64] = "", long_text[1501];
	int closed = open("/dev/null", O_WRONLY | O_CLOEXEC);
	long n;

	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = 0;
	STEP("write(first)", write(fd, "first ", 6));
	STEP("dprintf(second)", dprintf(fd, "second %d\n", 2));
	STEP("write(third)", write(fd, "third\n", 6));
	STEP("dprintf(1500 x)", dprintf(fd, "%s\n", long_text));
	close(closed);
	STEP("dprintf on a closed descriptor", dprintf(closed, "nobody %d\n", 0));
	/* The client answers "ok" once it has all of it. */
	n = STEP("read", read(fd, line, sizeof(line) - 1));
	record_data("read", line, n);
}

/* write(2) and stdio on one socket, then fclose: the order of the bytes
 * and what a later fd of the same number is.  Returns -1: fclose closed it. */
static int scenario_fdopen(int fd)
{
	char line[64] = "";
	FILE *stream;
	int file;

	STEP("write(first)", write(fd, "first ", 6));
	stream = fdopen(fd, "r+");
	if (!stream)
		die("fdopen: %s", strerror(errno));
	STEP("fprintf(second)", fprintf(stream, "second\n"));
	STEP("fflush", fflush(stream));
	STEP("write(third)", write(fd, "third\n", 6));
	STEP("fputs(fourth)", fputs("fourth\n", stream));
	STEP("fflush", fflush(stream));
	/* The client answers "ok" once it has all four. */
	if (fgets(line, sizeof(line), stream))
		record_data("fgets", line, (long)strlen(line));
	STEP("fclose", fclose(stream));
	/* The number is free again: a file that takes it is a file. */
	file = open("/dev/null", O_WRONLY | O_CLOEXEC);
	printf("%s: open took %s\n", scenario,
	       file < 0 ? strerrorname_np(errno) : file == fd ? "the freed number" : "another number");
	STEP("write to it", write(file, "not for the peer", 16));
	STEP("close it", close(file));
	return -1;
}

/* The scenario name, read a byte at a time so nothing after it is taken. */
/* Each scenario leaves the connection for the caller to close (run), gives
 * back the number the caller closes (replaced), or closes it itself. */
static const struct {
	const char *name;
	void (*run)(int fd);
	int (*replaced)(int fd);
	bool closes;
} scenarios[] = {
	{ "reset", .run = scenario_reset },
	{ "halfclose", .run = scenario_halfclose },
	{ "peek", .run = scenario_peek },
	{ "zero", .run = scenario_zero },
	{ "efault", .run = scenario_efault },
	{ "closedpeer", .run = scenario_closedpeer },
	{ "dup", .replaced = scenario_dup },
	{ "sendfile", .run = scenario_sendfile },
	{ "cork", .run = scenario_cork },
	{ "fdopen", .replaced = scenario_fdopen },
	{ "splice", .run = scenario_splice },
	{ "mmsg", .run = scenario_mmsg },
	{ "dprintf", .run = scenario_dprintf },
	{ "ownfds", .run = scenario_ownfds },
	{ "closerange", .run = scenario_closerange, .closes = true },
	{ "closefrom", .run = scenario_closefrom, .closes = true },
};
#define SCENARIO_COUNT (sizeof(scenarios) / sizeof(scenarios[0]))

static bool read_scenario_name(int fd, char *name, size_t size)
{
	size_t length = 0;

	while (length < size - 1) {
		ssize_t n = read(fd, name + length, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		if (name[length] == '\n') {
			name[length] = 0;
			return true;
		}
		length++;
	}
	return false;
}

static void usage(void)
{
	fprintf(stderr, "usage: errno_probe [-p PORT] [-6]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	bool ipv6 = false;
	int port = 0, option;
	size_t index;
	struct sigaction action;

	server_name = "errno_probe";
	while ((option = getopt(argc, argv, "p:6")) != -1) {
		switch (option) {
		case 'p':
			port = parse_port(optarg);
			break;
		case '6':
			ipv6 = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	/* Counted, not ignored: the transcript shows which calls raise it. */
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_sigpipe;
	action.sa_flags = SA_RESTART;
	sigemptyset(&action.sa_mask);
	if (sigaction(SIGPIPE, &action, NULL) != 0)
		die("sigaction(SIGPIPE): %s", strerror(errno));
	listener = open_listener(port, ipv6);
	for (unsigned number = 0;; number++) {
		int fd = accept_connection(listener, number, true);
		char name[32];

		sigpipes = 0;
		if (!read_scenario_name(fd, name, sizeof(name))) {
			fprintf(stderr, "errno_probe: no scenario name\n");
			close(fd);
			continue;
		}
		scenario = name;
		if (write(fd, "ready\n", 6) != 6)
			die("write(ready): %s", strerror(errno));
		for (index = 0; index < SCENARIO_COUNT; index++)
			if (!strcmp(name, scenarios[index].name))
				break;
		if (index == SCENARIO_COUNT) {
			fprintf(stderr, "errno_probe: unknown scenario '%s'\n", name);
		} else if (scenarios[index].replaced) {
			fd = scenarios[index].replaced(fd);
		} else {
			scenarios[index].run(fd);
			if (scenarios[index].closes)
				fd = -1;
		}
		if (fd >= 0)
			STEP("close", close(fd));
		printf("%s: end\n", scenario);
		fflush(stdout);
	}
}
