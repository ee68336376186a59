// SPDX-License-Identifier: MIT
/*
 * Readiness probe: runs fixed scripts of socket and readiness calls on
 * accepted TCP sockets (the ones the shim carries) and prints every call's
 * result, so the transcript on the plain kernel and under the shim can be
 * compared line by line (tests/integration/event_readiness.sh).
 *
 *   readiness_probe [SCENARIO...]    (default: every scenario, in order)
 *
 * The process plays both ends: it listens on 127.0.0.1, connects to
 * itself and accepts, so each scenario has an accepted socket (the one
 * under test) and a connected peer.  Without RINGSTEER_CLIENT=1 the shim
 * leaves the peer on the kernel path, so the peer's actions are exactly
 * the kernel's.  Nothing printed depends on timing: a step that follows an
 * action of the peer waits for it (a readiness wait with a 5 s timeout, or
 * FIONREAD polled with bounded retries), timeouts are only used where
 * nothing can become ready, and neither descriptor numbers nor byte counts
 * that depend on buffer sizes appear.  Events of one wait are printed in
 * the order of their data field.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <time.h>

#include "server_common.h"

#define READY_TIMEOUT_MS 5000
#define IDLE_TIMEOUT_MS  50

static const char *scenario;
static int listener;
static struct sockaddr_in listener_address;
static volatile sig_atomic_t usr1_count;

/* ---- transcript ----------------------------------------------------------- */

__attribute__((format(printf, 1, 2)))
static void say(const char *format, ...)
{
	va_list ap;

	printf("%s: ", scenario);
	va_start(ap, format);
	vprintf(format, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void record(const char *step, long result, int error)
{
	if (result < 0)
		say("%s = -1 %s", step, strerrorname_np(error));
	else
		say("%s = %ld", step, result);
}

#define STEP(description, call) ({                         \
	long step_result_;                                 \
	do {                                               \
		errno = 0;                                 \
		step_result_ = (long)(call);               \
	} while (step_result_ < 0 && errno == EINTR);      \
	record(description, step_result_, errno);          \
	step_result_;                                      \
})

/* A step that must not be restarted: EINTR is its answer. */
#define STEP_ONCE(description, call) ({                    \
	long step_result_;                                 \
	errno = 0;                                         \
	step_result_ = (long)(call);                       \
	record(description, step_result_, errno);          \
	step_result_;                                      \
})

static void show_data(const char *step, const char *data, long length)
{
	say("%s data \"%.*s\"", step, length > 0 ? (int)length : 0, data);
}

static const char *epoll_names(uint32_t events)
{
	static char text[160];
	static const struct { uint32_t bit; const char *name; } names[] = {
		{ EPOLLIN, "IN" }, { EPOLLPRI, "PRI" }, { EPOLLOUT, "OUT" }, { EPOLLERR, "ERR" },
		{ EPOLLHUP, "HUP" }, { EPOLLRDNORM, "RDNORM" }, { EPOLLRDBAND, "RDBAND" },
		{ EPOLLWRNORM, "WRNORM" }, { EPOLLWRBAND, "WRBAND" }, { EPOLLMSG, "MSG" },
		{ EPOLLRDHUP, "RDHUP" },
	};
	size_t length = 0;

	text[0] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(events & names[i].bit))
			continue;
		length += (size_t)snprintf(text + length, sizeof(text) - length, "%s%s",
					   length ? "|" : "", names[i].name);
		events &= ~names[i].bit;
	}
	if (events)
		snprintf(text + length, sizeof(text) - length, "%s%#x", length ? "|" : "", events);
	else if (!length)
		snprintf(text, sizeof(text), "none");
	return text;
}

static int compare_events(const void *left, const void *right)
{
	uint64_t a = ((const struct epoll_event *)left)->data.u64;
	uint64_t b = ((const struct epoll_event *)right)->data.u64;

	return a < b ? -1 : a > b;
}

static long long now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* epoll_wait and its events, sorted by their data.  A wait for something
 * that was on its way returns as soon as it arrives: one that lasted past
 * half its timeout says so (the kernel's never does, however busy the
 * machine; a shim that missed a wake-up always would). */
static int show_wait(int epoll_fd, int max_events, int timeout, const char *step)
{
	struct epoll_event events[16];
	long long started = now_ms();
	int count;

	do {
		count = epoll_wait(epoll_fd, events, max_events, timeout);
	} while (count < 0 && errno == EINTR);
	record(step, count, errno);
	if (count > 0 && timeout >= READY_TIMEOUT_MS && now_ms() - started >= timeout / 2)
		say("  ready only after more than half the timeout");
	if (count > 0) {
		qsort(events, (size_t)count, sizeof(events[0]), compare_events);
		for (int i = 0; i < count; i++)
			say("  data %#llx events %s", (unsigned long long)events[i].data.u64,
			    epoll_names(events[i].events));
	}
	return count;
}

static long control(int epoll_fd, int operation, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event event = { .events = events, .data.u64 = data };

	return epoll_ctl(epoll_fd, operation, fd, &event);
}

static const char *poll_names(short events)
{
	static char text[120];
	static const struct { short bit; const char *name; } names[] = {
		{ POLLIN, "IN" }, { POLLPRI, "PRI" }, { POLLOUT, "OUT" }, { POLLERR, "ERR" },
		{ POLLHUP, "HUP" }, { POLLNVAL, "NVAL" }, { POLLRDNORM, "RDNORM" },
		{ POLLRDBAND, "RDBAND" }, { POLLWRNORM, "WRNORM" }, { POLLWRBAND, "WRBAND" },
		{ POLLRDHUP, "RDHUP" },
	};
	size_t length = 0;

	text[0] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(events & names[i].bit))
			continue;
		length += (size_t)snprintf(text + length, sizeof(text) - length, "%s%s",
					   length ? "|" : "", names[i].name);
		events = (short)(events & ~names[i].bit);
	}
	if (events)
		snprintf(text + length, sizeof(text) - length, "%s%#x", length ? "|" : "",
			 (unsigned)(unsigned short)events);
	else if (!length)
		snprintf(text, sizeof(text), "none");
	return text;
}

/* poll and every entry's revents, by position. */
static int show_poll(struct pollfd *fds, nfds_t count, int timeout, const char *step)
{
	int ready;

	long long started = now_ms();

	for (nfds_t i = 0; i < count; i++)
		fds[i].revents = (short)0x5a5a; /* must be overwritten */
	do {
		ready = poll(fds, count, timeout);
	} while (ready < 0 && errno == EINTR);
	record(step, ready, errno);
	if (ready > 0 && timeout >= READY_TIMEOUT_MS && now_ms() - started >= timeout / 2)
		say("  ready only after more than half the timeout");
	if (ready >= 0)
		for (nfds_t i = 0; i < count; i++)
			say("  entry %u revents %s", (unsigned)i, poll_names(fds[i].revents));
	return ready;
}

/* ---- the two ends ------------------------------------------------------------ */

static void no_delay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		die("setsockopt(TCP_NODELAY): %s", strerror(errno));
}

/* A fresh connection: *server is the accepted end (non-blocking if asked,
 * by accept4 or by fcntl in turn), *peer the connected one (blocking). */
static void make_pair(int *server, int *peer, bool nonblocking)
{
	static unsigned count;
	int flags;

	*peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*peer < 0)
		die("socket: %s", strerror(errno));
	if (connect(*peer, (struct sockaddr *)&listener_address, sizeof(listener_address)) != 0)
		die("connect: %s", strerror(errno));
	if (nonblocking && count++ % 2) {
		*server = accept(listener, NULL, NULL);
		if (*server < 0 || (flags = fcntl(*server, F_GETFL)) < 0 ||
		    fcntl(*server, F_SETFL, flags | O_NONBLOCK) != 0)
			die("accept and fcntl: %s", strerror(errno));
	} else {
		*server = accept4(listener, NULL, NULL, nonblocking ? SOCK_NONBLOCK : 0);
		if (*server < 0)
			die("accept4: %s", strerror(errno));
	}
	no_delay(*peer);
	no_delay(*server);
}

static void peer_send(int peer, const char *text)
{
	size_t length = strlen(text);

	if (send(peer, text, length, MSG_NOSIGNAL) != (ssize_t)length)
		die("peer send: %s", strerror(errno));
}

/* Reads exactly `length` bytes on the (blocking) peer into `buffer`. */
static void peer_receive(int peer, char *buffer, size_t length)
{
	size_t done = 0;

	while (done < length) {
		ssize_t n = recv(peer, buffer + done, length - done, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("peer receive: %s", n < 0 ? strerror(errno) : "end of file");
		done += (size_t)n;
	}
}

static void reset_peer(int peer)
{
	struct linger linger = { .l_onoff = 1, .l_linger = 0 };

	if (setsockopt(peer, SOL_SOCKET, SO_LINGER, &linger, sizeof(linger)) != 0)
		die("setsockopt(SO_LINGER): %s", strerror(errno));
	close(peer);
}

/* Waits (bounded) until the socket has at least `bytes` to read, as its
 * own FIONREAD reports; says so only if it never happens. */
static void await_bytes(int fd, int bytes)
{
	int available = -1;

	for (int tries = 0; tries < 5000; tries++) {
		if (ioctl(fd, FIONREAD, &available) == 0 && available >= bytes)
			return;
		usleep(1000);
	}
	say("FIONREAD never reached %d (last %d)", bytes, available);
}

/* Waits (bounded) until poll reports every bit of `wanted` on the socket,
 * so that what the peer did (a FIN, a reset) has arrived before the next
 * step; says so only if it never happens. */
static void await_poll(int fd, short wanted)
{
	struct pollfd entry = { .fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP };

	for (int tries = 0; tries < 5000; tries++) {
		if (poll(&entry, 1, 0) == 1 && (entry.revents & wanted) == wanted)
			return;
		usleep(1000);
	}
	say("poll never reported %s", poll_names(wanted));
}

/* Sleeps a little, then sends: gives a blocking call something to wait for.
 * The answer of the call does not depend on how long the delay is. */
struct later_send {
	int fd;
	const char *text;
	bool shut;
};

static void *send_later_thread(void *argument)
{
	struct later_send *later = argument;

	usleep(50000);
	peer_send(later->fd, later->text);
	if (later->shut)
		shutdown(later->fd, SHUT_WR);
	return NULL;
}

static pthread_t send_later(struct later_send *later)
{
	pthread_t thread;

	if (pthread_create(&thread, NULL, send_later_thread, later) != 0)
		die("pthread_create failed");
	return thread;
}

/* ---- scenarios ----------------------------------------------------------------- */

static void scenario_epoll_lt(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	char buf[100];
	long n;

	make_pair(&server, &peer, true);
	STEP("ADD IN", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN, 0x11));
	show_wait(epoll_fd, 16, 0, "wait(0) with nothing to read");
	STEP("read(100) when empty", read(server, buf, 100));
	peer_send(peer, "hello");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after the peer sent 5 bytes");
	show_wait(epoll_fd, 16, 0, "wait(0) again, level-triggered");
	n = STEP("read(2)", read(server, buf, 2));
	show_data("read", buf, n);
	show_wait(epoll_fd, 16, 0, "wait(0) with 3 bytes left");
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);
	show_wait(epoll_fd, 16, 0, "wait(0) drained");
	STEP("read(100) drained", read(server, buf, 100));
	STEP("MOD IN|OUT", control(epoll_fd, EPOLL_CTL_MOD, server, EPOLLIN | EPOLLOUT, 0x12));
	show_wait(epoll_fd, 16, 0, "wait(0) after MOD");
	STEP("MOD OUT", control(epoll_fd, EPOLL_CTL_MOD, server, EPOLLOUT, 0x13));
	STEP("write(reply)", write(server, "reply", 5));
	peer_receive(peer, buf, 5);
	show_data("peer received", buf, 5);
	peer_send(peer, "more");
	show_wait(epoll_fd, 16, 0, "wait(0) OUT only, data waiting");
	STEP("MOD IN", control(epoll_fd, EPOLL_CTL_MOD, server, EPOLLIN, 0x14));
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after MOD IN");
	n = STEP("recv(100)", recv(server, buf, 100, 0));
	show_data("recv", buf, n);
	STEP("DEL", control(epoll_fd, EPOLL_CTL_DEL, server, 0, 0));
	peer_send(peer, "x");
	await_bytes(server, 1);
	show_wait(epoll_fd, 16, IDLE_TIMEOUT_MS, "wait(50 ms) after DEL, data waiting");
	STEP("ADD again", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN, 0x15));
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after ADD again");
	close(server);
	close(peer);
	close(epoll_fd);
}

static void scenario_epoll_errors(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC), closed;

	make_pair(&server, &peer, true);
	STEP("MOD before ADD", control(epoll_fd, EPOLL_CTL_MOD, server, EPOLLIN, 1));
	STEP("DEL before ADD", control(epoll_fd, EPOLL_CTL_DEL, server, 0, 0));
	STEP("ADD", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN, 1));
	STEP("ADD twice", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN, 1));
	STEP("ADD the epoll fd to itself", control(epoll_fd, EPOLL_CTL_ADD, epoll_fd, EPOLLIN, 2));
	STEP("bad operation", control(epoll_fd, 99, server, EPOLLIN, 1));
	STEP("DEL", control(epoll_fd, EPOLL_CTL_DEL, server, 0, 0));
	STEP("DEL twice", control(epoll_fd, EPOLL_CTL_DEL, server, 0, 0));
	STEP("ADD EXCLUSIVE", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN | EPOLLEXCLUSIVE, 3));
	STEP("MOD of an EXCLUSIVE registration",
	     control(epoll_fd, EPOLL_CTL_MOD, server, EPOLLIN, 3));
	STEP("DEL", control(epoll_fd, EPOLL_CTL_DEL, server, 0, 0));
	STEP("ADD EXCLUSIVE|ONESHOT",
	     control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 4));
	STEP("epoll_ctl on a socket, not an epoll fd",
	     control(server, EPOLL_CTL_ADD, peer, EPOLLIN, 5));
	closed = dup(peer);
	close(closed);
	STEP("ADD a closed descriptor", control(epoll_fd, EPOLL_CTL_ADD, closed, EPOLLIN, 6));
	STEP("epoll_wait(maxevents 0)", epoll_wait(epoll_fd, NULL, 0, 0));
	STEP("epoll_wait on a socket", ({
		struct epoll_event event;
		epoll_wait(server, &event, 1, 0);
	}));
	STEP("epoll_create(0)", epoll_create(0));
	STEP("epoll_create1(bad flag)", epoll_create1(0x10));
	close(server);
	close(peer);
	close(epoll_fd);
}

static void scenario_epoll_et(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	char buf[100];
	long n;

	make_pair(&server, &peer, true);
	STEP("ADD IN|ET", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN | EPOLLET, 0x21));
	show_wait(epoll_fd, 16, 0, "wait(0) with nothing to read");
	peer_send(peer, "abc");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after the peer sent 3 bytes");
	show_wait(epoll_fd, 16, 0, "wait(0) again, edge already reported");
	n = STEP("read(1)", read(server, buf, 1));
	show_data("read", buf, n);
	show_wait(epoll_fd, 16, 0, "wait(0) with 2 bytes left, no new edge");
	peer_send(peer, "d");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after 1 more byte");
	await_bytes(server, 3);
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);
	STEP("read(100) drained", read(server, buf, 100));
	show_wait(epoll_fd, 16, 0, "wait(0) drained");
	STEP("MOD IN|OUT|ET", control(epoll_fd, EPOLL_CTL_MOD, server, EPOLLIN | EPOLLOUT | EPOLLET,
				      0x22));
	show_wait(epoll_fd, 16, 0, "wait(0) after MOD, writable");
	show_wait(epoll_fd, 16, 0, "wait(0) again, edge already reported");
	STEP("MOD IN|OUT|ET again", control(epoll_fd, EPOLL_CTL_MOD, server,
					    EPOLLIN | EPOLLOUT | EPOLLET, 0x23));
	show_wait(epoll_fd, 16, 0, "wait(0) after the second MOD");
	peer_send(peer, "e");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after 1 more byte");
	n = STEP("recv(100)", recv(server, buf, 100, 0));
	show_data("recv", buf, n);
	close(server);
	close(peer);
	close(epoll_fd);
}

static void scenario_epoll_oneshot(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	char buf[100];
	long n;

	make_pair(&server, &peer, true);
	STEP("ADD IN|ONESHOT", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN | EPOLLONESHOT, 0x31));
	peer_send(peer, "x");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after the peer sent 1 byte");
	show_wait(epoll_fd, 16, 0, "wait(0) disarmed, data waiting");
	peer_send(peer, "y");
	await_bytes(server, 2);
	show_wait(epoll_fd, 16, IDLE_TIMEOUT_MS, "wait(50 ms) disarmed, more data waiting");
	STEP("ADD while disarmed", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN, 0x32));
	STEP("MOD re-arm", control(epoll_fd, EPOLL_CTL_MOD, server, EPOLLIN | EPOLLONESHOT, 0x33));
	show_wait(epoll_fd, 16, 0, "wait(0) re-armed");
	show_wait(epoll_fd, 16, 0, "wait(0) disarmed again");
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);
	STEP("MOD re-arm IN|OUT", control(epoll_fd, EPOLL_CTL_MOD, server,
					  EPOLLIN | EPOLLOUT | EPOLLONESHOT, 0x34));
	show_wait(epoll_fd, 16, 0, "wait(0) re-armed, writable");
	STEP("DEL a disarmed registration", control(epoll_fd, EPOLL_CTL_DEL, server, 0, 0));
	close(server);
	close(peer);
	close(epoll_fd);
}

static void scenario_two_sets(void)
{
	int server, peer, level = epoll_create1(EPOLL_CLOEXEC), edge = epoll_create1(EPOLL_CLOEXEC);
	char buf[100];
	long n;

	make_pair(&server, &peer, true);
	STEP("ADD to the level set", control(level, EPOLL_CTL_ADD, server, EPOLLIN, 0x41));
	STEP("ADD to the edge set", control(edge, EPOLL_CTL_ADD, server, EPOLLIN | EPOLLET, 0x42));
	peer_send(peer, "z");
	show_wait(level, 16, READY_TIMEOUT_MS, "level set");
	show_wait(edge, 16, READY_TIMEOUT_MS, "edge set");
	show_wait(level, 16, 0, "level set again");
	show_wait(edge, 16, 0, "edge set again");
	STEP("DEL from the level set", control(level, EPOLL_CTL_DEL, server, 0, 0));
	show_wait(level, 16, 0, "level set after DEL");
	peer_send(peer, "w");
	show_wait(edge, 16, READY_TIMEOUT_MS, "edge set after 1 more byte");
	await_bytes(server, 2);
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);
	close(server);
	close(peer);
	close(level);
	close(edge);
}

/* Entries leave from the middle of a set and others take their places:
 * each still reports its own socket, later readiness included. */
static void scenario_set_reshuffle(void)
{
	int server[4], peer[4], epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	char buf[100];
	long n;

	for (int i = 0; i < 4; i++) {
		make_pair(&server[i], &peer[i], true);
		STEP("ADD", control(epoll_fd, EPOLL_CTL_ADD, server[i], EPOLLIN, 0x61 + (unsigned)i));
	}
	show_wait(epoll_fd, 16, 0, "wait(0) with nothing to read");
	STEP("DEL the first", control(epoll_fd, EPOLL_CTL_DEL, server[0], 0, 0));
	peer_send(peer[3], "d");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after the last one's peer sent");
	STEP("DEL the second", control(epoll_fd, EPOLL_CTL_DEL, server[1], 0, 0));
	show_wait(epoll_fd, 16, 0, "wait(0) after a DEL, the last one unread");
	peer_send(peer[2], "c");
	peer_send(peer[0], "a");
	await_bytes(server[2], 1);
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after the third's peer sent");
	n = STEP("read(100) the last", read(server[3], buf, 100));
	show_data("read", buf, n);
	show_wait(epoll_fd, 16, 0, "wait(0) with only the third unread");
	STEP("ADD the first again", control(epoll_fd, EPOLL_CTL_ADD, server[0], EPOLLIN, 0x71));
	await_bytes(server[0], 1);
	show_wait(epoll_fd, 16, 0, "wait(0) with the first back");
	STEP("MOD the third to EPOLLOUT", control(epoll_fd, EPOLL_CTL_MOD, server[2], EPOLLOUT, 0x73));
	show_wait(epoll_fd, 16, 0, "wait(0) after MOD");
	for (int i = 0; i < 4; i++) {
		close(server[i]);
		close(peer[i]);
	}
	close(epoll_fd);
}

static void scenario_close_registered(void)
{
	int server, peer, copy, epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	int second_server, second_peer;

	make_pair(&server, &peer, true);
	STEP("ADD", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN, 0x51));
	peer_send(peer, "q");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait with data");
	STEP("close while registered", close(server));
	show_wait(epoll_fd, 16, 0, "wait(0) after close");
	/* The next connection may get the same number: it is not registered. */
	make_pair(&second_server, &second_peer, true);
	STEP("ADD the next socket", control(epoll_fd, EPOLL_CTL_ADD, second_server, EPOLLIN, 0x52));
	show_wait(epoll_fd, 16, 0, "wait(0), nothing sent yet");
	/* A registration belongs to the open file: it outlives the fd number
	 * while a duplicate keeps the file open. */
	copy = dup(second_server);
	STEP("close the registered number, a dup still open", close(second_server));
	peer_send(second_peer, "r");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after data on the dup's file");
	STEP("DEL by the closed number", control(epoll_fd, EPOLL_CTL_DEL, second_server, 0, 0));
	STEP("DEL by the dup's number", control(epoll_fd, EPOLL_CTL_DEL, copy, 0, 0));
	STEP("close the dup", close(copy));
	show_wait(epoll_fd, 16, 0, "wait(0) after the last close");
	close(peer);
	close(second_peer);
	close(epoll_fd);
}

static void scenario_nested(void)
{
	int server, peer, inner = epoll_create1(EPOLL_CLOEXEC), outer = epoll_create1(EPOLL_CLOEXEC);
	char buf[100];
	long n;

	make_pair(&server, &peer, true);
	STEP("ADD the socket to the inner set", control(inner, EPOLL_CTL_ADD, server, EPOLLIN, 0x61));
	STEP("ADD the inner set to the outer", control(outer, EPOLL_CTL_ADD, inner, EPOLLIN, 0x62));
	show_wait(outer, 16, 0, "outer, nothing ready");
	peer_send(peer, "n");
	show_wait(outer, 16, READY_TIMEOUT_MS, "outer after data");
	show_wait(inner, 16, 0, "inner");
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);
	show_wait(outer, 16, 0, "outer drained");
	close(server);
	close(peer);
	close(inner);
	close(outer);
}

static void scenario_mixed(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	int event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), pipe_ends[2];
	uint64_t value = 1;
	char buf[100];
	long n;

	if (pipe2(pipe_ends, O_CLOEXEC | O_NONBLOCK) != 0 || event_fd < 0)
		die("pipe2 or eventfd: %s", strerror(errno));
	make_pair(&server, &peer, true);
	STEP("ADD socket", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN, 0x71));
	STEP("ADD eventfd", control(epoll_fd, EPOLL_CTL_ADD, event_fd, EPOLLIN, 0x72));
	STEP("ADD pipe read end", control(epoll_fd, EPOLL_CTL_ADD, pipe_ends[0], EPOLLIN, 0x73));
	STEP("ADD pipe write end", control(epoll_fd, EPOLL_CTL_ADD, pipe_ends[1], EPOLLOUT, 0x74));
	show_wait(epoll_fd, 16, 0, "wait(0), only the pipe is writable");
	STEP("MOD pipe write end to IN", control(epoll_fd, EPOLL_CTL_MOD, pipe_ends[1], EPOLLIN, 0x74));
	show_wait(epoll_fd, 16, IDLE_TIMEOUT_MS, "wait(50 ms), nothing ready");
	STEP("write(eventfd)", write(event_fd, &value, sizeof(value)));
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait, the eventfd is ready");
	peer_send(peer, "s");
	/* The eventfd is ready already: the wait must not beat the data. */
	await_bytes(server, 1);
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait, eventfd and socket ready");
	STEP("read(eventfd)", read(event_fd, &value, sizeof(value)));
	STEP("write(pipe)", write(pipe_ends[1], "p", 1));
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait, pipe and socket ready");
	n = STEP("read(socket)", read(server, buf, 100));
	show_data("read", buf, n);
	n = STEP("read(pipe)", read(pipe_ends[0], buf, 100));
	show_data("read", buf, n);
	show_wait(epoll_fd, 16, 0, "wait(0), all drained");
	/* The same set through poll and select. */
	{
		struct pollfd fds[3] = {
			{ .fd = server, .events = POLLIN },
			{ .fd = event_fd, .events = POLLIN },
			{ .fd = pipe_ends[1], .events = POLLOUT },
		};

		show_poll(fds, 3, 0, "poll(0) socket, eventfd, pipe write end");
		peer_send(peer, "t");
		value = 5;
		STEP("write(eventfd)", write(event_fd, &value, sizeof(value)));
		await_bytes(server, 1);
		show_poll(fds, 2, READY_TIMEOUT_MS, "poll socket and eventfd, both ready");
		show_poll(fds, 3, READY_TIMEOUT_MS, "poll all three");
	}
	close(server);
	close(peer);
	close(event_fd);
	close(pipe_ends[0]);
	close(pipe_ends[1]);
	close(epoll_fd);
}

static void scenario_rdhup(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	struct pollfd fds[1];
	char buf[100];
	long n;

	make_pair(&server, &peer, true);
	STEP("ADD IN|RDHUP", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN | EPOLLRDHUP, 0x81));
	peer_send(peer, "last");
	STEP("peer shutdown(SHUT_WR)", shutdown(peer, SHUT_WR));
	await_bytes(server, 4);
	await_poll(server, POLLIN | POLLRDHUP);
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after data and FIN");
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);
	STEP("read(100) at end of file", read(server, buf, 100));
	show_wait(epoll_fd, 16, 0, "wait(0) at end of file");
	fds[0] = (struct pollfd){ .fd = server, .events = POLLIN | POLLOUT | POLLRDHUP };
	show_poll(fds, 1, 0, "poll(0) IN|OUT|RDHUP at end of file");
	STEP("MOD IN|OUT|RDHUP", control(epoll_fd, EPOLL_CTL_MOD, server,
					 EPOLLIN | EPOLLOUT | EPOLLRDHUP, 0x82));
	STEP("write(bye)", write(server, "bye", 3));
	peer_receive(peer, buf, 3);
	show_data("peer received", buf, 3);
	STEP("shutdown(SHUT_WR)", shutdown(server, SHUT_WR));
	show_wait(epoll_fd, 16, 0, "wait(0) both sides shut");
	show_poll(fds, 1, 0, "poll(0) both sides shut");
	STEP("peer read at end of file", read(peer, buf, 100));
	STEP("write after shutdown", send(server, "x", 1, MSG_NOSIGNAL));
	close(server);
	close(peer);
	close(epoll_fd);
}

static void scenario_reset(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC), error = -1;
	socklen_t length = sizeof(error);
	struct pollfd fds[1];
	char buf[100];

	make_pair(&server, &peer, true);
	STEP("ADD IN|OUT|RDHUP", control(epoll_fd, EPOLL_CTL_ADD, server,
					 EPOLLIN | EPOLLOUT | EPOLLRDHUP, 0x91));
	show_wait(epoll_fd, 16, 0, "wait(0) open connection");
	reset_peer(peer);
	/* Wait for the reset itself: an error is reported with it. */
	await_poll(server, POLLERR);
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after the peer reset");
	fds[0] = (struct pollfd){ .fd = server, .events = POLLIN | POLLOUT | POLLRDHUP };
	show_poll(fds, 1, 0, "poll(0) after the reset");
	STEP("getsockopt(SO_ERROR)", getsockopt(server, SOL_SOCKET, SO_ERROR, &error, &length));
	say("SO_ERROR %s", error ? strerrorname_np(error) : "0");
	show_wait(epoll_fd, 16, 0, "wait(0) after SO_ERROR was read");
	STEP("read(100) after the reset", read(server, buf, 100));
	STEP("send(1) after the reset", send(server, "x", 1, MSG_NOSIGNAL));
	show_poll(fds, 1, 0, "poll(0) at the end");
	close(server);
	close(epoll_fd);

	/* A reset while data is still unread: the data is gone. */
	make_pair(&server, &peer, true);
	peer_send(peer, "unread");
	await_bytes(server, 6);
	reset_peer(peer);
	await_poll(server, POLLERR);
	fds[0] = (struct pollfd){ .fd = server, .events = POLLIN | POLLOUT | POLLRDHUP };
	show_poll(fds, 1, 0, "poll(0) after a reset with data unread");
	STEP("read(100) after a reset with data unread", read(server, buf, 100));
	STEP("read(100) again", read(server, buf, 100));
	close(server);
}

static void scenario_poll(void)
{
	int server, peer, closed;
	struct pollfd fds[4];
	struct timespec timeout = { .tv_nsec = IDLE_TIMEOUT_MS * 1000000L };
	struct pollfd *volatile bad_pollfds = NULL;
	char buf[100];
	long n;

	make_pair(&server, &peer, true);
	closed = dup(peer);
	close(closed);
	fds[0] = (struct pollfd){ .fd = server, .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = -1, .events = POLLIN };
	fds[2] = (struct pollfd){ .fd = closed, .events = POLLIN };
	fds[3] = (struct pollfd){ .fd = server, .events = POLLOUT };
	show_poll(fds, 1, IDLE_TIMEOUT_MS, "poll(50 ms) nothing to read");
	show_poll(fds, 4, 0, "poll(0) with a negative fd, a closed fd and the socket twice");
	show_poll(fds, 0, 0, "poll(0) of no entries");
	peer_send(peer, "data");
	show_poll(fds, 1, READY_TIMEOUT_MS, "poll after the peer sent");
	fds[0].events = 0;
	show_poll(fds, 1, 0, "poll(0) asking for no events");
	fds[0].events = POLLIN | POLLPRI | POLLRDNORM | POLLRDBAND;
	show_poll(fds, 1, 0, "poll(0) IN|PRI|RDNORM|RDBAND");
	fds[0].events = POLLIN;
	n = STEP("ppoll(50 ms) ready", ppoll(fds, 1, &timeout, NULL));
	say("  revents %s", poll_names(fds[0].revents));
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);
	n = STEP("ppoll(50 ms) drained", ppoll(fds, 1, &timeout, NULL));
	say("  timeout left %ld.%09ld", (long)timeout.tv_sec, timeout.tv_nsec);
	STEP("poll(bad address)", poll(bad_pollfds, 1, 0));
	close(server);
	close(peer);
}

static void show_fd_bit(const char *what, const fd_set *set, int fd)
{
	say("  %s %s", what, FD_ISSET(fd, set) ? "set" : "clear");
}

static void scenario_select(void)
{
	int server, peer, pipe_ends[2];
	fd_set readable, writable, exceptional;
	struct timeval timeout;
	struct timespec timeout_ns = { .tv_nsec = IDLE_TIMEOUT_MS * 1000000L };
	char buf[100];
	long n;
	int highest;

	if (pipe2(pipe_ends, O_CLOEXEC | O_NONBLOCK) != 0)
		die("pipe2: %s", strerror(errno));
	make_pair(&server, &peer, true);
	highest = server > pipe_ends[1] ? server : pipe_ends[1];

	FD_ZERO(&readable);
	FD_SET(server, &readable);
	FD_SET(pipe_ends[0], &readable);
	timeout = (struct timeval){ .tv_usec = IDLE_TIMEOUT_MS * 1000 };
	STEP("select(50 ms) nothing to read", select(highest + 1, &readable, NULL, NULL, &timeout));
	show_fd_bit("socket readable", &readable, server);
	say("  timeout left %ld.%06ld", (long)timeout.tv_sec, (long)timeout.tv_usec);

	FD_ZERO(&readable);
	FD_ZERO(&writable);
	FD_ZERO(&exceptional);
	FD_SET(server, &readable);
	FD_SET(server, &writable);
	FD_SET(server, &exceptional);
	FD_SET(pipe_ends[0], &readable);
	FD_SET(pipe_ends[1], &writable);
	timeout = (struct timeval){ .tv_sec = 5 };
	STEP("select socket and pipe, writable only",
	     select(highest + 1, &readable, &writable, &exceptional, &timeout));
	show_fd_bit("socket readable", &readable, server);
	show_fd_bit("socket writable", &writable, server);
	show_fd_bit("socket exceptional", &exceptional, server);
	show_fd_bit("pipe readable", &readable, pipe_ends[0]);
	show_fd_bit("pipe writable", &writable, pipe_ends[1]);

	peer_send(peer, "sel");
	if (write(pipe_ends[1], "p", 1) != 1)
		die("write(pipe): %s", strerror(errno));
	/* The pipe is ready at once: the select must not beat the data. */
	await_bytes(server, 3);
	FD_ZERO(&readable);
	FD_SET(server, &readable);
	FD_SET(pipe_ends[0], &readable);
	timeout = (struct timeval){ .tv_sec = 5 };
	STEP("select after data on both", select(highest + 1, &readable, NULL, NULL, &timeout));
	show_fd_bit("socket readable", &readable, server);
	show_fd_bit("pipe readable", &readable, pipe_ends[0]);
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);

	FD_ZERO(&readable);
	FD_SET(server, &readable);
	STEP("pselect(50 ms) drained socket",
	     pselect(server + 1, &readable, NULL, NULL, &timeout_ns, NULL));
	show_fd_bit("socket readable", &readable, server);
	say("  timeout left %ld.%09ld (pselect leaves it)", (long)timeout_ns.tv_sec,
	    timeout_ns.tv_nsec);

	FD_ZERO(&readable);
	FD_SET(server, &readable);
	timeout = (struct timeval){ .tv_sec = 0 };
	STEP("select nfds below the socket", select(server, &readable, NULL, NULL, &timeout));
	show_fd_bit("socket readable", &readable, server);
	STEP("select(-1)", select(-1, NULL, NULL, NULL, &timeout));
	timeout = (struct timeval){ .tv_usec = -1 };
	STEP("select(bad timeout)", select(1, NULL, NULL, NULL, &timeout));
	close(server);
	close(peer);
	close(pipe_ends[0]);
	close(pipe_ends[1]);
}

/*
 * Bitmaps beyond FD_SETSIZE: the kernel reads and writes exactly nfds bits
 * (rounded up to whole words), however large, and nothing after them.  The
 * socket under test gets a number above FD_SETSIZE; the bitmaps are words
 * of our own, followed by guard words that must come back untouched.
 */
#define BIG_WORDS   ((FD_SETSIZE * 2) / (8 * (int)sizeof(unsigned long)))
#define GUARD_WORDS 8
#define GUARD       0xa5a5a5a5a5a5a5a5ul
#define WORD_BITS   (8 * (int)sizeof(unsigned long))

static void bit_set(unsigned long *words, int fd)
{
	words[fd / WORD_BITS] |= 1ul << (fd % WORD_BITS);
}

static bool bit_test(const unsigned long *words, int fd)
{
	return words[fd / WORD_BITS] & (1ul << (fd % WORD_BITS));
}

static void scenario_fd_setsize(void)
{
	int server, peer, high, filler[FD_SETSIZE + 64], filler_count = 0;
	unsigned long readable[BIG_WORDS + GUARD_WORDS], writable[BIG_WORDS + GUARD_WORDS];
	struct timeval timeout;
	bool guards_intact = true;
	int nfds, word_count;
	char buf[100];
	long n;

	/* Push the next descriptor numbers above FD_SETSIZE. */
	while (filler_count < FD_SETSIZE + 8) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			die("open(/dev/null): %s (raise the descriptor limit)", strerror(errno));
		filler[filler_count++] = fd;
		if (fd >= FD_SETSIZE + 8)
			break;
	}
	make_pair(&server, &peer, true);
	say("socket number above FD_SETSIZE: %s", server >= FD_SETSIZE ? "yes" : "no");
	high = server;
	nfds = high + 1;
	word_count = (nfds + WORD_BITS - 1) / WORD_BITS;

	for (int i = 0; i < BIG_WORDS + GUARD_WORDS; i++)
		readable[i] = writable[i] = i < word_count ? 0 : GUARD;
	bit_set(readable, high);
	bit_set(writable, high);
	timeout = (struct timeval){ .tv_sec = 5 };
	STEP("select above FD_SETSIZE, writable",
	     select(nfds, (fd_set *)readable, (fd_set *)writable, NULL, &timeout));
	say("  readable %s writable %s", bit_test(readable, high) ? "set" : "clear",
	    bit_test(writable, high) ? "set" : "clear");
	peer_send(peer, "high");
	for (int i = 0; i < word_count; i++)
		readable[i] = 0;
	bit_set(readable, high);
	timeout = (struct timeval){ .tv_sec = 5 };
	STEP("select above FD_SETSIZE after data", select(nfds, (fd_set *)readable, NULL, NULL, &timeout));
	say("  readable %s", bit_test(readable, high) ? "set" : "clear");
	for (int i = word_count; i < BIG_WORDS + GUARD_WORDS; i++)
		if (readable[i] != GUARD || writable[i] != GUARD)
			guards_intact = false;
	say("words after nfds bits untouched: %s", guards_intact ? "yes" : "no");
	await_bytes(server, 4);
	n = STEP("read(100)", read(server, buf, 100));
	show_data("read", buf, n);

	/* An ordinary fd_set and nfds = FD_SETSIZE: the high socket is not
	 * in it, and nothing after the set is written. */
	{
		struct {
			fd_set set;
			unsigned long guard[GUARD_WORDS];
		} bounded;
		int low_server, low_peer;

		for (int i = 0; i < filler_count; i++)
			close(filler[i]);
		filler_count = 0;
		make_pair(&low_server, &low_peer, true);
		peer_send(low_peer, "low");
		await_bytes(low_server, 3);
		FD_ZERO(&bounded.set);
		FD_SET(low_server, &bounded.set);
		for (int i = 0; i < GUARD_WORDS; i++)
			bounded.guard[i] = GUARD;
		peer_send(peer, "more");
		timeout = (struct timeval){ .tv_sec = 5 };
		STEP("select(FD_SETSIZE) of a low socket",
		     select(FD_SETSIZE, &bounded.set, NULL, NULL, &timeout));
		show_fd_bit("low socket readable", &bounded.set, low_server);
		guards_intact = true;
		for (int i = 0; i < GUARD_WORDS; i++)
			if (bounded.guard[i] != GUARD)
				guards_intact = false;
		say("words after the fd_set untouched: %s", guards_intact ? "yes" : "no");
		close(low_server);
		close(low_peer);
	}
	close(server);
	close(peer);
}

static void scenario_nonblocking(void)
{
	int server, peer, available = -1;
	char buf[100];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr message = { .msg_iov = &iov, .msg_iovlen = 1 };
	long n;

	make_pair(&server, &peer, true);
	STEP("read when empty", read(server, buf, 100));
	STEP("recv when empty", recv(server, buf, 100, 0));
	STEP("recvfrom when empty", recvfrom(server, buf, 100, 0, NULL, NULL));
	STEP("recvmsg when empty", recvmsg(server, &message, 0));
	STEP("readv when empty", readv(server, &iov, 1));
	STEP("recv(MSG_PEEK) when empty", recv(server, buf, 100, MSG_PEEK));
	STEP("recv(MSG_WAITALL) when empty", recv(server, buf, 100, MSG_WAITALL));
	STEP("ioctl(FIONREAD) when empty", ioctl(server, FIONREAD, &available));
	say("  FIONREAD %d", available);
	peer_send(peer, "peekaboo");
	await_bytes(server, 8);
	STEP("ioctl(FIONREAD)", ioctl(server, FIONREAD, &available));
	say("  FIONREAD %d", available);
	n = STEP("recv(4, MSG_PEEK)", recv(server, buf, 4, MSG_PEEK));
	show_data("peek", buf, n);
	n = STEP("recv(100, MSG_PEEK)", recv(server, buf, 100, MSG_PEEK));
	show_data("peek", buf, n);
	n = STEP("read(4)", read(server, buf, 4));
	show_data("read", buf, n);
	STEP("ioctl(FIONREAD)", ioctl(server, FIONREAD, &available));
	say("  FIONREAD %d", available);
	n = STEP("recv(100, MSG_WAITALL) with 4 bytes there", recv(server, buf, 100, MSG_WAITALL));
	show_data("recv", buf, n);
	STEP("recv(MSG_DONTWAIT) when empty", recv(server, buf, 100, MSG_DONTWAIT));
	peer_send(peer, "vec");
	await_bytes(server, 3);
	{
		char first[2], second[10];
		struct iovec parts[2] = { { first, 2 }, { second, 10 } };

		n = STEP("readv(2 + 10)", readv(server, parts, 2));
		show_data("readv first", first, 2);
		show_data("readv second", second, n - 2);
	}
	STEP("fcntl(F_SETFL, 0)", fcntl(server, F_SETFL, fcntl(server, F_GETFL) & ~O_NONBLOCK));
	STEP("recv(MSG_DONTWAIT) on the now blocking socket", recv(server, buf, 100, MSG_DONTWAIT));
	{
		struct later_send later = { .fd = peer, .text = "wait" };
		pthread_t thread = send_later(&later);

		n = STEP("recv(4, MSG_WAITALL) blocking, 4 bytes come later",
			 recv(server, buf, 4, MSG_WAITALL));
		show_data("recv", buf, n);
		pthread_join(thread, NULL);
	}
	{
		struct later_send later = { .fd = peer, .text = "ab", .shut = true };
		pthread_t thread = send_later(&later);

		n = STEP("recv(10, MSG_WAITALL) blocking, 2 bytes then FIN",
			 recv(server, buf, 10, MSG_WAITALL));
		show_data("recv", buf, n);
		pthread_join(thread, NULL);
	}
	STEP("read at end of file", read(server, buf, 100));
	STEP("recv(MSG_DONTWAIT) at end of file", recv(server, buf, 100, MSG_DONTWAIT));
	close(server);
	close(peer);
}

/* The server end's writes go nowhere: the peer does not read. */
static void scenario_full_send(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	static char chunk[65536], sink[65536];
	unsigned long long total = 0, drained = 0;
	struct pollfd fds[1];
	bool blocked = false;
	long n;

	memset(chunk, 'f', sizeof(chunk));
	make_pair(&server, &peer, true);
	STEP("ADD OUT", control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLOUT, 0xa1));
	show_wait(epoll_fd, 16, 0, "wait(0) writable");
	/* Bounded: a send buffer never holds 1 GiB. */
	while (total < (1ull << 30)) {
		ssize_t sent = send(server, chunk, sizeof(chunk), MSG_NOSIGNAL);

		if (sent < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				blocked = true;
			else
				say("send failed: %s", strerrorname_np(errno));
			break;
		}
		total += (unsigned long long)sent;
	}
	say("sends until EAGAIN: %s", blocked ? "EAGAIN" : "never blocked");
	STEP("send(1) when full", send(server, "x", 1, MSG_NOSIGNAL));
	STEP("write(1) when full", write(server, "x", 1));
	show_wait(epoll_fd, 16, 0, "wait(0) full");
	fds[0] = (struct pollfd){ .fd = server, .events = POLLOUT };
	show_poll(fds, 1, IDLE_TIMEOUT_MS, "poll(50 ms) OUT full");
	/* The peer takes everything; the sender becomes writable again. */
	while (drained < total) {
		size_t want = total - drained < sizeof(sink) ? (size_t)(total - drained) : sizeof(sink);

		peer_receive(peer, sink, want);
		for (size_t i = 0; i < want; i++)
			if (sink[i] != 'f')
				die("full_send: byte %llu is 0x%02x", drained + i, (unsigned char)sink[i]);
		drained += want;
	}
	say("peer received everything sent: yes");
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "wait after the peer read everything");
	n = STEP("send(5) again", send(server, "again", 5, MSG_NOSIGNAL));
	peer_receive(peer, sink, 5);
	show_data("peer received", sink, 5);
	close(server);
	close(peer);
	close(epoll_fd);
	(void)n;
}

static void scenario_max_events(void)
{
	int first_server, first_peer, second_server, second_peer;
	int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event event;
	uint64_t seen = 0;

	make_pair(&first_server, &first_peer, true);
	make_pair(&second_server, &second_peer, true);
	STEP("ADD first", control(epoll_fd, EPOLL_CTL_ADD, first_server, EPOLLIN, 0xb1));
	STEP("ADD second", control(epoll_fd, EPOLL_CTL_ADD, second_server, EPOLLIN, 0xb2));
	peer_send(first_peer, "1");
	peer_send(second_peer, "2");
	await_bytes(first_server, 1);
	await_bytes(second_server, 1);
	/* Level-triggered events rotate: two calls of one event each see both. */
	for (int call = 0; call < 2; call++) {
		int count = epoll_wait(epoll_fd, &event, 1, READY_TIMEOUT_MS);

		say("epoll_wait(maxevents 1) = %d", count);
		if (count == 1)
			seen |= event.data.u64 == 0xb1 ? 1 : event.data.u64 == 0xb2 ? 2 : 4;
	}
	say("two calls saw %s", seen == 3 ? "both sockets" : seen == 1 || seen == 2 ? "one socket twice"
							      : "unexpected data");
	show_wait(epoll_fd, 16, 0, "wait(0) maxevents 16");
	{
		struct timespec timeout = { .tv_nsec = IDLE_TIMEOUT_MS * 1000000L };
		struct epoll_event events[4];
		int count = epoll_pwait2(epoll_fd, events, 4, &timeout, NULL);

		record("epoll_pwait2(50 ms) both ready", count, errno);
	}
	close(first_server);
	close(first_peer);
	close(second_server);
	close(second_peer);
	close(epoll_fd);
}

static void on_usr1(int signal_number)
{
	usr1_count++;
}

/* A pending signal the wait's mask lets through interrupts it at once. */
static void scenario_sigmask(void)
{
	int server, peer, epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	sigset_t blocked, wait_mask, saved;
	struct sigaction action;
	struct epoll_event event;
	struct pollfd fds[1];
	struct timespec timeout = { .tv_sec = 5 };
	fd_set readable;

	memset(&action, 0, sizeof(action));
	action.sa_handler = on_usr1;
	sigemptyset(&action.sa_mask);
	sigaction(SIGUSR1, &action, NULL);
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &blocked, &saved);
	sigprocmask(SIG_SETMASK, NULL, &wait_mask);
	sigdelset(&wait_mask, SIGUSR1);

	make_pair(&server, &peer, true);
	control(epoll_fd, EPOLL_CTL_ADD, server, EPOLLIN, 0xc1);
	fds[0] = (struct pollfd){ .fd = server, .events = POLLIN };

	raise(SIGUSR1);
	STEP_ONCE("epoll_pwait, SIGUSR1 pending and let through",
		  epoll_pwait(epoll_fd, &event, 1, READY_TIMEOUT_MS, &wait_mask));
	say("  handler ran %d times", (int)usr1_count);
	raise(SIGUSR1);
	STEP_ONCE("ppoll, SIGUSR1 pending and let through", ppoll(fds, 1, &timeout, &wait_mask));
	say("  handler ran %d times", (int)usr1_count);
	raise(SIGUSR1);
	FD_ZERO(&readable);
	FD_SET(server, &readable);
	STEP_ONCE("pselect, SIGUSR1 pending and let through",
		  pselect(server + 1, &readable, NULL, NULL, &timeout, &wait_mask));
	say("  handler ran %d times", (int)usr1_count);
	raise(SIGUSR1);
	STEP_ONCE("epoll_pwait, SIGUSR1 pending and kept blocked, 50 ms",
		  epoll_pwait(epoll_fd, &event, 1, IDLE_TIMEOUT_MS, NULL));
	say("  handler ran %d times", (int)usr1_count);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	say("  after unblocking, handler ran %d times", (int)usr1_count);
	close(server);
	close(peer);
	close(epoll_fd);
}

/* The socket moves to another thread's event loop while its first one
 * keeps running (haproxy hands a server connection to the thread that
 * takes it over): the new loop's wait sees what arrives, as with the
 * kernel, without waiting for anything else to happen.  Only the moving
 * thread prints; the first loop's waits find nothing. */
/* The peer sends text; a wait on the set reports it, and a read takes it. */
static void sent_then_read(int epoll_fd, int server, int peer, const char *text,
			   const char *wait_step, const char *read_step)
{
	char buf[100];
	long n;

	peer_send(peer, text);
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, wait_step);
	n = STEP(read_step, read(server, buf, 100));
	show_data("read", buf, n);
}

struct moved_socket {
	int server;
	int peer;
	_Atomic bool done;
};

static void *moved_socket_thread(void *argument)
{
	struct moved_socket *moved = argument;
	int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	char buf[100];

	STEP("ADD to the second thread's set", control(epoll_fd, EPOLL_CTL_ADD, moved->server, EPOLLIN, 0x83));
	sent_then_read(epoll_fd, moved->server, moved->peer, "two", "second thread's wait after the peer sent",
		       "read(100) on the second thread");
	STEP("read(100) when empty", read(moved->server, buf, 100));
	sent_then_read(epoll_fd, moved->server, moved->peer, "three", "second thread's wait after the peer sent again",
		       "read(100) on the second thread");
	close(epoll_fd);
	atomic_store(&moved->done, true);
	return NULL;
}

static void scenario_moved_socket(void)
{
	int epoll_fd = epoll_create1(EPOLL_CLOEXEC), other, other_peer;
	struct moved_socket moved = { .done = false };
	struct epoll_event events[4];
	pthread_t thread;
	int stray = 0;
	char buf[100];

	make_pair(&moved.server, &moved.peer, true);
	make_pair(&other, &other_peer, true);
	STEP("ADD", control(epoll_fd, EPOLL_CTL_ADD, moved.server, EPOLLIN, 0x81));
	STEP("ADD another socket", control(epoll_fd, EPOLL_CTL_ADD, other, EPOLLIN, 0x82));
	sent_then_read(epoll_fd, moved.server, moved.peer, "one", "first thread's wait after the peer sent",
		       "read(100)");
	STEP("read(100) when empty", read(moved.server, buf, 100));
	show_wait(epoll_fd, 16, 0, "wait(0) drained");
	STEP("DEL", control(epoll_fd, EPOLL_CTL_DEL, moved.server, 0, 0));
	if (pthread_create(&thread, NULL, moved_socket_thread, &moved) != 0)
		die("pthread_create failed");
	/* The first loop goes on waiting on its own set meanwhile. */
	while (!atomic_load(&moved.done)) {
		int found = epoll_wait(epoll_fd, events, 4, IDLE_TIMEOUT_MS);

		if (found > 0)
			stray += found;
	}
	pthread_join(thread, NULL);
	say("first thread's waits meanwhile reported %d events", stray);
	close(moved.server);
	close(moved.peer);
	close(other);
	close(other_peer);
	close(epoll_fd);
}

/* The same with poll: a socket one thread polled and read is polled by
 * another, while the first goes on polling a socket of its own. */
static void *polled_elsewhere_thread(void *argument)
{
	struct moved_socket *moved = argument;
	struct pollfd entry = { .fd = moved->server, .events = POLLIN };
	char buf[100];
	long n;

	peer_send(moved->peer, "two");
	show_poll(&entry, 1, READY_TIMEOUT_MS, "second thread's poll after the peer sent");
	n = STEP("read(100) on the second thread", read(moved->server, buf, 100));
	show_data("read", buf, n);
	STEP("read(100) when empty", read(moved->server, buf, 100));
	peer_send(moved->peer, "three");
	show_poll(&entry, 1, READY_TIMEOUT_MS, "second thread's poll after the peer sent again");
	n = STEP("read(100) on the second thread", read(moved->server, buf, 100));
	show_data("read", buf, n);
	atomic_store(&moved->done, true);
	return NULL;
}

static void scenario_polled_elsewhere(void)
{
	struct moved_socket moved = { .done = false };
	struct pollfd mine, theirs;
	pthread_t thread;
	int other, other_peer, stray = 0;
	char buf[100];
	long n;

	make_pair(&moved.server, &moved.peer, true);
	make_pair(&other, &other_peer, true);
	theirs = (struct pollfd){ .fd = moved.server, .events = POLLIN };
	peer_send(moved.peer, "one");
	show_poll(&theirs, 1, READY_TIMEOUT_MS, "first thread's poll after the peer sent");
	n = STEP("read(100)", read(moved.server, buf, 100));
	show_data("read", buf, n);
	STEP("read(100) when empty", read(moved.server, buf, 100));
	show_poll(&theirs, 1, 0, "poll(0) drained");
	if (pthread_create(&thread, NULL, polled_elsewhere_thread, &moved) != 0)
		die("pthread_create failed");
	while (!atomic_load(&moved.done)) {
		mine = (struct pollfd){ .fd = other, .events = POLLIN };
		if (poll(&mine, 1, IDLE_TIMEOUT_MS) > 0)
			stray++;
	}
	pthread_join(thread, NULL);
	say("first thread's polls meanwhile reported %d ready", stray);
	close(moved.server);
	close(moved.peer);
	close(other);
	close(other_peer);
}

/* Another thread adds sockets to the set a loop waits on, and then blocks
 * where the shim does not see it (an acceptor back in accept): the loop's
 * wait, begun on an empty set or not, reports them as soon as they are
 * ready.  The adding thread prints only while the loop is in a wait that
 * its steps end. */
struct added_elsewhere {
	int epoll_fd;
	int sockets[2];
	int peers[2];
	int go[2];     /* the loop tells the adding thread to go on */
};

static void await_go(int fd)
{
	char byte;

	if (read(fd, &byte, 1) != 1)
		die("reading the go pipe: %s", strerror(errno));
}

static void give_go(int fd)
{
	if (write(fd, "g", 1) != 1)
		die("writing the go pipe: %s", strerror(errno));
}

static void *added_elsewhere_thread(void *argument)
{
	struct added_elsewhere *added = argument;

	usleep(50000);
	STEP("ADD from another thread", control(added->epoll_fd, EPOLL_CTL_ADD, added->sockets[0], EPOLLIN, 0x91));
	peer_send(added->peers[0], "one");
	await_go(added->go[0]);
	usleep(50000);
	STEP("ADD another from another thread", control(added->epoll_fd, EPOLL_CTL_ADD, added->sockets[1], EPOLLIN, 0x92));
	peer_send(added->peers[1], "two");
	await_go(added->go[0]);
	return NULL;
}

static void scenario_added_elsewhere(void)
{
	struct added_elsewhere added = { .epoll_fd = epoll_create1(EPOLL_CLOEXEC) };
	pthread_t thread;
	char buf[100];
	long n;

	for (int i = 0; i < 2; i++)
		make_pair(&added.sockets[i], &added.peers[i], true);
	if (pipe(added.go) != 0 || pthread_create(&thread, NULL, added_elsewhere_thread, &added) != 0)
		die("pipe or pthread_create failed");
	show_wait(added.epoll_fd, 16, READY_TIMEOUT_MS, "wait on an empty set, a socket added meanwhile");
	n = STEP("read(100)", read(added.sockets[0], buf, 100));
	show_data("read", buf, n);
	STEP("read(100) when empty", read(added.sockets[0], buf, 100));
	give_go(added.go[1]);
	show_wait(added.epoll_fd, 16, READY_TIMEOUT_MS, "wait, another socket added meanwhile");
	n = STEP("read(100) the other", read(added.sockets[1], buf, 100));
	show_data("read", buf, n);
	sent_then_read(added.epoll_fd, added.sockets[0], added.peers[0], "three", "wait after the first one's peer sent again",
		       "read(100)");
	give_go(added.go[1]);
	pthread_join(thread, NULL);
	for (int i = 0; i < 2; i++) {
		close(added.sockets[i]);
		close(added.peers[i]);
		close(added.go[i]);
	}
	close(added.epoll_fd);
}

/* A connection passed between two loops, each with a pipe of its own in
 * its set (the hand-over's wake-up), the way a server balancing its
 * threads does: the loop that gave it away waits on a set with its pipe
 * alone while the other takes it.  Only the holder prints. */
struct passed_between {
	int server;
	int peer;
	int to_second[2];
	int to_first[2];
};

static void *passed_between_thread(void *argument)
{
	struct passed_between *passed = argument;
	int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event event;
	char buf[100];

	control(epoll_fd, EPOLL_CTL_ADD, passed->to_second[0], EPOLLIN, 0xb2);
	while (epoll_wait(epoll_fd, &event, 1, -1) != 1)
		;
	await_go(passed->to_second[0]);
	STEP("ADD to the second loop's set", control(epoll_fd, EPOLL_CTL_ADD, passed->server, EPOLLIN, 0xb1));
	sent_then_read(epoll_fd, passed->server, passed->peer, "m1", "second loop's wait after the peer sent",
		       "read(100) on the second loop");
	STEP("read(100) when empty", read(passed->server, buf, 100));
	STEP("DEL from the second loop's set", control(epoll_fd, EPOLL_CTL_DEL, passed->server, 0, 0));
	give_go(passed->to_first[1]);
	close(epoll_fd);
	return NULL;
}

static void scenario_passed_between(void)
{
	struct passed_between passed;
	int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	pthread_t thread;
	char buf[100];

	make_pair(&passed.server, &passed.peer, true);
	if (pipe(passed.to_second) != 0 || pipe(passed.to_first) != 0 ||
	    pthread_create(&thread, NULL, passed_between_thread, &passed) != 0)
		die("pipe or pthread_create failed");
	STEP("ADD", control(epoll_fd, EPOLL_CTL_ADD, passed.server, EPOLLIN, 0xa1));
	STEP("ADD the first loop's pipe", control(epoll_fd, EPOLL_CTL_ADD, passed.to_first[0], EPOLLIN, 0xa2));
	sent_then_read(epoll_fd, passed.server, passed.peer, "m0", "first loop's wait after the peer sent",
		       "read(100)");
	STEP("read(100) when empty", read(passed.server, buf, 100));
	STEP("DEL", control(epoll_fd, EPOLL_CTL_DEL, passed.server, 0, 0));
	give_go(passed.to_second[1]);
	show_wait(epoll_fd, 16, READY_TIMEOUT_MS, "first loop's wait, its pipe alone in its set");
	await_go(passed.to_first[0]);
	pthread_join(thread, NULL);
	STEP("ADD back", control(epoll_fd, EPOLL_CTL_ADD, passed.server, EPOLLIN, 0xa3));
	sent_then_read(epoll_fd, passed.server, passed.peer, "m2", "first loop's wait after the peer sent again",
		       "read(100)");
	close(passed.server);
	close(passed.peer);
	for (int i = 0; i < 2; i++) {
		close(passed.to_second[i]);
		close(passed.to_first[i]);
	}
	close(epoll_fd);
}

static const struct {
	const char *name;
	void (*run)(void);
} scenarios[] = {
	{ "epoll_lt", scenario_epoll_lt },
	{ "epoll_errors", scenario_epoll_errors },
	{ "epoll_et", scenario_epoll_et },
	{ "epoll_oneshot", scenario_epoll_oneshot },
	{ "two_sets", scenario_two_sets },
	{ "set_reshuffle", scenario_set_reshuffle },
	{ "close_registered", scenario_close_registered },
	{ "nested", scenario_nested },
	{ "mixed", scenario_mixed },
	{ "rdhup", scenario_rdhup },
	{ "reset", scenario_reset },
	{ "poll", scenario_poll },
	{ "select", scenario_select },
	{ "fd_setsize", scenario_fd_setsize },
	{ "nonblocking", scenario_nonblocking },
	{ "full_send", scenario_full_send },
	{ "max_events", scenario_max_events },
	{ "sigmask", scenario_sigmask },
	{ "moved_socket", scenario_moved_socket },
	{ "added_elsewhere", scenario_added_elsewhere },
	{ "polled_elsewhere", scenario_polled_elsewhere },
	{ "passed_between", scenario_passed_between },
};
#define SCENARIO_COUNT (sizeof(scenarios) / sizeof(scenarios[0]))

int main(int argc, char **argv)
{
	socklen_t length = sizeof(listener_address);

	server_name = "readiness_probe";
	ignore_sigpipe();
	raise_fd_limit();
	listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	listener_address.sin_family = AF_INET;
	listener_address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (listener < 0 || bind(listener, (struct sockaddr *)&listener_address, length) != 0 ||
	    listen(listener, 16) != 0 ||
	    getsockname(listener, (struct sockaddr *)&listener_address, &length) != 0)
		die("listener: %s", strerror(errno));
	for (size_t i = 0; i < SCENARIO_COUNT; i++) {
		bool wanted = argc == 1;

		for (int arg = 1; arg < argc; arg++)
			if (!strcmp(argv[arg], scenarios[i].name))
				wanted = true;
		if (!wanted)
			continue;
		scenario = scenarios[i].name;
		scenarios[i].run();
		say("end");
	}
	return 0;
}
