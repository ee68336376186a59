// SPDX-License-Identifier: MIT
/*
 * Connect probe: fixed scripts around non-blocking connects, the way event
 * loops make their outgoing connections (nginx's upstreams: the socket
 * joins epoll before connect, the writable event says the connection is
 * done, SO_ERROR confirms it).  Every call's result is printed, so the
 * transcript on the plain kernel and under the shim with RINGSTEER_CLIENT=1
 * can be compared line for line (tests/integration/event_connect.sh).
 *
 *   connect_probe [SCENARIO...]    (default: every scenario, in order)
 *
 * The process plays both ends.  Its listener has a receive timeout, which
 * the accepted sockets inherit, so the shim leaves the accepted end to the
 * kernel: the bytes through the shim's ring are the connecting end's.
 * Scenarios: edge, level, refused, poll, oneshot, twosets, again.
 * Nothing printed depends on timing: each wait that follows an action
 * waits for it (5 s at most), short timeouts only where nothing can come.
 */
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>

#include "probe.h"
#include "server_common.h"

#define READY_TIMEOUT_MS 5000
#define IDLE_TIMEOUT_MS  50

static int listener;
static struct sockaddr_in listener_address;

static const char *event_names(uint32_t events)
{
	static const struct { uint32_t bit; const char *name; } names[] = {
		{ EPOLLIN, "IN" }, { EPOLLOUT, "OUT" }, { EPOLLRDHUP, "RDHUP" },
		{ EPOLLHUP, "HUP" }, { EPOLLERR, "ERR" }, { EPOLLPRI, "PRI" },
		{ EPOLLRDNORM, "RDNORM" }, { EPOLLWRNORM, "WRNORM" },
	};
	static char text[128];
	size_t used = 0;

	text[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (events & names[i].bit)
			used += (size_t)snprintf(text + used, sizeof(text) - used, "%s%s",
						 used ? "|" : "", names[i].name);
	}
	return used ? text : "none";
}

/* One epoll wait, its events printed with their data fields. */
static void wait_events(const char *step, int set, int timeout)
{
	struct epoll_event events[8];
	int count;

	do {
		count = epoll_wait(set, events, 8, timeout);
	} while (count < 0 && errno == EINTR);
	record(step, count, errno);
	for (int i = 0; i < count; i++)
		printf("%s: %s: data %llu events %s\n", scenario, step,
		       (unsigned long long)events[i].data.u64, event_names(events[i].events));
	fflush(stdout);
}

static void poll_events(const char *step, int fd, short interest, int timeout)
{
	struct pollfd entry = { .fd = fd, .events = interest };
	int count;

	do {
		count = poll(&entry, 1, timeout);
	} while (count < 0 && errno == EINTR);
	record(step, count, errno);
	if (count > 0)
		printf("%s: %s: revents %s\n", scenario, step, event_names((uint32_t)entry.revents));
	fflush(stdout);
}

static void add(int set, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event event = { .events = events, .data.u64 = data };

	STEP("epoll_ctl(ADD)", epoll_ctl(set, EPOLL_CTL_ADD, fd, &event));
}

static void modify(int set, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event event = { .events = events, .data.u64 = data };

	STEP("epoll_ctl(MOD)", epoll_ctl(set, EPOLL_CTL_MOD, fd, &event));
}

static int start_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		die("socket: %s", strerror(errno));
	return fd;
}

/* On loopback the kernel says EINPROGRESS, or has already connected: both
 * print alike. */
static void connect_now(int fd, const struct sockaddr_in *address)
{
	int result = connect(fd, (const struct sockaddr *)address, sizeof(*address));

	if (result == 0 || errno == EINPROGRESS)
		printf("%s: connect = started\n", scenario);
	else
		printf("%s: connect = -1 %s\n", scenario, strerrorname_np(errno));
	fflush(stdout);
}

static int accept_peer(void)
{
	int peer;

	do {
		peer = accept(listener, NULL, NULL);
	} while (peer < 0 && errno == EINTR);
	if (peer < 0)
		die("accept: %s", strerror(errno));
	return peer;
}

static void socket_error(int fd)
{
	int error = -1;
	socklen_t length = sizeof(error);

	STEP("getsockopt(SO_ERROR)", getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length));
	printf("%s: SO_ERROR is %s\n", scenario, error ? strerrorname_np(error) : "0");
	fflush(stdout);
}

/* The peer reads the 4-byte request and answers with a 4-byte reply. */
static void peer_answers(int peer, const char *reply)
{
	char buf[8];
	long n = STEP("peer recv(4, MSG_WAITALL)", recv(peer, buf, 4, MSG_WAITALL));

	printf("%s: peer got \"%.*s\"\n", scenario, n > 0 ? (int)n : 0, buf);
	STEP("peer write(reply)", write(peer, reply, strlen(reply)));
}

static void read_reply(int fd)
{
	char buf[16];
	long n = STEP("read(16)", read(fd, buf, sizeof(buf)));

	printf("%s: read data \"%.*s\"\n", scenario, n > 0 ? (int)n : 0, buf);
	fflush(stdout);
}

/* nginx's order: epoll before connect, edge-triggered, SO_ERROR after the
 * writable event, then a request and its reply, the peer's FIN last. */
static void scenario_edge(void)
{
	int set = epoll_create1(EPOLL_CLOEXEC), fd = start_connect(), peer;

	add(set, fd, EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, 7);
	connect_now(fd, &listener_address);
	peer = accept_peer();
	wait_events("epoll_wait for the connection", set, READY_TIMEOUT_MS);
	socket_error(fd);
	STEP("write(ping)", write(fd, "ping", 4));
	peer_answers(peer, "pong");
	wait_events("epoll_wait for the reply", set, READY_TIMEOUT_MS);
	read_reply(fd);
	socket_error(fd);
	STEP("read(16) when drained", read(fd, (char[16]){ 0 }, 16));
	wait_events("epoll_wait with nothing new", set, IDLE_TIMEOUT_MS);
	STEP("peer shutdown(SHUT_WR)", shutdown(peer, SHUT_WR));
	wait_events("epoll_wait for the FIN", set, READY_TIMEOUT_MS);
	STEP("read(16) at the end", read(fd, (char[16]){ 0 }, 16));
	STEP("close", close(fd));
	close(peer);
	close(set);
}

/* Level-triggered, joined after connect; the first write comes without an
 * SO_ERROR check. */
static void scenario_level(void)
{
	int set = epoll_create1(EPOLL_CLOEXEC), fd = start_connect(), peer;

	connect_now(fd, &listener_address);
	add(set, fd, EPOLLOUT, 8);
	peer = accept_peer();
	wait_events("epoll_wait for the connection", set, READY_TIMEOUT_MS);
	modify(set, fd, EPOLLIN, 8);
	STEP("write(ping)", write(fd, "ping", 4));
	peer_answers(peer, "pong");
	wait_events("epoll_wait for the reply", set, READY_TIMEOUT_MS);
	wait_events("epoll_wait again, still readable", set, READY_TIMEOUT_MS);
	read_reply(fd);
	wait_events("epoll_wait when drained", set, IDLE_TIMEOUT_MS);
	STEP("close", close(fd));
	close(peer);
	close(set);
}

/* A refused connection stays the kernel's: its errors are the kernel's. */
static void scenario_refused(void)
{
	struct sockaddr_in nobody = listener_address;
	socklen_t length = sizeof(nobody);
	int bound = socket(AF_INET, SOCK_STREAM, 0), set = epoll_create1(EPOLL_CLOEXEC), fd;

	/* A bound port nobody listens on answers the SYN with a reset. */
	nobody.sin_port = 0;
	if (bound < 0 || bind(bound, (struct sockaddr *)&nobody, sizeof(nobody)) ||
	    getsockname(bound, (struct sockaddr *)&nobody, &length))
		die("bind: %s", strerror(errno));
	fd = start_connect();
	add(set, fd, EPOLLIN | EPOLLOUT | EPOLLET, 9);
	connect_now(fd, &nobody);
	wait_events("epoll_wait for the refusal", set, READY_TIMEOUT_MS);
	socket_error(fd);
	socket_error(fd);
	STEP("write(ping)", write(fd, "ping", 4));
	STEP("read(16)", read(fd, (char[16]){ 0 }, 16));
	STEP("close", close(fd));
	close(bound);
	close(set);
}

/* poll instead of epoll. */
static void scenario_poll(void)
{
	int fd = start_connect(), peer;

	connect_now(fd, &listener_address);
	peer = accept_peer();
	poll_events("poll(POLLOUT) for the connection", fd, POLLOUT, READY_TIMEOUT_MS);
	socket_error(fd);
	STEP("write(ping)", write(fd, "ping", 4));
	peer_answers(peer, "pong");
	poll_events("poll(POLLIN) for the reply", fd, POLLIN, READY_TIMEOUT_MS);
	read_reply(fd);
	poll_events("poll(POLLIN) when drained", fd, POLLIN, IDLE_TIMEOUT_MS);
	STEP("close", close(fd));
	close(peer);
}

/* A program that asks connect again whether the first one completed. */
static void scenario_again(void)
{
	int set = epoll_create1(EPOLL_CLOEXEC), fd = start_connect(), peer;

	add(set, fd, EPOLLIN | EPOLLET, 13);
	connect_now(fd, &listener_address);
	peer = accept_peer();
	poll_events("poll(POLLOUT) for the connection", fd, POLLOUT, READY_TIMEOUT_MS);
	STEP("connect again", connect(fd, (const struct sockaddr *)&listener_address,
				      sizeof(listener_address)));
	STEP("connect a third time", connect(fd, (const struct sockaddr *)&listener_address,
					     sizeof(listener_address)));
	STEP("write(ping)", write(fd, "ping", 4));
	peer_answers(peer, "pong");
	wait_events("epoll_wait for the reply", set, READY_TIMEOUT_MS);
	read_reply(fd);
	STEP("close", close(fd));
	close(peer);
	close(set);
}

/* A one-shot registration that fired before the socket joined the shim
 * stays disarmed there until EPOLL_CTL_MOD. */
static void scenario_oneshot(void)
{
	int set = epoll_create1(EPOLL_CLOEXEC), fd = start_connect(), peer;

	add(set, fd, EPOLLIN | EPOLLOUT | EPOLLONESHOT, 10);
	connect_now(fd, &listener_address);
	peer = accept_peer();
	wait_events("epoll_wait for the connection", set, READY_TIMEOUT_MS);
	socket_error(fd);
	STEP("write(ping)", write(fd, "ping", 4));
	peer_answers(peer, "pong");
	wait_events("epoll_wait while disarmed", set, IDLE_TIMEOUT_MS);
	modify(set, fd, EPOLLIN | EPOLLONESHOT, 10);
	wait_events("epoll_wait after MOD", set, READY_TIMEOUT_MS);
	wait_events("epoll_wait disarmed again", set, IDLE_TIMEOUT_MS);
	read_reply(fd);
	STEP("close", close(fd));
	close(peer);
	close(set);
}

/* One socket in two sets before connect: both registrations move. */
static void scenario_two_sets(void)
{
	int reading = epoll_create1(EPOLL_CLOEXEC), writing = epoll_create1(EPOLL_CLOEXEC);
	int fd = start_connect(), peer;

	add(reading, fd, EPOLLIN | EPOLLET, 11);
	add(writing, fd, EPOLLOUT, 12);
	connect_now(fd, &listener_address);
	peer = accept_peer();
	wait_events("epoll_wait(writing) for the connection", writing, READY_TIMEOUT_MS);
	socket_error(fd);
	STEP("write(ping)", write(fd, "ping", 4));
	peer_answers(peer, "pong");
	wait_events("epoll_wait(reading) for the reply", reading, READY_TIMEOUT_MS);
	wait_events("epoll_wait(writing), level-triggered", writing, READY_TIMEOUT_MS);
	read_reply(fd);
	wait_events("epoll_wait(reading) when drained", reading, IDLE_TIMEOUT_MS);
	STEP("epoll_ctl(DEL) from writing", epoll_ctl(writing, EPOLL_CTL_DEL, fd, NULL));
	wait_events("epoll_wait(writing) after DEL", writing, IDLE_TIMEOUT_MS);
	STEP("close", close(fd));
	close(peer);
	close(reading);
	close(writing);
}

static const struct { const char *name; void (*run)(void); } scenarios[] = {
	{ "edge", scenario_edge },       { "level", scenario_level },
	{ "refused", scenario_refused }, { "poll", scenario_poll },
	{ "oneshot", scenario_oneshot }, { "twosets", scenario_two_sets },
	{ "again", scenario_again },
};

static void run_scenario(const char *name)
{
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		if (!strcmp(scenarios[i].name, name)) {
			scenario = name;
			scenarios[i].run();
			printf("%s: end\n", name);
			fflush(stdout);
			return;
		}
	}
	die("unknown scenario %s", name);
}

int main(int argc, char **argv)
{
	struct timeval timeout = { .tv_sec = 10 };
	socklen_t length = sizeof(listener_address);

	server_name = "connect_probe";
	signal(SIGPIPE, SIG_IGN);
	listener = socket(AF_INET, SOCK_STREAM, 0);
	listener_address.sin_family = AF_INET;
	listener_address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* Inherited by the accepted ends, which the shim then leaves to the
	 * kernel. */
	if (listener < 0 ||
	    setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) ||
	    bind(listener, (struct sockaddr *)&listener_address, sizeof(listener_address)) ||
	    getsockname(listener, (struct sockaddr *)&listener_address, &length) ||
	    listen(listener, 16))
		die("listener: %s", strerror(errno));
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			run_scenario(argv[i]);
	} else {
		for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
			run_scenario(scenarios[i].name);
	}
	return 0;
}
